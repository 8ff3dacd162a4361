"""``numpywren demo``: multiply two matrices through the store on local workers and check against numpy."""
from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=_positive_int, default=4096, help="matrix size N (N x N @ N x N), default 4096")
    parser.add_argument("--tile", type=_positive_int, default=1024, help="tile size, default 1024")
    parser.add_argument("--workers", type=_positive_int, default=2, help="local worker processes, default 2")
    parser.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    parser.add_argument("--store", default=None,
                        help="store URL or folder (default: a temporary folder, removed afterwards)")


def run(args: argparse.Namespace) -> int:
    import numpywren
    from numpywren import BigMatrix

    with tempfile.TemporaryDirectory(prefix="numpywren-demo-") as tmp:
        store = numpywren.open_store(args.store or tmp)
        print(f"numpywren demo: C = A @ B, N={args.n}, tile={args.tile}, {args.dtype}, "
              f"{args.workers} local workers x 1 BLAS thread, store {store.url}")
        rng = np.random.default_rng(42)
        a = rng.standard_normal((args.n, args.n)).astype(args.dtype)
        b = rng.standard_normal((args.n, args.n)).astype(args.dtype)
        start = time.perf_counter()
        A = BigMatrix.from_numpy(a, args.tile, store, "demo/A", overwrite=True)
        B = BigMatrix.from_numpy(b, args.tile, store, "demo/B", overwrite=True)
        print(f"stored A and B as {A.grid[0]}x{A.grid[1]} tiles in {time.perf_counter() - start:.2f} s")
        with numpywren.LocalExecutor(workers=args.workers, store=store) as ex:
            C = numpywren.matmul(A, B, out="demo/C", executor=ex, progress=True)
        print(C.report)
        c = C.to_numpy()
        reference = a.astype(np.float64) @ b.astype(np.float64)
        error = np.linalg.norm(c - reference) / np.linalg.norm(reference)
        tolerance = 1e-5 if args.dtype == "float32" else 1e-12
        print(f"relative error against numpy: {error:.2e} (tolerance {tolerance:.0e}) -> "
              f"{'OK' if error < tolerance else 'WRONG'}")
        if args.store:
            print(f"result left in the store as {C!r}")
        return 0 if error < tolerance else 1
