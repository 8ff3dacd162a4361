"""Every benchmark runs end to end at a toy size (--tiny) and writes a sane CSV (and PNG with matplotlib).

The numbers themselves are not asserted (performance lives in benchmarks/, not
in tests), only that the runs complete, the results are correct, and the
output files are well formed. Benchmarks being written elsewhere are skipped
until their module exists.
"""
from __future__ import annotations

import csv
import importlib
import importlib.util

import pytest

from numpywren.cli import main as numpywren_main

HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None


@pytest.fixture(autouse=True)
def out_dir(tmp_path, monkeypatch):
    """Benchmarks that take no --out still write here, never over benchmarks/results."""
    out = tmp_path / "results"
    monkeypatch.setenv("NUMPYWREN_BENCH_OUT", str(out))
    return out


def read_rows(path):
    with open(path, newline="") as f:
        lines = f.read().splitlines()
    info = dict(line[2:].split(": ", 1) for line in lines if line.startswith("# "))
    rows = list(csv.DictReader(line for line in lines if not line.startswith("#")))
    return info, rows


def check_output(out, name):
    info, rows = read_rows(out / f"{name}.csv")
    assert rows, f"{name}.csv has no rows"
    assert info["cpu"] and int(info["usable_cores"]) >= 1 and "blas_runtime" in info
    if HAS_MATPLOTLIB:
        assert (out / f"{name}.png").stat().st_size > 1000
    return rows


def test_gemm(out_dir):
    from benchmarks import gemm

    assert gemm.main(["--tiny", "--out", str(out_dir)]) == 0
    rows = check_output(out_dir, "gemm")
    systems = {r["system"] for r in rows}
    assert {"numpy", "numpywren"} <= systems
    for r in rows:
        assert float(r["gflops"]) > 0 and float(r["seconds"]) > 0
        assert float(r["rel_error"]) < 1e-12, r  # every system computed the same product
    nw = next(r for r in rows if r["system"] == "numpywren")
    assert 0 <= float(nw["io_fraction"]) <= 1 and float(nw["read_mb"]) > 0


def test_tsqr(out_dir):
    from benchmarks import tsqr

    assert tsqr.main(["--tiny", "--no-dask", "--out", str(out_dir)]) == 0
    rows = check_output(out_dir, "tsqr")
    by_system = {r["system"]: r for r in rows}
    assert set(by_system) == {"numpy", "numpywren"}
    nw = by_system["numpywren"]
    assert float(nw["seconds"]) > 0 and float(nw["rel_error"]) < 1e-12  # R equals numpy's up to row signs
    assert 0 <= float(nw["io_fraction"]) <= 1 and 0 < float(nw["critical_path_share"]) <= 1


def test_scaling(out_dir):
    from benchmarks import scaling

    assert scaling.main(["--tiny", "--out", str(out_dir)]) == 0
    rows = check_output(out_dir, "scaling")
    assert {(r["mode"], r["workers"]) for r in rows} == {("strong", "1"), ("strong", "2"),
                                                         ("weak", "1"), ("weak", "2")}
    assert all(float(r["gflops"]) > 0 and float(r["store_mb_s"]) > 0 for r in rows)


def test_weak_scaling_keeps_work_per_worker():
    from benchmarks.scaling import weak_size

    assert weak_size(4096, 1, 1024) == 4096
    for workers in (2, 3, 4, 8):
        n = weak_size(4096, workers, 1024)
        assert n % 256 == 0
        assert abs(n ** 3 / workers / 4096 ** 3 - 1) < 0.05  # the same work per worker


def test_io_local_through_the_cli(out_dir):
    assert numpywren_main(["bench", "io", "--tiny", "--out", str(out_dir)]) == 0
    rows = check_output(out_dir, "io")
    assert [r["size_mb"] for r in rows] == ["1", "2"]
    assert all(float(r[k]) > 0 for r in rows for k in ("write_mb_s_aggregate", "read_mb_s_per_worker"))


def test_io_s3(out_dir, s3_store):
    from benchmarks import io

    assert io.main(["--tiny", "--no-plot", "--store", s3_store.url, "--out", str(out_dir)]) == 0
    info, rows = read_rows(out_dir / "io_s3.csv")
    assert info["store"].startswith("s3://") and len(rows) == 2
    assert list(s3_store.list("bench-io-")) == []  # the benchmark removed its objects


