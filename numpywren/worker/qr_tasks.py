"""Worker-side runners of TSQR jobs (kernels in ``blocks.qr``).

**Design: one tile per task, Q kept implicit.** A tile task writes exactly
one tile, but a local QR has two results (Q and R). Instead of two tasks per
row block, every TSQR node writes ONE *factor tile* (``geqrf``'s compact
output plus a row of ``tau``, see ``blocks.qr``): it holds both Q (as
Householder reflectors) and R. A parent node reads its children's factor
tiles and takes their R from the upper triangle; Q is applied later, top
down, by ``tsqr_apply`` tasks. When only R is wanted (``mode="r"``, lstsq),
nodes write plain R tiles and nothing else exists.

- ``tsqr``: factor one node. ``params["leaf"]``: the inputs are the tiles of one
  row block, placed side by side (``[A | b]`` for lstsq); otherwise they are
  the children's tiles, whose R factors are stacked. ``params["form"]`` is the
  form of the output and of the children: ``"r"`` or ``"factor"``.
- ``tsqr_r``: the R of a factor tile (the root's, into the user's R).
- ``tsqr_apply``: ``(Q_node @ [M; 0])[rows]`` where ``inputs`` = (factor tile,
  M tile) or just (factor tile,) for M = I (the root). For an inner node this
  is a child's M (its n x n share of the final Q); for a leaf, its block of Q.
"""
from __future__ import annotations

import time

import numpy as np

from blocks import qr as kernels
from numpywren.protocol import TileTask
from numpywren.worker.tasks import TileReader, _write


def tsqr_tile(task: TileTask) -> dict:
    """Factor one TSQR node: a row block (leaf) or the stacked R factors of its children."""
    reader = TileReader()
    dtype = task.output[0].dtype
    form, leaf = task.params["form"], bool(task.params["leaf"])
    tiles = [reader.read(ref) for ref in task.inputs]
    start = time.perf_counter()
    if leaf and form == "r":   # CholeskyQR2 reads the block in place, in either order (no Fortran copy)
        stacked = kernels.row_block(tiles, dtype)
    elif leaf:
        stacked = kernels.hstack_block(tiles, dtype)
    else:
        stacked = kernels.stack_r([t if form == "r" else kernels.r_of_factor(t) for t in tiles], dtype)
    del tiles
    method = "householder"
    if form == "factor":
        result = kernels.factor(stacked)
    elif leaf:  # a tall row block: BLAS-3 CholeskyQR2 where it is accurate (blocks.qr.r_factor_blas3)
        result, method = kernels.r_factor_blas3(stacked)
    else:
        result = kernels.r_factor(stacked)
    return {**_write(task, result, reader, time.perf_counter() - start), "qr": method}


def tsqr_r_tile(task: TileTask) -> dict:
    """output = the R factor held in a factor tile."""
    reader = TileReader()
    (ref,) = task.inputs
    factor = reader.read(ref)
    start = time.perf_counter()
    r = kernels.r_of_factor(factor).astype(task.output[0].dtype, copy=False)
    return _write(task, r, reader, time.perf_counter() - start)


def tsqr_apply_tile(task: TileTask) -> dict:
    """output = rows ``params["rows"]`` of Q_node @ [M; 0] (M = identity when no M tile is given)."""
    reader = TileReader()
    factor = reader.read(task.inputs[0])
    dtype = task.output[0].dtype
    if len(task.inputs) > 1:
        m = np.asarray(reader.read(task.inputs[1]), dtype=dtype)
    else:
        m = np.eye(min(factor.shape[0] - 1, factor.shape[1]), dtype=dtype)
    start = time.perf_counter()
    lo, hi = task.params["rows"]
    result = np.ascontiguousarray(kernels.apply_q(factor, m)[lo:hi])
    return _write(task, result, reader, time.perf_counter() - start)
