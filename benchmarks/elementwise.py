"""Element-wise throughput (GB/s through the store vs numpy in memory), numpy vs numexpr tile kernels, and GEMM
on zarr-backed inputs vs native tiles; all side by side in one run.

* ``A + B`` and ``A.sum()`` as tile jobs on local workers vs ``a + b`` and ``a.sum()`` in memory;
  GB/s counts the bytes the operation must touch (3 matrices for ``+``, 1 for ``sum``).
* The element-wise kernel on one tile: numpy ufunc vs ``numexpr.evaluate`` (decides ``USE_NUMEXPR``).
* ``A @ B`` with native tiles vs the same matrices as zarr v3 arrays (zstd, zarr's default, and raw),
  read in place by the workers; rounds rotate the order, each keeps its median.

    python -m benchmarks.elementwise [--size 4096] [--tile 1024] [--workers 2] [--repeat 3] [--tiny]
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from benchmarks import common
import numpywren
from numpywren import BigMatrix
from numpywren import elementwise

NAME = "elementwise"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size", type=int, default=4096, help="N of the N x N float64 matrices (default 4096)")
    parser.add_argument("--tile", type=int, default=1024, help="tile (and zarr chunk) size (default 1024)")
    parser.add_argument("--workers", type=int, default=2, help="local workers x 1 BLAS thread (default 2)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds (default 3); medians are reported")
    parser.add_argument("--store", default=None, help="store URL (default: a temporary local folder)")
    common.add_common_arguments(parser)


def main(argv=None) -> int:
    args = common.parse_args(NAME, __doc__, add_arguments, argv)
    if args.tiny:
        args.size, args.tile, args.repeat = 256, 64, 1
    info = common.machine_info()
    print(common.describe_machine(info))
    n, t = args.size, args.tile
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n)), rng.standard_normal((n, n))
    nbytes = a.nbytes
    rows: list[dict] = []

    def record(case: str, samples: list[float], touched: float, flops: float = 0.0, err: float = 0.0):
        s = statistics.median(samples)
        rows.append({"case": case, "seconds": s, "gb_s": touched / s / 1e9, "gflops": flops / s / 1e9,
                     "rel_err": err})

    # numpy in memory (the peer)
    record("numpy a + b (memory)", [_time(lambda: a + b) for _ in range(args.repeat)], 3 * nbytes)
    record("numpy a.sum() (memory)", [_time(a.sum) for _ in range(args.repeat)], nbytes)
    # the tile kernel: numpy vs numexpr
    x, y = a[:t, :t].copy(), b[:t, :t].copy()
    from blocks.elementwise import apply

    for use in (False, True):
        samples = [_time(lambda: apply("add", x, y, np.float64, use_numexpr=use)) for _ in range(5 * args.repeat)]
        record(f"tile kernel add {t}x{t} ({'numexpr' if use else 'numpy'})", samples, 3 * x.nbytes)

    with common.scratch_store(args.store, prefix="bench-elementwise") as store:
        A = BigMatrix.from_numpy(a, t, store, "A", overwrite=True)
        B = BigMatrix.from_numpy(b, t, store, "B", overwrite=True)
        with numpywren.LocalExecutor(args.workers, store, blas_threads=1) as ex:
            common.warm_up(ex)
            add_s, sum_s, err_add, err_sum = [], [], 0.0, 0.0
            for _ in range(args.repeat):
                start = time.perf_counter()
                S = elementwise.binary("add", A, B, executor=ex, progress=False)
                add_s.append(time.perf_counter() - start)
                err_add = np.abs(S.to_numpy() - (a + b)).max()
                del S
                start = time.perf_counter()
                total = elementwise.reduce(A, "sum", None, ex)
                sum_s.append(time.perf_counter() - start)
                err_sum = abs(total - a.sum()) / np.abs(a).sum()
            record(f"numpywren A + B (store, {args.workers} workers)", add_s, 3 * nbytes, err=err_add)
            record(f"numpywren A.sum() (store, {args.workers} workers)", sum_s, nbytes, err=err_sum)

            base = store.url.partition("?")
            variants = {"native tiles": (A, B)}
            for label, compressors in (("zarr zstd", "auto"), ("zarr raw", None)):
                pair = []
                for M, name in ((A, "A"), (B, "B")):
                    url = f"{base[0]}/{name}-{label.split()[1]}.zarr" + (f"?{base[2]}" if base[2] else "")
                    pair.append(M.to_zarr(url, ex, overwrite=True, compressors=compressors, progress=False))
                variants[label] = tuple(pair)
            want = a @ b
            times = {k: [] for k in variants}
            errs = {}
            order = list(variants)
            for round_ in range(args.repeat):
                for label in order[round_ % len(order):] + order[:round_ % len(order)]:
                    X, Y = variants[label]
                    start = time.perf_counter()
                    C = numpywren.matmul(X, Y, out="C", executor=ex, progress=False)
                    times[label].append(time.perf_counter() - start)
                    errs[label] = np.linalg.norm(C.to_numpy() - want) / np.linalg.norm(want)
            for label in variants:
                record(f"GEMM, inputs as {label}", times[label], 3 * nbytes, 2.0 * n ** 3, errs[label])
            zarr_bytes = {label: sum(i.size for i in store.list_info(f"{X.key}/")) for label, (X, _)
                          in variants.items() if label != "native tiles"}
    common.print_table(rows, [("case", "case", ""), ("seconds", "seconds", ".3f"), ("gb_s", "GB/s", ".2f"),
                              ("gflops", "GFLOPS", ".1f"), ("rel_err", "error", ".1e")],
                       title=f"N={n}, tile {t}, {args.workers} workers x 1 BLAS thread, median of {args.repeat}")
    for label, size in zarr_bytes.items():
        print(f"{label}: A is {size / 1e6:.1f} MB in the store ({nbytes / 1e6:.1f} MB of float64)")
    paths = [common.write_csv(NAME, rows, info, args.out)]
    if not args.no_plot:
        paths.append(_plot(rows, args))
    common.report_paths(paths)
    return 0


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _plot(rows: list[dict], args):
    plt = common.pyplot()
    if plt is None:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    through = [r for r in rows if not r["case"].startswith("GEMM")]
    left.barh([r["case"] for r in through], [r["gb_s"] for r in through], color="#7fa7d9")
    left.set_xlabel("GB/s (bytes the operation touches)")
    left.set_title("element-wise and reduction throughput")
    left.invert_yaxis()
    gemm = [r for r in rows if r["case"].startswith("GEMM")]
    right.bar([r["case"].replace("GEMM, inputs as ", "") for r in gemm], [r["gflops"] for r in gemm],
              color="#e8833a")
    right.set_ylabel("GFLOPS")
    right.set_title(f"GEMM N={args.size}, tile {args.tile}: native vs zarr inputs")
    for ax in (left, right):
        ax.tick_params(labelsize=8)
    return common.save_figure(fig, NAME, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