@pytest.mark.parametrize("name", ["kernel", "tile_io", "scheduler", "chain", "predict", "elementwise", "eigsh",
                                  "lambda_driver", "sim_calibrate", "verify_requests", "tiles"])
def test_benchmarks_by_other_modules(name, out_dir):
    if importlib.util.find_spec(f"benchmarks.{name}") is None:
        pytest.skip(f"benchmarks/{name}.py is not there yet")
    module = importlib.import_module(f"benchmarks.{name}")
    assert (module.main(["--tiny"]) or 0) == 0
    assert (out_dir / f"{name}.csv").exists(), f"benchmarks.{name} should write its CSV via benchmarks.common"


def test_paradigms(out_dir):
    from benchmarks import paradigms

    assert paradigms.main(["--tiny", "--out", str(out_dir)]) == 0
    rows = check_output(out_dir, "paradigms")
    assert {r["paradigm"] for r in rows} == {"word count", "sort", "parameter server"}
    assert all(r["correct"] == "True" and float(r["seconds"]) > 0 for r in rows), rows
    assert sum(r["system"].startswith("numpywren") for r in rows) == 3


def test_bench_cli_rejects_unknown_benchmark(capsys):
    with pytest.raises(SystemExit):
        numpywren_main(["bench", "nope"])
    assert "invalid choice" in capsys.readouterr().err


def test_linalg_cholesky(out_dir):
    """Cholesky vs scipy (and dask.distributed + zarr when installed): every system's factor checks out."""
    from benchmarks import linalg

    assert linalg.main(["--tiny", "--out", str(out_dir)]) == 0
    rows = check_output(out_dir, "linalg")
    systems = {r["system"] for r in rows}
    assert {"scipy", "numpywren"} <= systems
    for r in rows:
        assert r.get("note") or (float(r["gflops"]) > 0 and float(r["residual"]) < 1e-12), r
    nw = next(r for r in rows if r["system"] == "numpywren")
    assert 0 < float(nw["critical_path_share"]) and 0 <= float(nw["io_fraction"]) <= 1


def test_cholesky_large(out_dir):
    """The out-of-core run checks its factor through distributed products: the residual must be tiny."""
    from benchmarks import cholesky_large

    assert cholesky_large.main(["--tiny", "--out", str(out_dir)]) == 0
    (row,) = check_output(out_dir, "cholesky_large")
    assert float(row["residual"]) < 1e-12 and float(row["gflops"]) > 0, row
    assert float(row["worker_rss_mb"]) > 0 and float(row["driver_rss_mb"]) > 0, row


@pytest.mark.parametrize("job", ["lu", "lu_factor"])
def test_lu_large(out_dir, job):
    """The out-of-core LU checks P L U against A through distributed products: the backward error is tiny
    (``lu_factor``: L and U split from the packed factor, the rows put back by LAPACK's piv)."""
    from benchmarks import lu_large

    assert lu_large.main(["--tiny", "--factor", job, "--out", str(out_dir)]) == 0
    (row,) = check_output(out_dir, "lu_large")
    assert row["factor"] == job
    assert float(row["backward_error"]) < 1e-12 and float(row["gflops"]) > 0, row
    assert float(row["worker_rss_mb"]) > 0 and float(row["driver_rss_mb"]) > 0, row


def test_svd_large(out_dir):
    """The out-of-core singular values match the ones the matrix was built with (A = Q1 P1 diag(s) P2 Q2)."""
    from benchmarks import svd_large

    assert svd_large.main(["--tiny", "--out", str(out_dir)]) == 0
    (row,) = check_output(out_dir, "svd_large")
    assert float(row["max_error_over_smax"]) < 1e-12 and float(row["top10_rel_error"]) < 1e-12, row
    assert float(row["worker_rss_mb"]) > 0 and float(row["driver_rss_mb"]) > 0, row
    assert int(row["keys_left"]) == 0, row   # the plan's scratch and A are gone, nothing else was left
    assert 0 < float(row["reduction_s"]) and 0 < float(row["band_s"]) < float(row["seconds"]), row


def test_svd_large_matrix_has_the_singular_values_it_is_built_with():
    """The generator's tiles (ragged last tile included) assemble to Q1 S Q2, whose singular values numpy finds."""
    import numpy as np

    from benchmarks.svd_large import known_spectrum, known_tile

    n, t = 300, 128
    s, parts = known_spectrum(n, 5)
    block = known_tile(parts, t)
    a = np.block([[block(i, j) for j in range(3)] for i in range(3)])
    assert a.shape == (n, n) and np.count_nonzero(a) == n * n
    assert np.abs(np.linalg.svd(a, compute_uv=False) - s).max() < 1e-13


