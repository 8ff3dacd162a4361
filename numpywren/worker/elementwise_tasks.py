"""Worker-side runners of element-wise jobs and reductions (see numpywren.elementwise for the DAGs).

Params are JSON-safe: an operation name from the fixed sets of ``blocks.elementwise``, scalars as floats
in hex (a complex scalar as the pair [real, imag]).
"""
from __future__ import annotations

import time

import numpy as np

from blocks.elementwise import apply, combine_rows, row_reducer
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
    """output = reduction ``params["kind"]`` of each row of the input tiles: a run of the tiles of one
    row block, or of each row block of a band (the output tile spans the band's rows); each input a
    group of one tile (a bare tile reference is one input too).

    Each tile is read once, in pieces that stay in cache between its checksum and the kernel
    (TileReader.read_rows); a tile whose checksum fails raises after its last piece, before its column
    is used, so the task fails as it would have on reading the tile whole."""
    reader = TileReader()
    kind, dtype = str(task.params["kind"]), task.output[0].dtype
    groups = [g if isinstance(g[0], tuple) else (g,) for g in task.inputs]
    if any(len(g) != 1 for g in groups):
        raise ValueError(f"reduce task {task.id!r}: each input must be a group of one tile")
    refs = [g[0] for g in groups]
    by_row_block: dict[int, list[np.ndarray]] = {}
    compute = 0.0
    for ref in refs:
        matrix, i, j = ref
        column = np.empty((matrix.block_shape(i, j)[0], 1), dtype)
        reduce = None   # one per tile (its pieces are views of one array), set up on its first piece
        for first, rows in reader.read_rows(ref):
            start = time.perf_counter()
            reduce = reduce or row_reducer(kind, rows.dtype, dtype)
            reduce(rows, column[first:first + rows.shape[0], 0])
            compute += time.perf_counter() - start
        by_row_block.setdefault(i, []).append(column)
    start = time.perf_counter()
    parts = [columns[0] if len(columns) == 1 else combine_rows(kind, columns, dtype)
             for _, columns in sorted(by_row_block.items())]
    result = parts[0] if len(parts) == 1 else np.concatenate(parts)
    return _write(task, result, reader, compute + time.perf_counter() - start)


def combine_tile(task: TileTask) -> dict:
    """output (rows x 1) = the partial columns of one row block, combined (sum, max or min)."""
    reader = TileReader()
    columns = [reader.read(ref) for ref in task.inputs]
    start = time.perf_counter()
    result = combine_rows(str(task.params["kind"]), columns, task.output[0].dtype)
    return _write(task, result, reader, time.perf_counter() - start)
