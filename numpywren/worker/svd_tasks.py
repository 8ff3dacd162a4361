"""Worker-side runner of the one step of ``svd`` that is not a tile task: the SVD of the band matrix.

``band_svd``: ``params["tiles"]`` lists the band's diagonal tiles (R of the QR
panels) then its super-diagonal tiles (R of the LQ panels, L transposed), as
CAQR row segments. Without ``params["vectors"]`` the output is one row of
singular values (from the band's Golub-Kahan embedding, ``blocks.eigen``).
With vectors it is ``(1 + urows + n) x max(n, ucols)``: the singular values,
then the band's left vectors as the top-left ``urows x ucols`` block of U's
starting matrix (``blockdiag(U_B, I)``, zero rows below n in reduced mode), then
the band's right vectors V_B (``n x n``).
"""
from __future__ import annotations

import time

import numpy as np

from blocks import eigen
from numpywren.protocol import TileTask
from numpywren.worker.caqr_tasks import _stack
from numpywren.worker.tasks import TileReader, _write


def band_svd_tile(task: TileTask) -> dict:
    """Singular values (and vectors) of the band matrix assembled from the task's tiles, on this worker."""
    reader = TileReader()
    cache = {}
    params = task.params
    tiles = [_stack(task, reader, segments, cache) for segments in params["tiles"]]
    count = params["diagonal_tiles"]
    start = time.perf_counter()
    B = eigen.upper_band_dense(tiles[:count], tiles[count:])
    del tiles, cache
    n = B.shape[0]
    dtype = task.output[0].dtype
    if not params["vectors"]:
        out = eigen.singular_values_band(B, params["bandwidth"])[None, :].astype(dtype)
        return _write(task, out, reader, time.perf_counter() - start)
    u, s, vh = eigen.svd_dense(B)
    urows, ucols = params["urows"], params["ucols"]
    out = np.zeros((1 + urows + n, max(n, ucols)), dtype=dtype)
    out[0, :n] = s
    out[1:1 + n, :n] = u
    extra = min(urows, ucols) - n
    if extra > 0:  # complete mode: the identity block below and right of U_B
        out[1 + n:1 + n + extra, n:n + extra] = np.eye(extra, dtype=dtype)
    out[1 + urows:, :n] = vh.conj().T
    return _write(task, out, reader, time.perf_counter() - start)
