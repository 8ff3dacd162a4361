"""Worker-side runner of the one step of ``svd`` that is not a tile task: the SVD of the band matrix.

``band_svd``: ``params["tiles"]`` lists the band's diagonal tiles (R of the QR
panels) then its super-diagonal tiles (R of the LQ panels, L transposed), as
CAQR row segments. The output tile is the singular values (one row; without vectors
from the band held in band storage, ``blocks.eigen.singular_values_band``). With
``params["vectors"]`` the two matrices ``params["writes"]`` names are written
first, tile by tile: U's starting block ``blockdiag(U_B, I)`` (``urows x ucols``,
zero rows below n in reduced mode) and the band's right vectors V_B (``n x n``).
"""
from __future__ import annotations

import time

import numpy as np

from blocks import band, eigen
from numpywren.protocol import TileTask
from numpywren.worker.caqr_tasks import _stack
from numpywren.worker.lone import alone_blas
from numpywren.worker.tasks import TileReader, _write, write_whole


def band_svd_tile(task: TileTask) -> dict:
    """Singular values (and vectors) of the band matrix assembled from the task's tiles, on this worker."""
    reader = TileReader()
    cache = {}
    params = task.params
    tiles = [_stack(task, reader, segments, cache) for segments in params["tiles"]]
    count = params["diagonal_tiles"]
    start = time.perf_counter()
    dtype = task.output[0].dtype
    if not params["vectors"]:   # band storage, (b + 1) x n: never the n x n B unless the band is wide
        ab = eigen.upper_band(tiles[:count], tiles[count:], params["bandwidth"])
        del tiles, cache
        # the other workers idle: only the dense SVD may use their cores (the narrowing's small windows
        # and ?gbbrd's rotations gain nothing from threads: eigh_tasks)
        dense = band.prefer_dense(ab.shape[1], ab.shape[0] - 1)
        with alone_blas(params if dense else {}):
            out = eigen.singular_values_band(ab)[None, :].astype(dtype)
        return _write(task, out, reader, time.perf_counter() - start)
    B = eigen.upper_band_dense(tiles[:count], tiles[count:])
    del tiles, cache
    n = B.shape[0]
    with alone_blas(params):
        u, s, vh = eigen.svd_dense(B)
    del B
    compute = time.perf_counter() - start
    ZU, _, _ = params["writes"][0]
    urows, ucols = ZU.shape
    start_u = np.zeros((urows, ucols), dtype=u.dtype)
    start_u[:n, :n] = u
    del u
    extra = min(urows, ucols) - n
    if extra > 0:  # complete mode: the identity block below and right of U_B
        start_u[n:n + extra, n:n + extra] = np.eye(extra, dtype=start_u.dtype)
    written = write_whole(task, [start_u, vh.conj().T])
    stats = _write(task, s[None, :].astype(dtype), reader, compute)
    return {**stats, "bytes_written": stats["bytes_written"] + written}
