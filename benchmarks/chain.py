"""A chained product (A @ B) @ C: one composed plan vs two runs back to back, same workers, same store.

Composed (``numpywren.compose``), a tile of the second product starts as
soon as the row of ``A @ B`` it reads is written, so workers idle in the first
product's last wave take second-product tiles, and the job pays its setup
(records, verification, cleanup) once. Rounds alternate the two ways so that
machine noise hits both; each keeps its median.

    python -m benchmarks.chain [--size 4096] [--tile 1024] [--workers 2] [--repeat 3] [--tiny]
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from benchmarks import common
import numpywren
from numpywren import BigMatrix


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size", type=int, default=4096, help="N of the N x N matrices (default 4096)")
    parser.add_argument("--tile", type=int, default=1024, help="tile size (default 1024)")
    parser.add_argument("--workers", type=int, default=2, help="local workers x 1 BLAS thread (default 2)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of both ways (default 3)")
    parser.add_argument("--store", default=None, help="store URL (default: a temporary local folder)")
    common.add_common_arguments(parser)


def main(argv=None) -> int:
    args = common.parse_args("chain", __doc__, add_arguments, argv)
    if args.tiny:
        args.size, args.tile, args.repeat = 256, 64, 1
    info = common.machine_info()
    print(common.describe_machine(info))
    n, t = args.size, args.tile
    rng = np.random.default_rng(0)
    a, b, c = (rng.standard_normal((n, n)) for _ in range(3))
    want = (a @ b) @ c
    rows = []
    with common.scratch_store(args.store, prefix="bench-chain") as store:
        A, B, C = (BigMatrix.from_numpy(x, t, store, k, overwrite=True) for x, k in ((a, "A"), (b, "B"), (c, "C")))
        with numpywren.LocalExecutor(args.workers, store, blas_threads=1) as ex:
            common.warm_up(ex)
            for round_ in range(args.repeat):
                for way in (("apart", "composed") if round_ % 2 == 0 else ("composed", "apart")):
                    start = time.perf_counter()
                    if way == "apart":
                        AB = numpywren.matmul(A, B, out="AB", executor=ex, progress=False)
                        numpywren.matmul(AB, C, out="ABC", executor=ex, progress=False)
                    else:
                        first = numpywren.matmul(A, B, out="AB", compute=False, executor=ex)
                        second = numpywren.matmul(first.result, C, out="ABC", compute=False, executor=ex)
                        numpywren.run(numpywren.compose(first, second), ex, progress=False)
                    seconds = time.perf_counter() - start
                    err = np.linalg.norm(BigMatrix.open(store, "ABC").to_numpy() - want) / np.linalg.norm(want)
                    rows.append({"way": way, "round": round_, "seconds": seconds,
                                 "gflops": 4.0 * n ** 3 / seconds / 1e9, "rel_err": err})
    medians = {w: statistics.median(r["seconds"] for r in rows if r["way"] == w) for w in ("apart", "composed")}
    common.print_table(rows, [("way", "way", ""), ("round", "round", "d"), ("seconds", "seconds", ".2f"),
                              ("gflops", "GFLOPS", ".1f"), ("rel_err", "rel. error", ".1e")],
                       title=f"(A @ B) @ C, N={n}, tile {t}, {args.workers} workers x 1 BLAS thread")
    print(f"median: apart {medians['apart']:.2f} s, composed {medians['composed']:.2f} s, "
          f"composed / apart = {medians['composed'] / medians['apart']:.3f}")
    common.report_paths([common.write_csv("chain", rows, info, args.out)])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
