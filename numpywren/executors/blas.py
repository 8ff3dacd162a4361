"""BLAS threads in a worker process: each call uses the executor's ``blas_threads``, no more.

Engines that start their own worker processes (dask, Lithops) cannot be given
the environment of a numpywren worker, so the call sets it on its first run in
each process: threadpoolctl for the BLAS libraries already loaded, the usual
environment variables for those loaded later (scipy's own OpenBLAS, numexpr).
"""
from __future__ import annotations

import os

BLAS_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")

_applied: list[int] = []  # the limit this process runs with, once set


def limit_blas_threads(threads: int) -> None:
    """Limit this process's BLAS (and numexpr) pools to ``threads``; a no-op once done.

    BLAS pools are per process: calls running on several threads of one process share them.
    """
    if _applied == [threads]:
        return
    from threadpoolctl import threadpool_limits

    os.environ.update({var: str(threads) for var in BLAS_THREAD_VARS})
    threadpool_limits(limits=threads)
    try:
        import numexpr

        numexpr.set_num_threads(threads)
    except ImportError:
        pass
    _applied[:] = [threads]
