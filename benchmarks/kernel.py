"""RBF kernel matrices: the tile's element-wise step (numexpr vs plain numpy) and whole jobs in GFLOPS-equivalent.

Two measurements:

* **tile**: one RBF tile (``--tile-rows`` x ``--tile-rows`` output, ``--tile-d``
  features) on one core: 1 BLAS thread (threadpoolctl) and 1 numexpr thread,
  as on a worker. The x . y product (BLAS) is done once; each variant then
  turns a fresh copy of it into K, best of ``--repeat``:

  - ``numexpr``: numpywren's default (``blocks.kernels.rbf_finish``): the clamped,
    scaled distance in one numexpr pass, then numpy's SIMD ``exp`` in place;
  - ``numpy-inplace``: the same steps as in-place numpy ufuncs (``use_numexpr=False``);
  - ``numpy-naive``: the textbook numpy expression with its tile-sized temporaries,
    ``np.exp(-gamma * np.maximum(xn + yn - 2 * xy, 0))``;
  - ``numexpr-exp``: everything, ``exp`` included, in one numexpr expression.

  ``x naive`` is each variant's speed relative to the naive numpy one (higher is faster).
* **job**: ``numpywren.kernel`` on ``--workers`` local workers (1 BLAS thread
  each) for an n x m RBF matrix with d features, the store a temporary local
  folder. GFLOPS-equivalent counts 2 n m d (the dot-product part, as GEMM
  would) over the job's wall time; the symmetric K(X) job is credited with the
  full n x n matrix although it computes only one triangle of tiles. A few
  tiles are checked against a float64 numpy reference.

Run with ``python -m benchmarks.kernel`` (``--tiny`` for a smoke run).
"""
from __future__ import annotations

import argparse
import sys
import time
import uuid

import numpy as np

from benchmarks import common


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tile-rows", type=int, default=2048, help="tile benchmark: output rows = cols (2048)")
    parser.add_argument("--tile-d", type=int, default=256, help="tile benchmark: features (256)")
    parser.add_argument("--repeat", type=int, default=7, help="tile benchmark: runs per variant, best kept (7)")
    parser.add_argument("--n", type=int, default=40000, help="job: rows of X (40000)")
    parser.add_argument("--m", type=int, default=40000, help="job: rows of Y (40000)")
    parser.add_argument("--d", type=int, default=256, help="job: features (256)")
    parser.add_argument("--tile", type=int, default=4096, help="job: row tile of X and Y (4096)")
    parser.add_argument("--workers", type=int, default=2, help="job: local workers, 1 BLAS thread each (2)")
    parser.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    parser.add_argument("--no-symmetric", action="store_true", help="job: skip the symmetric K(X) run")
    parser.add_argument("--store", default=None, help="job: store URL (default: a temporary local folder)")
    common.add_common_arguments(parser)


def main(argv: list[str] | None = None) -> int:
    args = common.parse_args("kernel", __doc__, add_arguments, argv)
    if args.tiny:
        args.tile_rows, args.tile_d, args.repeat = 256, 32, 2
        args.n, args.m, args.d, args.tile = 600, 500, 16, 256
    info = common.machine_info()
    print(f"kernel benchmark on {common.describe_machine(info)}")
    tile_rows = tile_benchmark(args)
    common.print_table(tile_rows, TILE_COLUMNS, title=f"\nRBF tile {args.tile_rows}x{args.tile_rows}, "
                       f"d={args.tile_d}, {args.dtype}, 1 BLAS thread, 1 numexpr thread "
                       f"(x naive: speed vs the naive numpy expression)")
    job_rows = job_benchmark(args)
    common.print_table(job_rows, JOB_COLUMNS, title=f"\nRBF kernel jobs on {args.workers} local workers x "
                       "1 BLAS thread (GFLOPS-eq: 2 n m d / wall time)")
    import numexpr

    info.update(workers=str(args.workers), numexpr=numexpr.__version__)
    paths = [common.write_csv("kernel", tile_rows + job_rows, info, args.out)]
    if not args.no_plot:
        paths.append(_plot(tile_rows, job_rows, args))
    common.report_paths(paths)
    return 0


