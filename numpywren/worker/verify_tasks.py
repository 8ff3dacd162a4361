"""Worker side of a job's final check: read the headers of a batch of output tiles and report any that is
not the run's (numpywren.verification sends these tasks when an output has many tiles).
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from numpywren.protocol import TileTask

#: concurrent header reads per verification task (S3 latency hides behind these)
VERIFY_THREADS = 8


def verify_tile(task: TileTask) -> dict:
    """Blocks of ``task.params["blocks"]`` whose stored tile is not bound to (``gen``, ``run``): with the
    binding found (None: missing or corrupt). The output reference names the matrix only."""
    matrix = task.output[0]
    blocks = [tuple(ij) for ij in task.params["blocks"]]
    expected = (task.params["gen"], task.params["run"])
    with ThreadPoolExecutor(min(VERIFY_THREADS, max(1, len(blocks)))) as pool:
        bindings = list(pool.map(lambda ij: matrix.tile_binding(*ij), blocks))
    bad = [[i, j, b] for (i, j), b in zip(blocks, bindings) if not b or (b["gen"], b["run"]) != expected]
    return {"bad": bad, "checked": len(blocks)}
