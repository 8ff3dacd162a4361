"""LU and solve side by side: numpywren ``lu_factor``/``solve`` vs scipy.linalg vs dask.array on dask.distributed.

Every system factors the same general float64 matrix (standard normal entries: partial pivoting
exchanges rows across every tile) with the same core budget (``--workers``, default 2), and
solves with ``--rhs`` right-hand sides (default 16):

* numpywren: ``LocalExecutor(workers, blas_threads=1)``; A is written to the store before the
  clock starts. ``lu_factor``: the whole job (factor tiles, panel records, pivots); ``solve``: one
  job (factor, permute, two substitutions), B given and X returned as numpy.
* scipy: ``scipy.linalg.lu_factor`` and ``scipy.linalg.solve`` with ``workers`` BLAS threads (best
  of two after a warm-up), in a subprocess.
* dask: ``dask.array.linalg.lu`` (P, L, U written to zarr) and ``dask.array.linalg.solve``, on a
  ``LocalCluster`` of ``workers`` processes x 1 thread, reading A from uncompressed zarr written
  before the clock, in a subprocess. Skipped (with a note) without dask.distributed or zarr.

Rounds alternate the systems (``--repeat``; each keeps its best). Reported: seconds, GFLOPS
(2 N^3 / 3 for LU, plus 2 N^2 k for the solve), the ratios to scipy and dask, the load average
(``os.getloadavg``) at the start of each measurement, and a check: the factor's relative residual
||A x - b|| / ||b|| through ``scipy.linalg.lu_solve`` (numpywren, scipy) or ||A v - P L U v|| /
||A v|| (dask), and the solve's ||A X - B|| / ||B||.
Run with ``python -m benchmarks.lu`` or ``numpywren bench lu``.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import uuid

import numpy as np

from benchmarks import common
from benchmarks.linalg import _has


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", type=common.int_list, default=[8192], help="matrix sizes N (default 8192)")
    parser.add_argument("--tiles", type=common.int_list, default=[1024], help="tile sizes (default 1024)")
    parser.add_argument("--rhs", type=int, default=16, help="right-hand sides of the solve (default 16)")
    parser.add_argument("--workers", type=int, default=2,
                        help="numpywren workers = dask processes = scipy BLAS threads (default 2)")
    parser.add_argument("--store", default=None, help="store URL (default: a temporary local folder)")
    parser.add_argument("--repeat", type=int, default=1, help="rounds of all systems, each keeps its best")
    parser.add_argument("--no-dask", action="store_true", help="skip dask.array on dask.distributed")
    parser.add_argument("--no-scipy", action="store_true", help="skip scipy.linalg")
    parser.add_argument("--blas", type=common.blas_list, default=["numpy"],
                        help="numpywren's tile-kernel BLAS, comma-separated: numpy (numpy/scipy's OpenBLAS), mkl "
                             "(the layer's MKL library), or a library path; one set of workers each (default numpy)")
    common.add_common_arguments(parser)


def main(argv: list[str] | None = None) -> int:
    return run(common.parse_args("lu", __doc__, add_arguments, argv))


def run(args: argparse.Namespace) -> int:
    if args.tiny:
        args.sizes, args.tiles, args.repeat, args.rhs = [256], [64], 1, 4
    if not args.no_dask and not _has("distributed", "zarr", "dask.array"):
        print("dask.distributed or zarr is not installed: skipping dask (pip install 'numpywren[bench]')")
        args.no_dask = True
    info = common.machine_info()
    print(f"LU benchmark on {common.describe_machine(info)}")
    print(f"numpywren: {args.workers} workers x 1 BLAS thread | scipy: {args.workers} BLAS threads | "
          f"dask.distributed: {args.workers} processes x 1 thread, zarr | float64, {args.rhs} right-hand sides")
    rows: list[dict] = []
    with common.scratch_store(args.store, "lu") as store, tempfile.TemporaryDirectory() as tmp:
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
    common.print_table(rows, COLUMNS, title="LU and solve (GFLOPS = 2N^3/3 [+ 2N^2 k] / s; x scipy / x dask: "
                                            "time ratios at the same N and operation; load: 1-min load average)")
    info["workers"] = str(args.workers)
    paths = [common.write_csv("lu", rows, info, args.out)]
    if not args.no_plot:
        paths.append(_plot(rows, args))
    common.report_paths(paths)
    return 0


def general_matrix(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, n))


def _run_size(n: int, args, store, executors: dict, tmp: str) -> list[dict]:
    from numpywren import BigMatrix

    a = general_matrix(n)
    b = np.random.default_rng(1).standard_normal((n, args.rhs))
    path, bpath = os.path.join(tmp, f"a{n}.npy"), os.path.join(tmp, f"b{n}.npy")
    np.save(path, a)
    np.save(bpath, b)
    best: dict = {}

    def keep(row):
        key = (row["system"], row["op"], row["tile"], row.get("blas", ""))
        print(f"  N={n} tile={row['tile']} {row['system']} {row.get('blas', '')} {row['op']}: " + (
            f"{row['seconds']:.2f} s, {row['gflops']:.1f} GFLOPS, residual {row['residual']:.1e}, "
            f"load {row['load']:.1f}" if row.get("seconds") else row.get("note", "")), flush=True)
        if key not in best or row.get("seconds", np.inf) < best[key].get("seconds", np.inf):
            best[key] = {"n": n, "workers": args.workers, "rhs": args.rhs, **row}

    inputs = {}
    try:
        for _ in range(args.repeat):
            for tile in args.tiles:
                if tile not in inputs:
                    inputs[tile] = BigMatrix.from_numpy(a, tile, store, f"bench-lu-{uuid.uuid4().hex[:8]}/A")
                for choice, ex in executors.items():
                    for row in _numpywren(a, b, inputs[tile], ex):
                        keep({**row, "blas": choice})
                if not args.no_scipy:
                    for row in _subprocess("scipy", SCIPY, [path, bpath, str(args.workers)], n, tile, args.workers):
                        keep(row)
                if not args.no_dask:
                    for row in _subprocess("dask", DASK, [path, bpath, str(args.workers), str(tile), tmp], n, tile):
                        keep(row)
    finally:
        for A in inputs.values():
            A.delete()
    return list(best.values())


def _flops(n: int, op: str, k: int) -> float:
    return 2 * n ** 3 / 3 + (2.0 * n * n * k if op == "solve" else 0.0)


def _numpywren(a: np.ndarray, b: np.ndarray, A, ex) -> list[dict]:
    import scipy.linalg

    import numpywren

    n, k = a.shape[0], b.shape[1]
    load = os.getloadavg()[0]
    with common.Stopwatch() as clock:
        LU, piv = numpywren.lu_factor(A, check_finite=False, executor=ex, progress=False)
    r = LU.report
    x = scipy.linalg.lu_solve((LU.to_numpy(), piv), b[:, 0], check_finite=False)
    factor = {"system": "numpywren", "op": "lu_factor", "tile": A.tile_shape[0], "seconds": clock.seconds,
              "gflops": _flops(n, "lu_factor", k) / clock.seconds / 1e9, "load": load, "tasks": r.tasks,
              "io_fraction": r.io_fraction, "kernel_gflops_per_worker": r.kernel_gflops_per_worker,
              "kernel_blas": "; ".join(r.blas),
              "residual": float(np.linalg.norm(a @ x - b[:, 0]) / np.linalg.norm(b[:, 0]))}
    LU.delete()
    load = os.getloadavg()[0]
    with common.Stopwatch() as clock:
        X = numpywren.solve(A, b, executor=ex, progress=False)
    solve = {"system": "numpywren", "op": "solve", "tile": A.tile_shape[0], "seconds": clock.seconds,
             "gflops": _flops(n, "solve", k) / clock.seconds / 1e9, "load": load,
             "residual": float(np.linalg.norm(a @ X - b) / np.linalg.norm(b))}
    return [factor, solve]


def _subprocess(system: str, code: str, argv: list[str], n: int, tile: int, blas_threads: int = 1) -> list[dict]:
    """Run a peer in its own process (a crash there is a result, not the end of the benchmark)."""
    env = {**os.environ, **{v: str(blas_threads) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                            "MKL_NUM_THREADS")}}
    load = os.getloadavg()[0]
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *argv], capture_output=True, text=True,
                          env=env)
    if proc.returncode != 0:
        why = (f"crashed (signal {-proc.returncode})" if proc.returncode < 0 else
               f"failed (exit {proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}")
        return [{"system": system, "op": "lu_factor", "tile": tile, "note": why}]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    k = out["rhs"]
    return [{"system": system, "op": op, "tile": tile if system == "dask" else "", "seconds": out[op]["seconds"],
             "gflops": _flops(n, op, k) / out[op]["seconds"] / 1e9, "residual": out[op]["residual"], "load": load}
            for op in ("lu_factor", "solve")]


SCIPY = """
import json, sys, time
import numpy as np, scipy.linalg
from threadpoolctl import threadpool_limits
a, b = np.load(sys.argv[1]), np.load(sys.argv[2])
out = {"rhs": b.shape[1]}
with threadpool_limits(limits=int(sys.argv[3]), user_api="blas"):
    scipy.linalg.lu_factor(a[:512, :512])   # warm up
    for op in ("lu_factor", "solve"):
        seconds = float("inf")
        for _ in range(2):   # best of two calls
            start = time.perf_counter()
            if op == "lu_factor":
                lu, piv = scipy.linalg.lu_factor(a, check_finite=False)
            else:
                x = scipy.linalg.solve(a, b, check_finite=False)
            seconds = min(seconds, time.perf_counter() - start)
        if op == "lu_factor":
            x0 = scipy.linalg.lu_solve((lu, piv), b[:, 0])
            residual = np.linalg.norm(a @ x0 - b[:, 0]) / np.linalg.norm(b[:, 0])
        else:
            residual = np.linalg.norm(a @ x - b) / np.linalg.norm(b)
        out[op] = {"seconds": seconds, "residual": float(residual)}
