"""LU out of core: a general matrix no process ever holds, factored and checked only through the store.

The driver holds nothing larger than N x k vectors:

1. A (N x N, float64, standard normal: partial pivoting exchanges rows across every tile) is made
   on the workers tile by tile (``numpywren.from_function``, each tile seeded by its block index).
2. ``numpywren.lu(A, p_indices=True)`` (the timed part): the LU job with its pivot order as row
   indices and L, U as tiled matrices; reported as GFLOPS = 2 N^3 / 3 / s.
   ``--factor lu_factor`` times ``numpywren.lu_factor(A)`` instead (packed LU and LAPACK's ``piv``), then
   splits L and U out of the packed tiles on the workers (``from_function``, after the LU job's scratch
   is gone). Same factorization, a smaller peak in the store: with an 8 x 8 grid ``lu`` holds A, LU, its
   scratch C, E, Lt (160 tiles) and L, U at once (360 full tiles: 48 GB at N=32768), ``lu_factor``
   288 tiles (39 GB), and A, LU, L, U (256 tiles) afterwards.
3. The backward error max_j ||A v_j - (L (U v_j))[p]|| / ||A v_j|| for k random vectors, where A V,
   U V and L (U V) are ``numpywren.matmul`` jobs: only N x k results come back to the driver.

Peak memory (VmHWM) of the driver and of every worker process is reported over the whole run. Writes
``lu_large.csv`` and ``lu_large.png`` (the LU job's timeline).

    python -m benchmarks.lu_large [--n 16384] [--tile 2048] [--vectors 4] [--factor lu|lu_factor] [--store URL]
"""
from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from benchmarks import common
from benchmarks.machine_load import peak_rss_mb

NAME = "lu_large"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=int, default=16384, help="matrix size N (default 16384)")
    parser.add_argument("--tile", type=int, default=2048, help="tile size (default 2048)")
    parser.add_argument("--vectors", type=int, default=4, help="random vectors k of the backward-error check")
    parser.add_argument("--workers", type=int, default=2, help="local workers x 1 BLAS thread (default 2)")
    parser.add_argument("--blas", type=common.blas_list, default=["numpy"],
                        help="the workers' tile-kernel BLAS: numpy, mkl or a library path (default numpy)")
    parser.add_argument("--factor", choices=("lu", "lu_factor"), default="lu",
                        help="the timed job: lu (P, L, U) or lu_factor (packed LU; L and U split after it, a "
                             "smaller peak in the store)")
    parser.add_argument("--store", default=None, help="store URL (default: a temporary local folder)")
    common.add_common_arguments(parser)


def main(argv: list[str] | None = None) -> int:
    return run(common.parse_args(NAME, __doc__, add_arguments, argv))


def random_tile(t: int):
    """fn(i, j) -> a standard normal tile seeded by its block index (picklable: a module-level factory)."""
    def tile(i, j):
        return np.random.default_rng((i, j)).standard_normal((t, t))
    return tile


def triangle_of(store_url: str, key: str, part: str):
    """fn(i, j) -> block (i, j) of L (unit lower, part "L") or U (part "U") read from the packed LU at ``key``
    (runs on the workers: only the store URL and key travel)."""
    def tile(i, j):
        from numpywren import BigMatrix

        if (part == "L" and i < j) or (part == "U" and i > j):
            return np.zeros(BigMatrix.open(store_url, key).block_shape(i, j))
        block = BigMatrix.open(store_url, key).get_block(i, j)
        if i != j:
            return block
        if part == "U":
            return np.triu(block)
        lower = np.tril(block, -1)
        np.fill_diagonal(lower, 1.0)
        return lower
    return tile


def permutation_of(piv: np.ndarray) -> np.ndarray:
    """p with A[p] = L U from LAPACK's interchanges (row r swapped with row piv[r], in turn), with the function
    lu_solve uses (decomp_lu._order); a wrong order shows as a backward error of order 1."""
    from numpywren.decomp_lu import _order

    return _order(np.asarray(piv))


def factor(A, how: str, ex, timed):
    """(row_of, L, U, report): A v = (L U v)[row_of] (``row_of`` the inverse of the pivot order)."""
    import numpywren
    from numpywren import BigMatrix

    if how == "lu":
        p, L, U = timed("lu", lambda: numpywren.lu(A, p_indices=True, executor=ex, progress=False))
        return p, L, U, U.report if getattr(U, "report", None) is not None else L.report
    LU, piv = timed("lu", lambda: numpywren.lu_factor(A, executor=ex, progress=False))
    n, tile = A.shape[0], A.tile_shape[0]
    L, U = (timed(f"split {part}", lambda part=part: BigMatrix.from_function(
        triangle_of(LU.store.url, LU.key, part), (n, n), tile, key=part, executor=ex, progress=False))
        for part in ("L", "U"))
    report = LU.report
    LU.delete()
    return np.argsort(permutation_of(piv)), L, U, report


