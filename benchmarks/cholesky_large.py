"""Cholesky out of core: a matrix no process ever holds, factored and checked only through the store.

The whole experiment runs on the workers; the driver holds nothing larger than
N x k vectors:

1. X (N x d, float64, random) is stored, and A = K(X) + shift I with K the RBF
   kernel matrix (``numpywren.kernel``: one stored triangle, N^2/2 numbers) --
   symmetric positive definite, with the shape of an exact kernel ridge
   regression's system.
2. L = ``numpywren.cholesky(K, shift=shift)`` (the timed part, reported as
   GFLOPS = N^3/3 / s, with the job's critical-path and I/O shares).
3. The residual ||A V - L (L^T V)|| / ||A V|| for k random vectors V (N x k)
   is computed with distributed products (``numpywren.matmul``: K V, L^T V,
   L (L^T V)); only the N x k results come back to the driver.

Peak memory (VmHWM) of the driver and of every worker process is reported: a
worker's peak is bounded by a few tiles, the driver's by the DAG and N x k.
At N=32768 with tiles of 4096 the stored triangle is 4.3 GB, L 8.6 GB
(its upper tiles are written as zeros), Cholesky's scratch 4.3 GB.

    python -m benchmarks.cholesky_large [--n 32768] [--tile 4096] [--store URL]
"""
from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from benchmarks import common
from benchmarks.linalg import critical_path_seconds
from benchmarks.machine_load import peak_rss_mb

NAME = "cholesky_large"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=int, default=32768, help="matrix size N (default 32768)")
    parser.add_argument("--tile", type=int, default=4096, help="tile size (default 4096)")
    parser.add_argument("--features", type=int, default=64, help="columns d of X (default 64)")
    parser.add_argument("--shift", type=float, default=1.0, help="A = K + shift I (default 1)")
    parser.add_argument("--vectors", type=int, default=4, help="random vectors k of the residual check")
    parser.add_argument("--workers", type=int, default=2, help="local workers x 1 BLAS thread (default 2)")
    parser.add_argument("--store", default=None, help="store URL (default: a temporary local folder)")
    common.add_common_arguments(parser)


def main(argv: list[str] | None = None) -> int:
    return run(common.parse_args(NAME, __doc__, add_arguments, argv))


def run(args: argparse.Namespace) -> int:
    import numpywren
    from numpywren import BigMatrix, LocalExecutor

    if args.tiny:
        args.n, args.tile, args.features = 512, 128, 8
    n, tile, k = args.n, args.tile, args.vectors
    info = common.machine_info()
    print(f"Out-of-core Cholesky on {common.describe_machine(info)}")
    print(f"A = rbf K(X) + {args.shift:g} I, N={n}, X {n} x {args.features}, tiles {tile} "
          f"({tile * tile * 8 / 1e6:.0f} MB), {args.workers} workers x 1 BLAS thread")
    rng = np.random.default_rng(0)
    phases: dict[str, float] = {}
    with common.scratch_store(args.store, NAME) as store, LocalExecutor(args.workers, store) as ex:
        common.warm_up(ex)
        X = BigMatrix.from_numpy(rng.standard_normal((n, args.features)), (tile, args.features), store, "X")
        V = BigMatrix.from_numpy(v := rng.standard_normal((n, k)), (tile, k), store, "V")

        def timed(name, fn):
            began = time.perf_counter()
            out = fn()
            phases[name] = time.perf_counter() - began
            print(f"  {name}: {phases[name]:.1f} s", flush=True)
            return out

        K = timed("kernel", lambda: numpywren.kernel(X, out="K", executor=ex, progress=False))
        L = timed("cholesky", lambda: numpywren.cholesky(K, out="L", shift=args.shift, executor=ex,
                                                         progress=False))
        report = L.report
        av = timed("K V", lambda: numpywren.matmul(K, V, out="KV", executor=ex, progress=False).to_numpy())
        av += args.shift * v
        ltv = timed("L^T V", lambda: numpywren.matmul(L.T, V, out="LtV", executor=ex, progress=False))
        llv = timed("L (L^T V)", lambda: numpywren.matmul(L, ltv, out="LLtV", executor=ex,
                                                          progress=False).to_numpy())
        residual = float(np.max(np.linalg.norm(av - llv, axis=0) / np.linalg.norm(av, axis=0)))
        worker_rss = [peak_rss_mb(pid) for pid in ex.worker_pids() if pid]
        plan = numpywren.cholesky(K, shift=args.shift, compute=False, workers=args.workers)
        row = {"n": n, "tile": tile, "workers": args.workers, "seconds": report.wall_seconds,
               "gflops": n ** 3 / 3 / report.wall_seconds / 1e9, "tasks": report.tasks,
               "critical_path_share": critical_path_seconds(plan.dag, report) / report.wall_seconds,
               "io_fraction": report.io_fraction, "kernel_gflops_per_worker": report.kernel_gflops_per_worker,
               "read_gb": report.bytes_read / 1e9, "written_gb": report.bytes_written / 1e9,
               "residual": residual, "driver_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
               "worker_rss_mb": max(worker_rss, default=float("nan")), "tile_mb": tile * tile * 8 / 1e6,
               **{f"{name}_s": round(s, 2) for name, s in phases.items()}}
    common.print_table([row], COLUMNS, title="Out-of-core Cholesky (GFLOPS = N^3/3 / s of the Cholesky job)")
    print(f"residual max_j ||A v_j - L L^T v_j|| / ||A v_j|| over {k} random vectors: {residual:.1e}")
    paths = [common.write_csv(NAME, [row], info, args.out)]
    if not args.no_plot and common.pyplot() is not None:
        from numpywren.timeline import plot_timeline

        paths.append(plot_timeline(report, common.results_dir(args.out) / f"{NAME}.png"))
    common.report_paths(paths)
    return 0


COLUMNS = [("n", "N", ""), ("tile", "tile", ""), ("seconds", "s", ".1f"), ("gflops", "GFLOPS", ".1f"),
           ("critical_path_share", "cp", ".0%"), ("io_fraction", "I/O", ".0%"),
           ("kernel_gflops_per_worker", "kernel GF/w", ".1f"), ("read_gb", "read GB", ".1f"),
           ("written_gb", "written GB", ".1f"), ("driver_rss_mb", "driver RSS MB", ".0f"),
           ("worker_rss_mb", "worker RSS MB", ".0f"), ("tile_mb", "tile MB", ".0f"), ("residual", "residual", ".0e")]


if __name__ == "__main__":
    raise SystemExit(main())
