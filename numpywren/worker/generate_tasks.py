"""Worker-side runner of ``from_function`` (numpywren.creation): make one tile with the user's function.

The function is the one pickle on the tile-task path: ``from_function`` stores it (numpywren.serialize)
under its plan's key, and the task names that key. Whoever can write the store can run code on the
workers through it, exactly as through ``executor.map`` (the store is the trust boundary).
"""
from __future__ import annotations

import time

import numpy as np

from numpywren import serialize
from numpywren.protocol import TileTask
from numpywren.worker.tasks import TileReader, _write

_functions: dict = {}  # store url, key -> the unpickled function (a worker makes many tiles of one matrix)


def generate_tile(task: TileTask) -> dict:
    """output = fn(i, j) for the output block (i, j); ``params["fn"]``: the function's key in the store."""
    matrix, i, j = task.output
    where = (matrix.store.url, str(task.params["fn"]))
    fn = _functions.get(where)
    if fn is None:
        if len(_functions) > 8:
            _functions.clear()
        fn = _functions[where] = serialize.loads(matrix.store.get(where[1]))
    start = time.perf_counter()
    block = np.asarray(fn(i, j))
    if not np.can_cast(block.dtype, matrix.dtype, casting="same_kind"):
        raise TypeError(f"from_function: fn({i}, {j}) returned dtype {block.dtype}, which does not convert "
                        f"safely to the matrix dtype {matrix.dtype}")
    block = block.astype(matrix.dtype, copy=False)
    return _write(task, block, TileReader(), time.perf_counter() - start)