def run(args: argparse.Namespace) -> int:
    import numpywren
    from numpywren import BigMatrix, LocalExecutor

    if args.tiny:
        args.n, args.tile = 512, 128
    n, tile, k = args.n, args.tile, args.vectors
    if n % tile:
        raise SystemExit("--n must be a multiple of --tile (the generated tiles are square)")
    info = common.machine_info()
    blas = args.blas[0]
    print(f"Out-of-core LU on {common.describe_machine(info)}")
    print(f"A standard normal, N={n}, tiles {tile} ({tile * tile * 8 / 1e6:.0f} MB), {args.workers} workers x 1 "
          f"BLAS thread ({blas})")
    phases: dict[str, float] = {}
    with common.scratch_store(args.store, NAME) as store, \
            LocalExecutor(args.workers, store, env=common.blas_env(blas)) as ex:
        common.warm_up(ex)
        v = np.random.default_rng(1).standard_normal((n, k))
        V = BigMatrix.from_numpy(v, (tile, k), store, "V")

        def timed(name, fn):
            began = time.perf_counter()
            out = fn()
            phases[name] = time.perf_counter() - began
            print(f"  {name}: {phases[name]:.1f} s", flush=True)
            return out

        A = timed("generate A", lambda: BigMatrix.from_function(random_tile(tile), (n, n), tile, key="A",
                                                                executor=ex, progress=False))
        p, L, U, report = factor(A, args.factor, ex, timed)
        av = timed("A V", lambda: numpywren.matmul(A, V, out="AV", executor=ex, progress=False).to_numpy())
        uv = timed("U V", lambda: numpywren.matmul(U, V, out="UV", executor=ex, progress=False))
        luv = timed("L (U V)", lambda: numpywren.matmul(L, uv, out="LUV", executor=ex, progress=False).to_numpy())
        error = float(np.max(np.linalg.norm(av - luv[p], axis=0) / np.linalg.norm(av, axis=0)))
        worker_rss = [peak_rss_mb(pid) for pid in ex.worker_pids() if pid]
        row = {"n": n, "tile": tile, "factor": args.factor, "workers": args.workers, "blas": blas, "kernel_blas": "; ".join(report.blas),
               "seconds": phases["lu"], "gflops": 2 * n ** 3 / 3 / phases["lu"] / 1e9, "tasks": report.tasks,
               "io_fraction": report.io_fraction, "kernel_gflops_per_worker": report.kernel_gflops_per_worker,
               "read_gb": report.bytes_read / 1e9, "written_gb": report.bytes_written / 1e9,
               "backward_error": error, "eps_n": float(np.finfo(np.float64).eps * n),
               "driver_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
               "worker_rss_mb": max(worker_rss, default=float("nan")), "tile_mb": tile * tile * 8 / 1e6,
               **{f"{name.replace(' ', '_')}_s": round(s, 2) for name, s in phases.items()}}
    common.print_table([row], COLUMNS, title="Out-of-core LU (GFLOPS = 2N^3/3 / s of the lu job)")
    print(f"backward error max_j ||A v_j - P L U v_j|| / ||A v_j|| over {k} random vectors: {error:.1e} "
          f"(N eps = {row['eps_n']:.1e})")
    paths = [common.write_csv(NAME, [row], info, args.out)]
    if not args.no_plot and common.pyplot() is not None:
        from numpywren.timeline import plot_timeline

        paths.append(plot_timeline(report, common.results_dir(args.out) / f"{NAME}.png"))
    common.report_paths(paths)
    return 0


COLUMNS = [("n", "N", ""), ("tile", "tile", ""), ("factor", "job", ""), ("blas", "BLAS", ""), ("seconds", "s", ".1f"),
           ("gflops", "GFLOPS", ".1f"), ("tasks", "tasks", ""), ("io_fraction", "I/O", ".0%"),
           ("kernel_gflops_per_worker", "kernel GF/w", ".1f"), ("read_gb", "read GB", ".1f"),
           ("written_gb", "written GB", ".1f"), ("driver_rss_mb", "driver RSS MB", ".0f"),
           ("worker_rss_mb", "worker RSS MB", ".0f"), ("tile_mb", "tile MB", ".0f"),
           ("backward_error", "backward error", ".0e")]


if __name__ == "__main__":
    raise SystemExit(main())
