"""TSQR side by side: numpywren ``qr(A, mode="r")`` vs ``numpy.linalg.qr(mode="r")`` vs dask's ``tsqr``.

A tall-and-skinny float64 A (default 2,000,000 x 256 = 4 GB) in row blocks
of ``--tile-rows`` (default 125,000: 16 blocks). Every system gets the same
core budget (``--workers``, default 2 = this machine's cores) and the same
data (each row block drawn from its own seeded generator):

* numpywren: ``LocalExecutor(workers, blas_threads=1)``; A is written to the
  store (a LocalStore in a temporary folder by default) by the workers before
  the clock starts. Timed: the whole job (leaf QRs reading their row block,
  the reduction tree of R factors, R read back). R only: no Q is formed.
* numpy: one ``numpy.linalg.qr(a, mode="r")`` with ``workers`` BLAS threads,
  in a subprocess (OpenBLAS with 2 threads has crashed on this machine on big
  in-memory problems): a crash is reported as a crash, with its signal.
* dask: ``dask.array.linalg.tsqr`` on ``dask.distributed`` (``LocalCluster``:
  ``workers`` processes x 1 thread, 1 BLAS thread each) reading an
  uncompressed zarr array with the same row chunks. Timed: ``r.compute()``.

Each R is checked against the reference (numpy's, or numpywren's if numpy
crashed) up to the signs of its rows. GFLOPS count Householder QR's
2mn^2 - 2n^3/3 for every system. ``critical_path_share`` is the flops of the
DAG's longest chain over the flops per worker (the part of the ideal parallel
time that cannot be parallelized); ``io_fraction`` is the share of task time
spent waiting on the store. Run with ``python -m benchmarks.tsqr`` or
``numpywren bench tsqr``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np

from benchmarks import common

BLAS_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=int, default=2_000_000, help="rows of A (default 2,000,000)")
    parser.add_argument("--cols", type=int, default=256, help="columns of A (default 256)")
    parser.add_argument("--tile-rows", type=int, default=125_000,
                        help="rows per block, numpywren tile and dask chunk alike (default 125,000)")
    parser.add_argument("--workers", type=int, default=2,
                        help="numpywren workers = dask processes = numpy BLAS threads (default 2)")
    parser.add_argument("--repeat", type=int, default=1, help="rounds of every system, each keeps its best")
    parser.add_argument("--store", default=None, help="store URL (default: a temporary local folder)")
    parser.add_argument("--no-dask", action="store_true", help="skip dask")
    parser.add_argument("--no-numpy", action="store_true", help="skip numpy")
    parser.add_argument("--blas", default="numpy", type=lambda v: common.blas_list(v)[0],
                        help="numpywren's tile-kernel BLAS: numpy (numpy/scipy's OpenBLAS), mkl (the layer's MKL "
                             "library) or a library path (default numpy)")
    common.add_common_arguments(parser)


def main(argv: list[str] | None = None) -> int:
    return run(common.parse_args("tsqr", __doc__, add_arguments, argv))


def block(i: int, j: int, rows: int, cols: int, tile_rows: int, seed: int = 0) -> np.ndarray:
    """Row block i of the benchmark matrix (the same values in every system)."""
    height = min(tile_rows, rows - i * tile_rows)
    return np.random.default_rng([seed, i]).standard_normal((height, cols))


def qr_flops(m: int, n: int) -> float:
    return 2.0 * m * n * n - 2.0 * n ** 3 / 3


def run(args: argparse.Namespace) -> int:
    if args.tiny:
        args.rows, args.cols, args.tile_rows = 20_000, 32, 2_500
    if args.workers < 1 or args.repeat < 1 or args.tile_rows < args.cols:
        raise SystemExit("--workers and --repeat must be at least 1 and --tile-rows at least --cols")
    if not args.no_dask and not _installed("dask.distributed", "zarr"):
        print("dask.distributed or zarr is not installed: skipping dask (pip install 'numpywren[bench]')")
        args.no_dask = True
    info = common.machine_info()
    m, n, t = args.rows, args.cols, args.tile_rows
    print(f"TSQR benchmark on {common.describe_machine(info)}")
    print(f"A: {m} x {n} float64 ({m * n * 8 / 1e9:.1f} GB), row blocks of {t} ({-(-m // t)} blocks) | "
          f"numpywren: {args.workers} workers x 1 BLAS thread | numpy: {args.workers} BLAS threads | "
          f"dask.distributed: {args.workers} processes x 1 thread")
    gen = partial(block, rows=m, cols=n, tile_rows=t)
    base = {"rows": m, "cols": n, "tile_rows": t, "workers": args.workers}
    results: dict[str, dict] = {}
    r_of: dict[str, np.ndarray] = {}
    with common.scratch_store(args.store, "tsqr") as store:
        for _ in range(args.repeat):
            if not args.no_numpy:
                row, r = _numpy(args)
                _keep(results, r_of, {**base, **row}, r)
            row, r = _numpywren(args, store, gen)
            _keep(results, r_of, {**base, **row}, r)
            if not args.no_dask:
                row, r = _dask(args, gen)
                _keep(results, r_of, {**base, **row}, r)
    rows = list(results.values())
    reference = r_of.get("numpy", r_of.get("numpywren"))
    for row in rows:
        if row["system"] in r_of:
            row["rel_error_vs"] = "numpy" if "numpy" in r_of else "numpywren"
            row["rel_error"] = _r_error(r_of[row["system"]], reference)
        if row.get("seconds"):
            row["gflops"] = qr_flops(m, n) / row["seconds"] / 1e9
    _add_ratios(rows)
    _print(rows)
    info["workers"] = str(args.workers)
    paths = [common.write_csv("tsqr", rows, info, args.out)]
    if not args.no_plot:
        paths.append(_plot(rows, args))
    common.report_paths(paths)
    return 0


def _installed(*modules: str) -> bool:
    import importlib.util

    try:
        return all(importlib.util.find_spec(m) is not None for m in modules)
    except ModuleNotFoundError:
        return False


def _keep(results: dict, r_of: dict, row: dict, r) -> None:
    system = row["system"]
    row["load_1m_after"] = os.getloadavg()[0]
    ok = row.get("seconds") is not None
    print(f"  {system}: " + (f"{row['seconds']:.2f} s" if ok else row.get("status", "failed")), flush=True)
    if system not in results or (ok and (results[system].get("seconds") is None
                                         or row["seconds"] < results[system]["seconds"])):
        results[system] = row
        if r is not None:
            r_of[system] = r


# -- the systems -----------------------------------------------------------------------------------
def _numpywren(args, store, gen):
    """The plan numpywren.qr(A, mode="r") builds (numpywren.decomp_qr), run the same way (jobs.run, R read back), keeping its report."""
    from numpywren import BigMatrix, LocalExecutor, jobs
    from numpywren.decomp_qr import FAN_IN, tsqr_plan

    with LocalExecutor(args.workers, store, env=common.blas_env(args.blas)) as executor:
        common.warm_up(executor)
        key = f"bench-tsqr-{os.getpid()}-{time.time_ns()}"
        with common.Stopwatch() as stored:
            A = BigMatrix.from_function(gen, (args.rows, args.cols), (args.tile_rows, args.cols), "float64",
                                        store, f"{key}/A", executor=executor, progress=False)
        try:
            with common.Stopwatch() as t:
                plan, R, _ = tsqr_plan([A], "r", None, FAN_IN, args.workers)
                report = jobs.run(plan, executor, progress=False)
                r = R.to_numpy()
            R.delete()
        finally:
            A.delete()
    return {"system": "numpywren", "status": "ok", "seconds": t.seconds, "store_s": stored.seconds,
            "blas_threads": 1, "blas": args.blas, "kernel_blas": "; ".join(report.blas), "tasks": len(plan.dag),
            "critical_path_share": _critical_path(plan.dag) / (plan.dag.flops / args.workers),
            "io_fraction": report.io_fraction, "kernel_gflops_per_worker": report.kernel_gflops_per_worker,
            "read_mb": report.bytes_read / 1e6, "written_mb": report.bytes_written / 1e6,
            "job_wall_s": report.wall_seconds}, r


def _critical_path(dag) -> float:
    """Flops of the longest dependency chain of the DAG."""
    longest: dict[str, float] = {}
    for task in dag:  # tasks are stored in dependency order
        longest[task.id] = task.flops + max((longest[d] for d in task.deps), default=0.0)
    return max(longest.values(), default=0.0)


NUMPY_SCRIPT = """
import json, resource, sys, time
import numpy as np
from threadpoolctl import threadpool_limits
from benchmarks.tsqr import block
rows, cols, tile_rows, threads, out = json.loads(sys.argv[1])
a = np.empty((rows, cols))
for i in range(-(-rows // tile_rows)):
    a[i * tile_rows:(i + 1) * tile_rows] = block(i, 0, rows, cols, tile_rows)
with threadpool_limits(limits=threads, user_api="blas"):
    start = time.perf_counter()
    r = np.linalg.qr(a, mode="r")
    seconds = time.perf_counter() - start
np.save(out, r)
print(json.dumps({"seconds": seconds, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _numpy(args):
    tmp = tempfile.mkdtemp(prefix="numpywren-bench-tsqr-numpy-")
    out = Path(tmp) / "r.npy"
    try:
        params = json.dumps([args.rows, args.cols, args.tile_rows, args.workers, str(out)])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]),
                                                                          os.environ.get("PYTHONPATH")]))}
        proc = subprocess.run([sys.executable, "-c", NUMPY_SCRIPT, params], capture_output=True, text=True,
                              env=env, check=False)
        base = {"system": "numpy", "blas_threads": args.workers}
        if proc.returncode != 0:
            how = (f"crashed (signal {-proc.returncode})" if proc.returncode < 0
                   else f"failed (exit {proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}")
            return {**base, "status": how, "seconds": None}, None
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        return {**base, "status": "ok", **result}, np.load(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _dask(args, gen):
    import dask.array as da
    import zarr
    from dask.distributed import Client, LocalCluster

    tmp = tempfile.mkdtemp(prefix="numpywren-bench-tsqr-zarr-")
    saved = {v: os.environ.get(v) for v in BLAS_ENV}
    try:
        path = str(Path(tmp) / "A.zarr")
        with common.Stopwatch() as stored:
            z = zarr.create_array(store=path, shape=(args.rows, args.cols), chunks=(args.tile_rows, args.cols),
                                  dtype="float64", compressors=None)
            for i in range(-(-args.rows // args.tile_rows)):
                z[i * args.tile_rows:(i + 1) * args.tile_rows] = gen(i, 0)
        os.environ.update({v: "1" for v in BLAS_ENV})  # the worker processes inherit 1 BLAS thread
        with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=":0") \
                as cluster, Client(cluster):
            # workers up and dask.array imported on them before the clock starts
            da.linalg.tsqr(da.ones((4 * args.cols, args.cols), chunks=(2 * args.cols, args.cols)))[1].compute()
            x = da.from_zarr(path)
            with common.Stopwatch() as t:
                _, r = da.linalg.tsqr(x)
                r = r.compute()
        return {"system": "dask", "status": "ok", "seconds": t.seconds, "store_s": stored.seconds,
                "blas_threads": 1}, r
    finally:
        for v, value in saved.items():
            if value is None:
                os.environ.pop(v, None)
            else:
                os.environ[v] = value
        shutil.rmtree(tmp, ignore_errors=True)


# -- results -----------------------------------------------------------------------------------------
def _r_error(r: np.ndarray, reference: np.ndarray) -> float:
    """Relative error of R up to the signs of its rows (QR is unique only up to them)."""
    flip = np.where(np.sign(np.diag(r)) == np.sign(np.diag(reference)), 1.0, -1.0)
    return float(np.linalg.norm(r * flip[:, None] - reference) / np.linalg.norm(reference))


def _add_ratios(rows: list[dict]) -> None:
    """vs_numpy / vs_dask: speed ratio (their seconds / this system's seconds), when both ran."""
    seconds = {r["system"]: r.get("seconds") for r in rows}
    for r in rows:
        for peer in ("numpy", "dask"):
            if r.get("seconds") and seconds.get(peer) and r["system"] != peer:
                r[f"vs_{peer}"] = seconds[peer] / r["seconds"]


COLUMNS = [("system", "system", ""), ("status", "status", ""), ("seconds", "s", ".2f"),
           ("gflops", "GFLOPS", ".1f"), ("vs_numpy", "x numpy", ".2f"), ("vs_dask", "x dask", ".2f"),
           ("io_fraction", "I/O", ".1%"), ("critical_path_share", "crit. path", ".1%"),
           ("kernel_gflops_per_worker", "kernel GF/w", ".1f"), ("store_s", "store s", ".1f"),
           ("peak_rss_mb", "peak RSS MB", ".0f"), ("rel_error", "rel err R", ".0e")]


def _print(rows: list[dict]) -> None:
    print()
    common.print_table(rows, COLUMNS, title="TSQR, R only (x numpy / x dask: speed ratio in this run; I/O: "
                                           "share of numpywren task time waiting on the store)")
    nw = next((r for r in rows if r["system"] == "numpywren"), None)
    if nw is None:
        return
    for peer, target in (("numpy", 8.0), ("dask", 1.5)):
        if f"vs_{peer}" in nw:
            met = "met" if nw[f"vs_{peer}"] >= target else "NOT met"
            print(f"numpywren = {nw[f'vs_{peer}']:.2f}x {peer} (target >= {target}x: {met})")
        else:
            print(f"numpywren vs {peer}: no ratio ({peer} did not complete)")


def _plot(rows: list[dict], args):
    plt = common.pyplot()
    if plt is None:
        return None
    done = [r for r in rows if r.get("seconds")]
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    bars = ax.bar([r["system"] for r in done], [r["gflops"] for r in done],
                  color=["C0" if r["system"] == "numpywren" else "C7" for r in done])
    for bar, r in zip(bars, done):
        label = f"{r['seconds']:.1f} s" + (f"\nI/O {r['io_fraction']:.0%}" if "io_fraction" in r else "")
        ax.annotate(label, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom",
                    fontsize=8)
    for r in rows:
        if not r.get("seconds"):
            ax.annotate(f"{r['system']}: {r['status']}", (0.02, 0.95), xycoords="axes fraction", fontsize=8)
    ax.set_ylabel("GFLOPS")
    ax.set_ylim(0, ax.get_ylim()[1] * 1.25)
    ax.set_title(f"TSQR (R) of {args.rows}x{args.cols} float64, tiles of {args.tile_rows} rows, "
                 f"{args.workers} cores", fontsize=9)
    return common.save_figure(fig, "tsqr", args.out)


if __name__ == "__main__":
    sys.exit(main())