print(json.dumps(out))
"""

DASK = """
import json, os, shutil, sys, time, uuid
import numpy as np
import dask.array as da
import zarr
from dask.distributed import Client, LocalCluster
path, bpath, workers, tile, tmp = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
a, b = np.load(path), np.load(bpath)
src = os.path.join(tmp, f"a-{uuid.uuid4().hex[:8]}.zarr")
z = zarr.create_array(src, shape=a.shape, chunks=(tile, tile), dtype=a.dtype, compressors=None)
z[:] = a
out = {"rhs": b.shape[1]}
with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \\
        Client(cluster) as client:
    dsts = [os.path.join(tmp, f"{name}-{uuid.uuid4().hex[:8]}.zarr") for name in "plu"]
    start = time.perf_counter()
    A = da.from_zarr(src)
    P, L, U = da.linalg.lu(A)
    da.store([x.rechunk((tile, tile)) for x in (P, L, U)],
             [zarr.create_array(d, shape=a.shape, chunks=(tile, tile), dtype=a.dtype, compressors=None) for d in dsts])
    seconds = time.perf_counter() - start
    p, l, u = (zarr.open_array(d)[:] for d in dsts)
    v = np.random.default_rng(2).standard_normal(a.shape[0])
    out["lu_factor"] = {"seconds": seconds,
                        "residual": float(np.linalg.norm(a @ v - p @ (l @ (u @ v))) / np.linalg.norm(a @ v))}
    for d in dsts:
        shutil.rmtree(d, ignore_errors=True)
    start = time.perf_counter()
    x = da.linalg.solve(da.from_zarr(src), da.from_array(b, chunks=(tile, b.shape[1]))).compute()
    seconds = time.perf_counter() - start
    out["solve"] = {"seconds": seconds, "residual": float(np.linalg.norm(a @ x - b) / np.linalg.norm(b))}
