"""BLAS threads for a task that runs alone: the one-worker band step of ``eigh``/``eigvalsh``/``svd``, when
it goes through a dense LAPACK solver (``?syevd``/``?syevr``, ``?gesdd``: BLAS-3 and BLAS-2 on n x n).
The band-storage paths (the narrowing's small windows, ``?gbbrd``, ``?sbevd``) keep one thread: two made
the narrowing ~5x slower at n = 8192 on a loaded box.

The band task depends on every reduction task and every back-transformation task depends on it (the
planners mark it ``params["alone"]``), so while it runs the other workers idle. It may then use the cores
the executor declared for all its workers on this machine, not just its own share: the local executor
sets ``$NUMPYWREN_LONE_TASK_THREADS`` to ``min(cpu_count, workers x blas_threads)``; a Lambda sandbox
has its own vCPUs (one per 1769 MB, at most 6, from ``$AWS_LAMBDA_FUNCTION_MEMORY_SIZE``). Elsewhere
(dask, Lithops, inline) the worker keeps its limit.

Only cores that are idle right now are taken (:func:`busy_elsewhere`, Linux's count of runnable threads):
OpenBLAS threads that share a core with another process wait on each other at every BLAS-2 call, and
?sytrd's tridiagonalization is half BLAS-2 (n = 3072, load 4.7 on 2 cores: the band step took 11.5-26 s
on 2 threads against 4.6 s on one). The count is taken once, when the task starts. Not for a task that
writes tiles besides its output (the band's vectors, ``protocol.has_side_outputs``): two attempts of it (a
lost attempt still alive and its retry) may both write those tiles, so they must compute the same bytes,
and LAPACK's results (a vector's sign in a cluster, its last bits) depend on the thread count. Such a task
takes the declared count whatever the load: deterministic, if slower on a busy machine.
"""
from __future__ import annotations

import contextlib
import logging
import os

from numpywren import protocol

logger = logging.getLogger(__name__)

THREADS_ENV = "NUMPYWREN_LONE_TASK_THREADS"
LAMBDA_MEMORY_ENV = "AWS_LAMBDA_FUNCTION_MEMORY_SIZE"
MB_PER_VCPU = 1769   # Lambda: one vCPU per 1769 MB of memory, at most 6 (numpywren.deploy)
MAX_VCPUS = 6


def lone_threads(environ=os.environ, busy: int = 0) -> int | None:
    """The BLAS threads a task running alone may use here (``busy``: cores other processes are using), or None
    to keep the worker's limit."""
    cores = os.cpu_count() or 1
    if environ.get(THREADS_ENV):
        declared = int(environ[THREADS_ENV])
    elif environ.get(LAMBDA_MEMORY_ENV):
        declared = min(-(-int(environ[LAMBDA_MEMORY_ENV]) // MB_PER_VCPU), MAX_VCPUS)
    else:
        return None
    return max(1, min(declared, cores - busy))


def busy_elsewhere(samples: int = 5, interval: float = 0.02) -> int:
    """Runnable threads on this machine besides the caller (the median of a few readings of the fourth field
    of ``/proc/loadavg``, which counts the reader itself); 0 where that file does not exist."""
    import statistics
    import time

    counts = []
    for k in range(samples):
        try:
            with open("/proc/loadavg") as f:
                counts.append(int(f.read().split()[3].split("/")[0]) - 1)
        except (OSError, ValueError, IndexError):
            return 0
        if k + 1 < samples:
            time.sleep(interval)
    return max(0, int(statistics.median(counts)))


@contextlib.contextmanager
def alone_blas(params: dict):
    """Raise this process's BLAS threads to :func:`lone_threads` inside the block if ``params["alone"]``
    (yields the threads, or None if unchanged); the worker's own limit is restored on leaving it."""
    threads = lone_threads() if params.get("alone") else None
    if threads is None or threads <= 1:
        yield None
        return
    from threadpoolctl import threadpool_info, threadpool_limits

    # a library whose thread count threadpoolctl cannot read says None (seen in the full suite): not counted
    own = max((p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas" and p.get("num_threads")),
              default=1)
    # tiles beside the output: every attempt must compute the same bytes, so the count may not follow the load
    threads = lone_threads(busy=0 if protocol.has_side_outputs(params) else busy_elsewhere())
    if threads <= own:   # never fewer than the worker's own threads (a Lambda worker already has its vCPUs)
        yield None
        return

    logger.debug("task running alone: %d BLAS threads", threads)
    with threadpool_limits(limits=threads):
        yield threads
