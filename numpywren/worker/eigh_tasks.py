"""Worker-side runner of the one step of ``eigh`` that is not a tile task: the band eigenproblem.

``band_eigh``: ``params["tiles"]`` lists the band's diagonal tiles then its
sub-diagonal tiles, each as CAQR row segments (``numpywren.worker.caqr_tasks``);
the output tile is the eigenvalues (one row). With ``params["vectors"]`` the
band matrix's eigenvectors are written first, tile by tile, into the matrix
``params["writes"]`` names (``write_whole``): the output tile, written last,
says they are all there.
"""
from __future__ import annotations

import time

import numpy as np

from blocks import eigen
from numpywren.protocol import TileTask
from numpywren.worker.caqr_tasks import _stack
from numpywren.worker.lone import alone_blas
from numpywren.worker.tasks import TileReader, _write, write_whole


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
    # the other workers idle: the dense LAPACK paths may use their cores; the narrowing's small BLAS-3
    # windows stay on one thread (two made it 5x slower at n = 8192, load 4.9: benchmarks/README.md)
    dense = vectors or eigen.dense_values(ab.shape[1], ab.shape[0] - 1)
    with alone_blas(task.params if dense else {}):
        w, z = eigen.eigh_band(ab, vectors)
    compute = time.perf_counter() - start
    written = write_whole(task, [z] if vectors else [])
    del z
    stats = _write(task, w[None, :].astype(task.output[0].dtype), reader, compute)
    return {**stats, "bytes_written": stats["bytes_written"] + written}
