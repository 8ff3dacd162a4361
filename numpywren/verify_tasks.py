"""Worker side of a job's final check: read the headers of a batch of output tiles and report any that is
not the run's (numpywren.jobs verifies its outputs this way when they have many tiles).

One task per batch, run on the workers, so a job of 43,000 output tiles on 3,000 workers checks them
in a few request round trips per worker instead of 43,000 / IO_THREADS round trips from the driver.
"""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the simulator's parameters import this module: keep it light
    from numpywren.dag import Task

#: concurrent header reads per verification task (S3 latency hides behind these)
VERIFY_THREADS = 8


def batch_size(tiles: int, workers: int, parallel: int = VERIFY_THREADS) -> int:
    """Tiles per verification task. The workers' round trips (batch / parallel) and the driver's result
    reads (batches / parallel) balance at a batch of about sqrt(tiles); never more batches than workers."""
    return max(parallel, math.isqrt(max(tiles - 1, 0)) + 1, -(-tiles // max(1, workers)))


def verify_tile(task: "Task") -> dict:
    """Blocks of ``task.params["blocks"]`` whose stored tile is not bound to (``gen``, ``run``): with the
    binding found (None: missing or corrupt). The output reference names the matrix only."""
    matrix = task.output[0]
    blocks = [tuple(ij) for ij in task.params["blocks"]]
    expected = (task.params["gen"], task.params["run"])
    with ThreadPoolExecutor(min(VERIFY_THREADS, max(1, len(blocks)))) as pool:
        bindings = list(pool.map(lambda ij: matrix.tile_binding(*ij), blocks))
    bad = [[i, j, b] for (i, j), b in zip(blocks, bindings) if not b or (b["gen"], b["run"]) != expected]
    return {"bad": bad, "checked": len(blocks)}
