"""Worker-side runner of the one step of ``eigh`` that is not a tile task: the band eigenproblem.

``band_eigh``: ``params["tiles"]`` lists the band's diagonal tiles then its
sub-diagonal tiles, each as CAQR row segments (``numpywren.worker.caqr_tasks``);
the output tile holds the eigenvalues in its first row and, with
``params["vectors"]``, the band matrix's eigenvectors below (``(n + 1) x n``).
"""
from __future__ import annotations

import time

import numpy as np

from blocks import eigen
from numpywren.protocol import TileTask
from numpywren.worker.caqr_tasks import _stack
from numpywren.worker.tasks import TileReader, _write


def band_eigh_tile(task: TileTask) -> dict:
    """Eigenvalues (and vectors) of the band matrix assembled from the task's tiles, by LAPACK on this worker."""
    reader = TileReader()
    cache = {}
    tiles = [_stack(task, reader, segments, cache) for segments in task.params["tiles"]]
    count = task.params["diagonal_tiles"]
    vectors = bool(task.params["vectors"])
    start = time.perf_counter()
    ab = eigen.lower_band(tiles[:count], tiles[count:], task.params["bandwidth"])
    del tiles, cache
    w, z = eigen.eigh_band(ab, vectors)
    dtype = task.output[0].dtype
    out = np.empty(((z.shape[0] if vectors else 0) + 1, w.size), dtype=dtype)
    out[0] = w
    if vectors:
        out[1:] = z
    return _write(task, out, reader, time.perf_counter() - start)
