"""``numpywren bench NAME [options]``: route to ``benchmarks.NAME.main`` (imported only when chosen).

``numpywren bench gemm --tiny`` is the same as ``python -m benchmarks.gemm --tiny``;
``numpywren bench NAME --help`` lists a benchmark's own options.
"""
from __future__ import annotations

import argparse
import importlib

#: name -> what it measures
BENCHMARKS = {
    "gemm": "GFLOPS of numpywren GEMM vs numpy vs dask.array, per core, and its store I/O share",
    "scaling": "GFLOPS and store MB/s as workers grow (strong and weak scaling)",
    "io": "per-worker and aggregate store read/write MB/s for object sizes from 1 to 256 MB",
    "kernel": "RBF kernel matrix throughput",
    "paradigms": "word count (MapReduce vs Counter vs dask.bag), BSP sort MB/s, parameter-server SGD",
    "tile_io": "tile codec and tile transfer throughput",
    "scheduler": "driver cost per task (CPU, memory) for 10^4..10^6 tasks on a simulated backend",
    "chain": "(A @ B) @ C as one composed plan vs two runs back to back",
    "tsqr": "TSQR (R of a tall-and-skinny matrix) vs numpy.linalg.qr vs dask.array tsqr on dask.distributed",
    "linalg": "Cholesky GFLOPS vs scipy.linalg.cholesky and dask.array on dask.distributed + zarr",
    "complex": "complex128 GEMM, A.H @ B and Hermitian Cholesky vs numpy/scipy in one run",
    "lu": "LU and solve (16 right-hand sides) vs scipy.linalg.lu_factor/solve and dask.array on dask.distributed + zarr",
    "cholesky_large": "out-of-core Cholesky (N=32768): peak RSS of driver and workers, residual via distributed products",
    "lu_large": "out-of-core LU (N=16384): peak RSS of driver and workers, backward error via distributed products",
    "svd_large": "out-of-core singular values of a matrix with known ones: peak RSS of driver and workers, error",
    "plan_schedule": "a factorization plan's DAG list-scheduled on W workers: idle share and critical path, no I/O",
    "overhead": "per-call overhead of each executor (local, dask, lithops): no-op calls per second",
    "lambda_driver": "Lambda driver CPU per task, S3 requests and LISTs per job, against moto (simulated workers)",
    "predict": "the cloud simulator's predictions against local runs and published PyWren / numpywren figures",
    "sim_calibrate": "the simulator's local calibration: tile kernel GFLOPS by tile size, a job's fixed costs",
    "verify_requests": "a job's final check: its store requests counted by kind (the simulator's verification model)",
    "tiles": "automatic tiles: the tile tile_shape=None chooses vs the best of a tile sweep (GEMM, Cholesky)",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    listing = "; ".join(f"{name}: {what}" for name, what in BENCHMARKS.items())
    parser.add_argument("name", choices=sorted(BENCHMARKS), metavar="NAME", help=f"the benchmark ({listing})")
    parser.add_argument("options", nargs=argparse.REMAINDER,
                        help="the benchmark's own options (numpywren bench NAME --help)")


def run(args: argparse.Namespace) -> int:
    try:
        module = importlib.import_module(f"benchmarks.{args.name}")
    except ModuleNotFoundError as e:
        if e.name != f"benchmarks.{args.name}":
            raise
        print(f"benchmark {args.name!r} is not available in this installation (no module {e.name})")
        return 2
    from benchmarks import common

    common.PROG = "numpywren bench "  # usage and --help show the command the user typed
    return int(module.main(args.options) or 0)
