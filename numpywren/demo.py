"""``numpywren demo``: multiply two matrices through the store and check against numpy.

On local workers by default; ``--function-name`` runs it on the deployed Lambda function instead (the
store must then be its S3 store), and ``--max-cost`` gives the run a budget (numpywren.budget): refused
before anything is created if the prediction is above it (``--platform FILE`` predicts with a calibrated
profile), stopped cleanly if it could spend more.
"""
from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

from numpywren.budget import add_max_cost, price_model


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=_positive_int, default=4096, help="matrix size N (N x N @ N x N), default 4096")
    parser.add_argument("--tile", type=_positive_int, default=1024, help="tile size, default 1024")
    parser.add_argument("--workers", type=_positive_int, default=2, help="local worker processes (with --function-name: calls at once), default 2")
    parser.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    parser.add_argument("--store", default=None,
                        help="store URL or folder (default: a temporary folder, removed afterwards)")
    parser.add_argument("--function-name", default=None,
                        help="run on this deployed Lambda function (store: its s3://bucket/prefix); "
                             "--workers is then its concurrency")
    parser.add_argument("--region", default=None, help="AWS region of the function (default: the store's)")
    parser.add_argument("--platform", default=None, metavar="NAME|FILE.json",
                        help="profile max_cost predicts with (default lambda; a calibrate output file)")
    parser.add_argument("--endpoint-url", help=argparse.SUPPRESS)  # the Lambda endpoint (tests: a fake)
    add_max_cost(parser)


def _executor(args: argparse.Namespace, store):
    import numpywren

    if args.function_name is None:
        if args.platform is not None:
            raise ValueError("--platform prices a Lambda run: it needs --function-name")
        where = f"{args.workers} local workers x 1 BLAS thread"
        return numpywren.LocalExecutor(workers=args.workers, store=store), where
    from numpywren.executors.aws_lambda import LambdaExecutor

    ex = LambdaExecutor(args.function_name, store=store, region=args.region, max_concurrency=args.workers,
                        endpoint_url=args.endpoint_url)
    if args.platform is not None:
        ex.platform = args.platform
    return ex, f"Lambda function {args.function_name!r}, up to {ex.max_concurrency} at once"


def run(args: argparse.Namespace) -> int:
    import numpywren
    from numpywren import BigMatrix

    if args.function_name is not None and args.store is None:
        raise ValueError("--function-name needs --store s3://bucket/prefix, the function's store")
    with tempfile.TemporaryDirectory(prefix="numpywren-demo-") as tmp:
        store = numpywren.open_store(args.store or tmp)
        executor, where = _executor(args, store)
        with executor as ex:
            if args.max_cost is not None:  # an executor without a price model refuses before any upload
                price_model(ex)
            print(f"numpywren demo: C = A @ B, N={args.n}, tile={args.tile}, {args.dtype}, {where}, "
                  f"store {store.url}")
            rng = np.random.default_rng(42)
            a = rng.standard_normal((args.n, args.n)).astype(args.dtype)
            b = rng.standard_normal((args.n, args.n)).astype(args.dtype)
            start = time.perf_counter()
            A = BigMatrix.from_numpy(a, args.tile, store, "demo/A", overwrite=True)
            B = BigMatrix.from_numpy(b, args.tile, store, "demo/B", overwrite=True)
            print(f"stored A and B as {A.grid[0]}x{A.grid[1]} tiles in {time.perf_counter() - start:.2f} s")
            C = numpywren.matmul(A, B, out="demo/C", executor=ex, progress=True, max_cost=args.max_cost)
        print(C.report)
        budget = getattr(C.report, "budget", None)
        if budget:
            print(f"budget: predicted ${budget['predicted']:.6f}, spent ${budget['spent']:.6f} of max_cost "
                  f"${budget['max_cost']:g} ({budget['invocations']} invocations, {budget['gb_seconds']:.2f} GB-s)")
        c = C.to_numpy()
        reference = a.astype(np.float64) @ b.astype(np.float64)
        error = np.linalg.norm(c - reference) / np.linalg.norm(reference)
        tolerance = 1e-5 if args.dtype == "float32" else 1e-12
        print(f"relative error against numpy: {error:.2e} (tolerance {tolerance:.0e}) -> "
              f"{'OK' if error < tolerance else 'WRONG'}")
        if args.store:
            print(f"result left in the store as {C!r}")
        return 0 if error < tolerance else 1
