"""Worker-side runners of CAQR jobs (kernels in ``blocks.qr``; the plan in ``numpywren.caqr``).

A CAQR task works on a *stack of row segments*: pieces of tiles (rows
``lo:hi`` of an input tile), the R of a factor tile, or rows of an identity
block that is never stored. ``params["segments"]`` lists them, top to bottom:

- ``["tile", i, lo, hi]``: rows ``lo:hi`` of input ``i`` (``["tile", i, lo, hi, c0, c1]``: columns ``c0:c1``);
- ``["tilet", i, lo, hi]``: rows ``lo:hi`` of input ``i`` transposed, conjugated if complex (optional column
  range as for "tile");
- ``["sym", i, lo, hi]``: rows ``lo:hi`` of input ``i``'s lower triangle mirrored (a symmetric, or complex
  Hermitian, diagonal tile);
- ``["r", i, k]``: the R held by factor tile ``i`` (upper triangle of its top ``k`` rows; ``["r", i]``: of
  its top ``min(rows, cols)`` rows, a ``blocks.qr.factor`` tile);
- ``["eye", h, w, lo, hi, diagonal]``: rows ``lo:hi`` of an ``h x w`` block of
  the identity matrix (a diagonal block) or of zeros.

Segments let a task read a tile whose rows were last updated by two different
tasks (the top rows by a tree node, the rest by a leaf) without a copy task.

- ``caqr_factor``: the factor tile of the stack, by ``params["kernel"]``: ``blocks.qr.factor`` (geqrf; the
  default), ``"wy"`` ``factor_wy`` (geqrt), or ``"ts"`` ``factor_ts`` (tpqrt: the stack is an R triangle,
  as wide as the stack, on a block).
- ``caqr_apply``: ``Q^H @ stack`` (``params["transpose"]``; Q^T if real) or ``Q @ stack``, Q the
  full orthogonal factor of the factor tile ``inputs[0]`` (``apply_factor``, ``apply_wy`` or ``apply_ts`` by
  ``params["kernel"]`` as above).
- ``caqr_take``: the stack itself (R tiles, zero tiles).
"""
from __future__ import annotations

import time

import numpy as np

from blocks import qr as kernels
from numpywren.protocol import TileTask
from numpywren.worker.tasks import TileReader, _write


def _stack(task: TileTask, reader: TileReader, segments=None, tiles=None, order: str = "F") -> np.ndarray:
    """The stack of ``segments`` (default ``params["segments"]``), a copy in ``order``; ``tiles`` caches inputs
    already read."""
    dtype = task.output[0].dtype
    tiles = {} if tiles is None else tiles
    parts = []
    for seg in task.params["segments"] if segments is None else segments:
        kind = seg[0]
        if kind == "eye":
            h, w, lo, hi, diagonal = seg[1:]
            block = np.eye(h, w, dtype=dtype) if diagonal else np.zeros((h, w), dtype=dtype)
            parts.append(block[lo:hi])
            continue
        index = seg[1]
        if index not in tiles:
            tiles[index] = reader.read(task.inputs[index])
        if kind == "r":
            parts.append(kernels.r_of_factor(tiles[index], seg[2] if len(seg) > 2 else None))
        elif kind == "tile":
            block = tiles[index][seg[2]:seg[3]]
            parts.append(block[:, seg[4]:seg[5]] if len(seg) > 4 else block)
        elif kind == "tilet":
            block = tiles[index].conj().T[seg[2]:seg[3]]   # conj() is a no-op view for real tiles
            parts.append(block[:, seg[4]:seg[5]] if len(seg) > 4 else block)
        elif kind == "sym":
            parts.append(kernels.symmetrize_lower(tiles[index])[seg[2]:seg[3]])
        else:
            raise ValueError(f"unknown CAQR segment kind {kind!r}")
    return kernels.stack_segments(parts, dtype, order)


def caqr_factor_tile(task: TileTask) -> dict:
    """Factor the stack of segments: a panel tile (leaf) or the children's R factors (tree node)."""
    reader = TileReader()
    stacked = _stack(task, reader)
    start = time.perf_counter()
    kernel = task.params.get("kernel")
    if kernel == "ts":
        n = stacked.shape[1]
        result = kernels.factor_ts(stacked[:n], stacked[n:])
    else:
        result = kernels.factor_wy(stacked) if kernel == "wy" else kernels.factor(stacked)
    return _write(task, result, reader, time.perf_counter() - start)


def caqr_apply_tile(task: TileTask) -> dict:
    """Apply a node's orthogonal factor (transposed for the trailing update) to the stack of segments."""
    reader = TileReader()
    factor = reader.read(task.inputs[0])
    kernel, transpose = task.params.get("kernel"), bool(task.params["transpose"])
    if kernel in ("wy", "ts"):   # compact WY: updated in place in a C-ordered stack (see blocks.qr.apply_ts)
        stacked = _stack(task, reader, order="C")
        start = time.perf_counter()
        apply = kernels.apply_wy if kernel == "wy" else kernels.apply_ts
        result = apply(factor, stacked, transpose, overwrite=True)
    else:
        stacked = _stack(task, reader)
        start = time.perf_counter()
        result = kernels.apply_factor(factor, stacked, transpose)
    return _write(task, result.astype(task.output[0].dtype, copy=False), reader, time.perf_counter() - start)


def caqr_take_tile(task: TileTask) -> dict:
    """output = the stack of segments (an R tile assembled from a node's rows, or zeros)."""
    reader = TileReader()
    return _write(task, _stack(task, reader, order="C"), reader, 0.0)
