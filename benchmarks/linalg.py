"""Cholesky side by side: numpywren ``cholesky`` vs ``scipy.linalg.cholesky`` vs dask.array on dask.distributed.

Every system factors the same symmetric positive definite float64 matrix
(A = (R + R^T)/2 + N I, R uniform in [-1, 1): diagonally dominant, cheap to
make, well conditioned) with the same core budget (``--workers``, default 2):

* numpywren: ``LocalExecutor(workers, blas_threads=1)``; A is written to the
  store (default a LocalStore in a temporary folder) before the clock starts;
  the timed part is the whole job (scheduling, reading tiles, factoring,
  writing L and the zero tiles of its upper triangle).
* scipy: ``scipy.linalg.cholesky(a, lower=True, check_finite=False)`` with
  ``workers`` BLAS threads (best of two calls after a warm-up), in a subprocess (OpenBLAS has crashed in it at
  N=16384 on this machine: a crash is reported as a crash, not a number).
* dask: ``dask.array.linalg.cholesky`` on a ``dask.distributed.LocalCluster``
  of ``workers`` processes x 1 thread (1 BLAS thread each), reading A from an
  uncompressed zarr array written before the clock and writing L to zarr, in a
  subprocess. Skipped (with a note) if dask.distributed or zarr is missing.

Reported per run: seconds, GFLOPS (N^3/3 flops), the ratios to scipy and dask,
the residual ||A v - L (L^T v)|| / ||A v|| for a random v, and for numpywren
the I/O share (``Report.io_fraction``: store waits and writes over task time)
and the **critical-path share**: the longest dependency chain of the DAG,
each task weighted by an estimate of its time (its flops at the job's measured
kernel GFLOPS per worker, plus the job's mean I/O time per task), divided by
the wall time. Near 1 means the run was bound by the chain, not by the cores.
Peak RSS of the driver and of each worker (VmHWM) is recorded.
Run with ``python -m benchmarks.linalg`` or ``numpywren bench linalg``.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import textwrap
import uuid

import numpy as np

from benchmarks import common
from benchmarks.machine_load import peak_rss_mb


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", type=common.int_list, default=[8192], help="matrix sizes N (default 8192)")
    parser.add_argument("--tiles", type=common.int_list, default=[512, 1024],
                        help="numpywren and dask tile sizes (default 512,1024)")
    parser.add_argument("--workers", type=int, default=2,
                        help="numpywren workers = dask processes = scipy BLAS threads (default 2)")
    parser.add_argument("--store", default=None, help="store URL (default: a temporary local folder)")
    parser.add_argument("--repeat", type=int, default=1, help="rounds of all systems, each keeps its best")
    parser.add_argument("--no-dask", action="store_true", help="skip dask.array on dask.distributed")
    parser.add_argument("--no-scipy", action="store_true", help="skip scipy.linalg.cholesky")
    parser.add_argument("--blas", type=common.blas_list, default=["numpy"],
                        help="numpywren's tile-kernel BLAS, comma-separated: numpy (numpy/scipy's OpenBLAS), mkl "
                             "(the layer's MKL library), or a library path; one set of workers each (default numpy)")
    common.add_common_arguments(parser)


def main(argv: list[str] | None = None) -> int:
    return run(common.parse_args("linalg", __doc__, add_arguments, argv))


def run(args: argparse.Namespace) -> int:
    if args.tiny:
        args.sizes, args.tiles, args.repeat = [256], [64], 1
    if args.workers < 1 or args.repeat < 1:
        raise SystemExit("--workers and --repeat must be at least 1")
    if not args.no_dask and not _has("distributed", "zarr", "dask.array"):
        print("dask.distributed or zarr is not installed: skipping dask (pip install 'numpywren[bench]')")
        args.no_dask = True
    info = common.machine_info()
    print(f"Cholesky benchmark on {common.describe_machine(info)}")
    print(f"numpywren: {args.workers} workers x 1 BLAS thread | scipy: {args.workers} BLAS threads | "
          f"dask.distributed: {args.workers} processes x 1 thread, zarr | float64")
    rows: list[dict] = []
    with common.scratch_store(args.store, "linalg") as store, tempfile.TemporaryDirectory() as tmp:
        from numpywren import LocalExecutor

        with contextlib.ExitStack() as stack:
            executors = {}
            for choice in args.blas:
                executors[choice] = stack.enter_context(LocalExecutor(args.workers, store,
                                                                      env=common.blas_env(choice)))
                common.warm_up(executors[choice])
            for n in args.sizes:
                rows += _run_size(n, args, store, executors, tmp)
    _add_ratios(rows)
    common.print_table(rows, COLUMNS, title="Cholesky (GFLOPS = N^3/3 / s; x scipy / x dask: GFLOPS ratios at "
                                            "the same N; cp: critical-path share; I/O: store share of task time)")
    for r in rows:
        if r["system"] == "numpywren":
            print(f"N={r['n']} tile={r['tile']} BLAS {r.get('blas')}: {r.get('vs_scipy', float('nan')):.2f}x scipy (target >= 1.5), "
                  f"{r.get('vs_dask', float('nan')):.2f}x dask (target >= 1.5)")
    info["workers"] = str(args.workers)
    paths = [common.write_csv("linalg", rows, info, args.out)]
    if not args.no_plot:
        paths.append(_plot(rows, args))
    common.report_paths(paths)
    return 0


def _has(*modules: str) -> bool:
    import importlib.util

    try:
        return all(importlib.util.find_spec(m) is not None for m in modules)
    except ModuleNotFoundError:
        return False


def spd_matrix(n: int, seed: int = 0) -> np.ndarray:
    """(R + R^T)/2 + n I with R uniform in [-1, 1): strictly diagonally dominant, hence SPD."""
    rng = np.random.default_rng(seed)
    a = rng.uniform(-1.0, 1.0, (n, n))
    a += a.T
    a *= 0.5
    a[np.diag_indices(n)] += n
    return a


def residual(a: np.ndarray, lower_factor: np.ndarray, seed: int = 1) -> float:
    v = np.random.default_rng(seed).standard_normal(a.shape[0])
    av = a @ v
    return float(np.linalg.norm(av - lower_factor @ (lower_factor.T @ v)) / np.linalg.norm(av))


def _run_size(n: int, args, store, executors: dict, tmp: str) -> list[dict]:
    from numpywren import BigMatrix

    a = spd_matrix(n)
    path = os.path.join(tmp, f"a{n}.npy")
    np.save(path, a)
    base = {"n": n, "dtype": "float64", "workers": args.workers}
    best: dict = {}

    def keep(row):
        key = (row["system"], row["tile"], row.get("blas", ""))
        print(f"  N={n} tile={row['tile']} {row['system']} {row.get('blas', '')}: " + (
            f"{row['seconds']:.2f} s, {row['gflops']:.1f} GFLOPS, residual {row['residual']:.1e}"
            if row.get("seconds") else row.get("note", "")), flush=True)
        if key not in best or row.get("seconds", np.inf) < best[key].get("seconds", np.inf):
            best[key] = {**base, **row}

    inputs = {}
    try:
        for _ in range(args.repeat):
            if not args.no_scipy:
                keep(_subprocess("scipy", SCIPY, [path, str(args.workers)], n, n, args.workers))
            for tile in args.tiles:
                if tile not in inputs:
                    with common.Stopwatch() as stored:
                        inputs[tile] = BigMatrix.from_numpy(a, tile, store, f"bench-chol-{uuid.uuid4().hex[:8]}/A")
                    inputs[tile].store_seconds = stored.seconds
                for choice, ex in executors.items():
                    keep({**_numpywren(a, inputs[tile], ex), "blas": choice})
                if not args.no_dask:
                    keep(_subprocess("dask", DASK, [path, str(args.workers), str(tile), tmp], n, tile))
    finally:
        for A in inputs.values():
            A.delete()
    return list(best.values())


def _numpywren(a: np.ndarray, A, ex) -> dict:
    import numpywren

    n = a.shape[0]
    L = numpywren.cholesky(A, out=f"{A.key.rpartition('/')[0]}/L", executor=ex, progress=False)
    r = L.report
    plan = numpywren.cholesky(A, compute=False)
    row = {"system": "numpywren", "tile": A.tile_shape[0], "seconds": r.wall_seconds,
           "gflops": n ** 3 / 3 / r.wall_seconds / 1e9, "io_fraction": r.io_fraction,
           "critical_path_share": critical_path_seconds(plan.dag, r) / r.wall_seconds,
           "kernel_gflops_per_worker": r.kernel_gflops_per_worker, "tasks": r.tasks, "kernel_blas": "; ".join(r.blas),
           "read_mb": r.bytes_read / 1e6, "written_mb": r.bytes_written / 1e6, "store_s": A.store_seconds,
           "driver_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "worker_rss_mb": max(peak_rss_mb(pid) for pid in ex.worker_pids() if pid) if any(ex.worker_pids())
           else float("nan")}
    row["residual"] = residual(a, L.to_numpy())
    L.delete()
    return row


def critical_path_seconds(dag, report) -> float:
    """Longest chain of estimated task times: flops at the measured kernel rate per worker, plus the mean
    store time (unhidden reads + writes) per executed task."""
    rate = report.kernel_gflops_per_worker * 1e9 or 1.0
    io = (report.io_wait_seconds + report.write_seconds) / max(1, report.executed)
    finish: dict[str, float] = {}
    for task in dag:   # tasks are in dependency order
        finish[task.id] = max((finish[d] for d in task.deps), default=0.0) + task.flops / rate + io
    return max(finish.values(), default=0.0)


def _subprocess(system: str, code: str, argv: list[str], n: int, tile: int, blas_threads: int = 1) -> dict:
    """Run a peer in its own process (a crash there is a result, not the end of the benchmark)."""
    env = {**os.environ, **{v: str(blas_threads) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                            "MKL_NUM_THREADS")}}
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *argv], capture_output=True, text=True,
                          env=env)
    if proc.returncode != 0:
        why = (f"crashed (signal {-proc.returncode})" if proc.returncode < 0 else
               f"failed (exit {proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}")
        return {"system": system, "tile": tile, "note": why}
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"system": system, "tile": tile, "seconds": out["seconds"], "gflops": n ** 3 / 3 / out["seconds"] / 1e9,
            "residual": out["residual"], "peer_rss_mb": out.get("rss_mb")}


SCIPY = """
import json, resource, sys, time
import numpy as np, scipy.linalg
from threadpoolctl import threadpool_limits
from benchmarks.linalg import residual
a = np.load(sys.argv[1])
with threadpool_limits(limits=int(sys.argv[2]), user_api="blas"):
    scipy.linalg.cholesky(a[:512, :512], lower=True)   # warm up (thread pool, LAPACK dispatch)
    seconds = float("inf")
    for _ in range(2):   # best of two calls: noise on a shared machine only slows a run down
        start = time.perf_counter()
        L = scipy.linalg.cholesky(a, lower=True, check_finite=False)
        seconds = min(seconds, time.perf_counter() - start)