def test_plan_schedule(out_dir):
    """The list schedule of a real LU plan: never shorter than its critical path or its work over the workers."""
    from benchmarks import plan_schedule

    assert plan_schedule.main(["--tiny", "--op", "lu", "--out", str(out_dir)]) == 0
    _, rows = read_rows(out_dir / "plan_schedule.csv")
    assert len(rows) == 3 and int(rows[0]["tasks"]) > 10
    for r in rows:
        span, idle = float(r["makespan_s"]), float(r["idle"])
        assert span >= float(r["critical_path_s"]) - 1e-9 and 0 <= idle < 1, r


def test_overhead(out_dir):
    from benchmarks import overhead

    executors = "local,dask" if importlib.util.find_spec("distributed") else "local"
    assert overhead.main(["--tiny", "--executors", executors, "--out", str(out_dir)]) == 0
    rows = check_output(out_dir, "overhead")
    assert [r["executor"] for r in rows] == executors.split(",")
    assert all(float(r["calls_per_s"]) > 0 for r in rows)


def test_gemm_through_other_executors(out_dir):
    pytest.importorskip("distributed", reason="dask.distributed not installed: numpywren[dask]")
    from benchmarks import gemm

    assert gemm.main(["--tiny", "--no-dask", "--executor", "dask", "--out", str(out_dir)]) == 0
    rows = check_output(out_dir, "gemm_executors")
    wren = {r["system"]: r for r in rows if r["system"].startswith("numpywren")}
    assert set(wren) == {"numpywren", "numpywren/dask"}
    assert float(wren["numpywren/dask"]["rel_error"]) < 1e-12 and float(wren["numpywren/dask"]["vs_local"]) > 0


def test_lu_and_solve(out_dir):
    """LU and solve vs scipy (and dask.distributed + zarr when installed): every system's answer checks out."""
    from benchmarks import lu

    assert lu.main(["--tiny", "--no-dask", "--out", str(out_dir)]) == 0   # dask: measured by the real run
    rows = check_output(out_dir, "lu")
    assert {("numpywren", "lu_factor"), ("numpywren", "solve"), ("scipy", "lu_factor")} <= {
        (r["system"], r["op"]) for r in rows}
    for r in rows:
        assert r.get("note") or (float(r["gflops"]) > 0 and float(r["residual"]) < 1e-10), r


def test_complex(out_dir):
    from benchmarks import complex as complex_bench

    assert complex_bench.main(["--tiny", "--ops", "gemm,gemm_h,cholesky,qr,svd", "--out", str(out_dir)]) == 0
    rows = check_output(out_dir, "complex")
    assert {r["op"] for r in rows} == {"gemm", "gemm_h", "cholesky", "qr", "svd"}
    for r in rows:
        assert float(r["numpywren_s"]) > 0 and float(r["peer_s"]) > 0
        assert float(r["check"]) < 1e-12, r   # the same product as numpy's; a backward-stable factor


def test_svd_large_refuses_scratch_larger_than_the_disk(tmp_path):
    """A plan whose scratch cannot fit on the local store's disk is refused before it runs, naming the fix."""
    import shutil

    from benchmarks.svd_large import check_disk
    from numpywren.storage import open_store

    store = open_store(str(tmp_path))
    free = shutil.disk_usage(tmp_path).free
    check_disk(store, 0.5 * free)
    with pytest.raises(SystemExit, match="larger --tile"):
        check_disk(store, 2.0 * free)


def test_scratch_peak(out_dir):
    """The run holds less scratch at once than it writes (each tile freed after its last reader)."""
    from benchmarks import scratch_peak

    assert scratch_peak.main(["--tiny", "--ops", "svdvals,qr", "--out", str(out_dir)]) == 0
    info, rows = read_rows(out_dir / "scratch_peak.csv")
    assert {r["op"] for r in rows} == {"svdvals", "qr"} and info["load_average"]
    for r in rows:
        assert 0 < float(r["report_peak_mb"]) < float(r["scratch_written_mb"]), r
        assert 0 < float(r["planned_peak_mb"]) < float(r["scratch_written_mb"]), r
    assert float(next(r for r in rows if r["op"] == "svdvals")["svdvals_error"]) < 1e-12