def _plot(tile_rows: list[dict], job_rows: list[dict], args):
    """Left: the element-wise step per variant; right: GFLOPS-equivalent of each job."""
    plt = common.pyplot()
    if plt is None:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.8))
    left.bar([r["variant"] for r in tile_rows], [r["finish_ms"] for r in tile_rows])
    left.set_ylabel("ms (lower is faster)")
    left.set_title(f"RBF element-wise step, {args.tile_rows}² tile, 1 core")
    left.tick_params(axis="x", labelsize=8)
    labels = [f"{'K(X)' if r['symmetric'] else 'K(X, Y)'}\n{r['n']}x{r['m']}" for r in job_rows]
    right.bar(labels, [r["gflops_equiv"] for r in job_rows])
    right.set_ylabel("GFLOPS-equivalent (2 n m d / s)")
    right.set_title(f"RBF jobs, {args.workers} workers, d={args.d}")
    return common.save_figure(fig, "kernel", args.out)


# -- one tile --------------------------------------------------------------------------------
TILE_COLUMNS = [("variant", "variant", ""), ("finish_ms", "element-wise ms", ".1f"),
                ("tile_ms", "tile ms (dot + element-wise)", ".1f"), ("x_naive", "x naive", ".2f"),
                ("tile_x_naive", "tile x naive", ".2f"), ("max_abs_diff", "max |diff|", ".0e")]


def tile_benchmark(args) -> list[dict]:
    import numexpr
    from threadpoolctl import threadpool_limits

    from blocks.kernels import rbf_finish, row_norms_sq

    dt = np.dtype(args.dtype)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.tile_rows, args.tile_d)).astype(dt)
    y = rng.standard_normal((args.tile_rows, args.tile_d)).astype(dt)
    gamma = 1.0 / args.tile_d
    xn, yn = row_norms_sq(x), row_norms_sq(y)
    neg_gamma = dt.type(-gamma)

    def naive(xy):
        return np.exp(neg_gamma * np.maximum(xn[:, None] + yn[None, :] - 2 * xy, 0))

    def numexpr_exp(xy):  # the "numexpr" variant's expression, with exp moved inside numexpr
        return numexpr.evaluate("exp(where(two_gamma * xy + (gx + gy) > zero, zero, two_gamma * xy + (gx + gy)))",
                                local_dict={"gx": neg_gamma * xn[:, None], "gy": neg_gamma * yn[None, :],
                                            "xy": xy, "two_gamma": dt.type(2 * gamma), "zero": dt.type(0)},
                                out=xy, casting="same_kind")

    variants = {
        "numexpr": lambda xy: rbf_finish(xy, xn, yn, gamma, use_numexpr=True),
        "numpy-inplace": lambda xy: rbf_finish(xy, xn, yn, gamma, use_numexpr=False),
        "numpy-naive": naive,
        "numexpr-exp": numexpr_exp,
    }
    threads_before = numexpr.set_num_threads(1)
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            dot_s = _best(lambda: x @ y.T, args.repeat)
            xy = x @ y.T
            reference = naive(xy.copy())
            rows = []
            for name, finish in variants.items():
                seconds = []
                for _ in range(args.repeat):
                    work = xy.copy()  # each run starts from the dot product, like a task
                    start = time.perf_counter()
                    out = finish(work)
                    seconds.append(time.perf_counter() - start)
                rows.append({"part": "tile", "variant": name, "dtype": dt.name, "rows": args.tile_rows,
                             "cols": args.tile_rows, "d": args.tile_d, "blas_threads": 1, "numexpr_threads": 1,
                             "finish_ms": 1e3 * min(seconds), "dot_ms": 1e3 * dot_s,
                             "tile_ms": 1e3 * (min(seconds) + dot_s),
                             "max_abs_diff": float(np.max(np.abs(out - reference)))})
    finally:
        numexpr.set_num_threads(threads_before)
    naive_row = next(r for r in rows if r["variant"] == "numpy-naive")
    for r in rows:
        r["x_naive"] = naive_row["finish_ms"] / r["finish_ms"]
        r["tile_x_naive"] = naive_row["tile_ms"] / r["tile_ms"]
    return rows


