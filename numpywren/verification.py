"""How a job's final check is spread over the workers when an output has many tiles (numpywren.jobs sends
the tasks, numpywren.worker.verify_tasks runs them, numpywren.sim_params models them).

Reading 43,000 headers from the driver, IO_THREADS at a time, takes longer than the job itself on S3;
spread over the workers in batches of about sqrt(tiles), the workers make sqrt(tiles) / VERIFY_THREADS
round trips each and the driver reads one small result per batch. A tile another run overwrote after
this run wrote it is found either way (numpywren.worker.verify_tasks compares every header's binding).
"""
from __future__ import annotations

import math

#: Verify on the workers when a matrix has more output tiles than this (else the driver reads them)
VERIFY_ON_WORKERS_ABOVE = 32


def batch_size(tiles: int, workers: int, parallel: int = 8) -> int:
    """Tiles per verification task. The workers' round trips (batch / parallel) and the driver's result
    reads (batches / parallel) balance at a batch of about sqrt(tiles); never more batches than workers."""
    return max(parallel, math.isqrt(max(tiles - 1, 0)) + 1, -(-tiles // max(1, workers)))