print(json.dumps({"seconds": seconds, "residual": residual(a, L),
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

DASK = """
import json, os, shutil, sys, time, uuid
import numpy as np
import dask.array as da
import zarr
from dask.distributed import Client, LocalCluster
from benchmarks.linalg import residual
path, workers, tile, tmp = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
a = np.load(path)
src = os.path.join(tmp, f"a-{uuid.uuid4().hex[:8]}.zarr")
dst = os.path.join(tmp, f"l-{uuid.uuid4().hex[:8]}.zarr")
z = zarr.create_array(src, shape=a.shape, chunks=(tile, tile), dtype=a.dtype, compressors=None)
z[:] = a
with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \\
        Client(cluster) as client:
    # the workers inherit OMP/OPENBLAS/MKL_NUM_THREADS=1 from this process's environment
    start = time.perf_counter()
    A = da.from_zarr(src)
    L = da.linalg.cholesky(A, lower=True)
    da.to_zarr(L, dst, compressors=None)
    seconds = time.perf_counter() - start
l = zarr.open_array(dst)[:]
shutil.rmtree(src, ignore_errors=True); shutil.rmtree(dst, ignore_errors=True)
print(json.dumps({"seconds": seconds, "residual": residual(a, l)}))
"""


def _add_ratios(rows: list[dict]) -> None:
    scipy_gf = {r["n"]: r["gflops"] for r in rows if r["system"] == "scipy" and r.get("gflops")}
    dask_gf = {(r["n"], r["tile"]): r["gflops"] for r in rows if r["system"] == "dask" and r.get("gflops")}
    dask_best = {}
    for (n, _), gf in dask_gf.items():
        dask_best[n] = max(gf, dask_best.get(n, 0.0))
    for r in rows:
        if not r.get("gflops"):
            continue
        if r["n"] in scipy_gf:
            r["vs_scipy"] = r["gflops"] / scipy_gf[r["n"]]
        if r["system"] == "numpywren" and r["n"] in dask_best:
            r["vs_dask"] = r["gflops"] / dask_best[r["n"]]   # against the best dask tiling at this N


COLUMNS = [("n", "N", ""), ("tile", "tile", ""), ("system", "system", ""), ("blas", "BLAS", ""),
           ("seconds", "s", ".2f"),
           ("gflops", "GFLOPS", ".1f"), ("vs_scipy", "x scipy", ".2f"), ("vs_dask", "x dask", ".2f"),
           ("critical_path_share", "cp", ".0%"), ("io_fraction", "I/O", ".0%"),
           ("kernel_gflops_per_worker", "kernel GF/w", ".1f"), ("worker_rss_mb", "worker RSS MB", ".0f"),
           ("residual", "residual", ".0e"), ("note", "note", "")]


def _plot(rows: list[dict], args):
    plt = common.pyplot()
    if plt is None:
        return None
    sizes = sorted({r["n"] for r in rows})
    fig, axes = plt.subplots(1, len(sizes), figsize=(5 * len(sizes), 3.8), squeeze=False)
    for ax, n in zip(axes[0], sizes):
        at_n = [r for r in rows if r["n"] == n and r.get("gflops")]
        labels = [r["system"] + (f" {r['blas']}" if r.get("blas") else "")
                  + ("" if r["system"] == "scipy" else f"\ntile {r['tile']}") for r in at_n]
        bars = ax.bar(range(len(at_n)), [r["gflops"] for r in at_n],
                      color=[{"numpywren": "C0", "scipy": "k", "dask": "C1"}[r["system"]] for r in at_n])
        for bar, r in zip(bars, at_n):
            if r["system"] == "numpywren":
                ax.annotate(f"cp {r['critical_path_share']:.0%}\nI/O {r['io_fraction']:.0%}",
                            (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom",
                            fontsize=7)
        ax.set_xticks(range(len(at_n)), labels, fontsize=7)
        ax.set_ylabel("GFLOPS (N^3/3 / s)")
        ax.set_title(f"Cholesky N={n} float64, {args.workers} cores")
        ax.set_ylim(0, ax.get_ylim()[1] * 1.25)
    return common.save_figure(fig, "linalg", args.out)


if __name__ == "__main__":
    sys.exit(main())
