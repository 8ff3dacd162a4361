"""BLAS threads for a task that runs alone: the one-worker band step of ``eigh``/``eigvalsh``/``svd``.

The band task depends on every reduction task and every back-transformation task depends on it (the
planners mark it ``params["alone"]``), so while it runs the other workers idle. It may then use the cores
the executor declared for all its workers on this machine, not just its own share: the local executor
sets ``$NUMPYWREN_LONE_TASK_THREADS`` to ``min(cpu_count, workers x blas_threads)``; a Lambda sandbox
has its own vCPUs (one per 1769 MB, at most 6, from ``$AWS_LAMBDA_FUNCTION_MEMORY_SIZE``). Elsewhere
(dask, Lithops, inline) the worker keeps its limit. Plans run side by side on one executor would share
the cores: the band step is then slower, never wrong.
"""
from __future__ import annotations

import contextlib
import logging
import os

logger = logging.getLogger(__name__)

THREADS_ENV = "NUMPYWREN_LONE_TASK_THREADS"
LAMBDA_MEMORY_ENV = "AWS_LAMBDA_FUNCTION_MEMORY_SIZE"
MB_PER_VCPU = 1769   # Lambda: one vCPU per 1769 MB of memory, at most 6 (numpywren.deploy)
MAX_VCPUS = 6


def lone_threads(environ=os.environ) -> int | None:
    """The BLAS threads a task running alone may use here, or None to keep the worker's limit."""
    cores = os.cpu_count() or 1
    if environ.get(THREADS_ENV):
        return max(1, min(int(environ[THREADS_ENV]), cores))
    if environ.get(LAMBDA_MEMORY_ENV):
        vcpus = -(-int(environ[LAMBDA_MEMORY_ENV]) // MB_PER_VCPU)
        return max(1, min(vcpus, MAX_VCPUS, cores))
    return None


@contextlib.contextmanager
def alone_blas(params: dict):
    """Raise this process's BLAS threads to :func:`lone_threads` inside the block if ``params["alone"]``;
    the worker's own limit is restored on leaving it."""
    threads = lone_threads() if params.get("alone") else None
    if threads is None:
        yield None
        return
    from threadpoolctl import threadpool_limits

    logger.debug("task running alone: %d BLAS threads", threads)
    with threadpool_limits(limits=threads):
        yield threads
