"""Worker-side runners of element-wise jobs and reductions (see numpywren.elementwise for the DAGs).

Params are JSON-safe: an operation name from the fixed sets of ``blocks.elementwise``, scalars as floats
in hex (a complex scalar as the pair [real, imag]).
"""
from __future__ import annotations

import time

from blocks.elementwise import apply, combine_rows, reduce_rows
from numpywren.protocol import TileTask
from numpywren.worker.tasks import TileReader, _write


def elementwise_tile(task: TileTask) -> dict:
    """output = op(input tile[, second input tile or scalar]); ``params``: op, scalar, swap."""
    reader = TileReader()
    tiles = [reader.read(ref) for ref in task.inputs]
    params = task.params
    other = tiles[1] if len(tiles) > 1 else None
    if "scalar" in params:  # a float in hex (exact, and JSON-safe for inf and NaN); [real, imag] for a complex
        other = _scalar(params["scalar"])
    start = time.perf_counter()
    result = apply(str(params["op"]), tiles[0], other, task.output[0].dtype, swap=bool(params.get("swap")))
    return _write(task, result, reader, time.perf_counter() - start)


def _scalar(value) -> float | complex:
    parts = list(value) if isinstance(value, (list, tuple)) and len(value) == 2 else [value]
    if not all(isinstance(p, str) for p in parts):
        raise ValueError(f"element-wise scalar must be a float in hex or a pair of them, got {value!r}")
    numbers = [float.fromhex(p) for p in parts]
    return complex(*numbers) if len(numbers) == 2 else numbers[0]


def reduce_tile(task: TileTask) -> dict:
    """output (rows x 1) = reduction ``params["kind"]`` of each row of one input tile."""
    reader = TileReader()
    (tile,) = [reader.read(ref) for ref in task.inputs]
    start = time.perf_counter()
    result = reduce_rows(str(task.params["kind"]), tile, task.output[0].dtype)
    return _write(task, result, reader, time.perf_counter() - start)


def combine_tile(task: TileTask) -> dict:
    """output (rows x 1) = the partial columns of one row block, combined (sum, max or min)."""
    reader = TileReader()
    columns = [reader.read(ref) for ref in task.inputs]
    start = time.perf_counter()
    result = combine_rows(str(task.params["kind"]), columns, task.output[0].dtype)
    return _write(task, result, reader, time.perf_counter() - start)