shutil.rmtree(src, ignore_errors=True)
print(json.dumps(out))
"""


def _add_ratios(rows: list[dict]) -> None:
    def best(system):
        out = {}
        for r in rows:
            if r["system"] == system and r.get("seconds"):
                key = (r["n"], r["op"])
                out[key] = min(r["seconds"], out.get(key, np.inf))
        return out
    scipy_s, dask_s = best("scipy"), best("dask")
    for r in rows:
        if r["system"] == "numpywren" and r.get("seconds"):
            key = (r["n"], r["op"])
            if key in scipy_s:
                r["vs_scipy"] = scipy_s[key] / r["seconds"]
            if key in dask_s:
                r["vs_dask"] = dask_s[key] / r["seconds"]


COLUMNS = [("n", "N", ""), ("tile", "tile", ""), ("op", "op", ""), ("system", "system", ""), ("blas", "BLAS", ""),
           ("seconds", "s", ".2f"), ("gflops", "GFLOPS", ".1f"), ("vs_scipy", "x scipy", ".2f"),
           ("vs_dask", "x dask", ".2f"), ("io_fraction", "I/O", ".0%"),
           ("kernel_gflops_per_worker", "kernel GF/w", ".1f"),
           ("load", "load", ".1f"), ("residual", "residual", ".0e"), ("note", "note", "")]


def _plot(rows: list[dict], args):
    plt = common.pyplot()
    if plt is None:
        return None
    keys = sorted({(r["n"], r["op"]) for r in rows})
    fig, axes = plt.subplots(1, len(keys), figsize=(4.5 * len(keys), 3.8), squeeze=False)
    for ax, (n, op) in zip(axes[0], keys):
        at = [r for r in rows if (r["n"], r["op"]) == (n, op) and r.get("gflops")]
        ax.bar(range(len(at)), [r["gflops"] for r in at], color="#4c72b0")
        ax.set_xticks(range(len(at)), [r["system"] + (f" {r['blas']}" if r.get("blas") else "")
                                        + (f"\ntile {r['tile']}" if r["tile"] else "") for r in at])
        ax.set_title(f"{op}, N={n}")
        ax.set_ylabel("GFLOPS")
    fig.tight_layout()
    return common.save_figure(fig, "lu", args.out)


if __name__ == "__main__":
    sys.exit(main())