def _best(fn, repeat: int) -> float:
    seconds = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return min(seconds)


# -- whole jobs ---------------------------------------------------------------------------------
JOB_COLUMNS = [("n", "n", ""), ("m", "m", ""), ("d", "d", ""), ("tile", "tile", ""),
               ("symmetric", "sym", ""), ("tasks", "tasks", ""), ("seconds", "s", ".1f"),
               ("gflops_equiv", "GFLOPS-eq", ".1f"), ("kernel_gflops_per_worker", "kernel GF/w", ".1f"),
               ("written_gb", "written GB", ".1f"), ("io_fraction", "I/O", ".0%"), ("max_abs_err", "max err", ".0e")]


def job_benchmark(args) -> list[dict]:
    import numpywren
    from numpywren import BigMatrix

    dt = np.dtype(args.dtype)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((args.n, args.d)).astype(dt)
    y = rng.standard_normal((args.m, args.d)).astype(dt)
    gamma = 1.0 / args.d
    rows = []
    prefix = f"bench-kernel-{uuid.uuid4().hex[:8]}"
    runs = [(False, x, y)] + ([] if args.no_symmetric else [(True, x, x)])
    with common.scratch_store(args.store, "kernel") as store, \
            numpywren.LocalExecutor(args.workers, store, blas_threads=1) as ex:
        common.warm_up(ex)
        X = BigMatrix.from_numpy(x, (args.tile, args.d), store, f"{prefix}/X")
        Y = BigMatrix.from_numpy(y, (args.tile, args.d), store, f"{prefix}/Y")
        try:
            for symmetric, a, b in runs:
                K = numpywren.kernel(X, None if symmetric else Y, kind="rbf", gamma=gamma,
                                     out=f"{prefix}/K", executor=ex, progress=False)
                r = K.report
                error = _check_tiles(K, a, b, gamma)
                K.delete()
                n, m = K.shape
                rows.append({"part": "job", "kind": "rbf", "dtype": dt.name, "n": n, "m": m, "d": args.d,
                             "tile": args.tile, "symmetric": symmetric, "workers": args.workers,
                             "tasks": r.tasks, "seconds": r.wall_seconds,
                             "gflops_equiv": 2.0 * n * m * args.d / r.wall_seconds / 1e9,
                             "report_gflops": r.gflops, "kernel_gflops_per_worker": r.kernel_gflops_per_worker,
                             "written_gb": r.bytes_written / 1e9, "read_gb": r.bytes_read / 1e9,
                             "io_fraction": r.io_fraction, "compute_s": r.compute_seconds,
                             "write_s": r.write_seconds, "io_wait_s": r.io_wait_seconds, "max_abs_err": error})
                print(f"  {'K(X)' if symmetric else 'K(X, Y)'} {n}x{m}: {r}", flush=True)
        finally:
            X.delete()
            Y.delete()
    return rows


def _check_tiles(K, x, y, gamma) -> float:
    """Largest absolute error of the first, last and one middle tile against float64 numpy."""
    gi, gj = K.grid
    worst = 0.0
    for i, j in {(0, 0), (gi - 1, gj - 1), (gi // 2, gj // 3), (0, gj - 1)}:
        rs, cs = K.block_slices(i, j)
        a, b = x[rs].astype(np.float64), y[cs].astype(np.float64)
        d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
        want = np.exp(-gamma * np.maximum(d2, 0))
        worst = max(worst, float(np.max(np.abs(K.get_block(i, j) - want))))
    return worst


if __name__ == "__main__":
    sys.exit(main())
