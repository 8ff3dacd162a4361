"""numpywren: serverless, distributed dense linear algebra on stateless workers and an object store."""
from numpywren.api import default_executor, executor, get_executor, using
from numpywren.executors import Executor, LocalExecutor
from numpywren.futures import (ALL_COMPLETED, ALWAYS, ANY_COMPLETED, Future, RemoteError,
                               RemoteExitError, WorkerDiedError, get_all_results, wait)
from numpywren import elementwise  # noqa: F401 - numpywren.elementwise: operators and reductions
from numpywren.jobs import Plan, compose
from numpywren.jobs import run as run
from numpywren.factor import cho_solve, cholesky, solve, solve_triangular
from numpywren.kernels import kernel
from numpywren.linalg import matmul, syrk
from numpywren.matrix import BigMatrix, MatrixNotFoundError
from numpywren.paradigms import mapreduce
from numpywren.qr import lstsq, qr
from numpywren.eigh import eigh, eigvalsh
from numpywren.svd import svd_compressed
from numpywren.fullsvd import svd  # the function numpywren.svd, after the svd_compressed module's import
from numpywren.scheduler import JobFailedError, Report
from numpywren.storage import KeyNotFoundError, LocalStore, Store, StoreError, open_store
from numpywren.tile import CorruptTileError, InputChangedError, StaleTileError


def plot_timeline(report, path, bins: int = 60) -> str:
    """A PNG Gantt chart of a job's tasks per worker and its GFLOPS over time (see numpywren.timeline)."""
    from numpywren.timeline import plot_timeline as plot

    return plot(report, path, bins)


__version__ = "0.1.0"

__all__ = [
    "executor", "default_executor", "get_executor", "using", "Executor", "LocalExecutor", "Future", "wait",
    "get_all_results",
    "ALL_COMPLETED", "ANY_COMPLETED", "ALWAYS", "RemoteError", "RemoteExitError", "WorkerDiedError",
    "BigMatrix", "MatrixNotFoundError", "CorruptTileError", "StaleTileError", "InputChangedError",
    "matmul", "syrk", "kernel", "cholesky", "solve_triangular", "cho_solve", "solve", "qr", "lstsq", "eigh", "eigvalsh", "svd",
    "svd_compressed", "plot_timeline", "Plan", "compose", "run", "Report",
    "JobFailedError", "mapreduce",
    "Store", "LocalStore", "StoreError", "KeyNotFoundError", "open_store",
]
