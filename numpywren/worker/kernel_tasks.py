"""Worker-side runners of kernel-matrix jobs: squared row norms of a row block, and one K tile.

Like the GEMM runners they read input tiles (prefetching the next column
block while the current one multiplies), call a kernel from ``blocks.kernels``
and write exactly one output tile, returning the stats dict of ``_write``.
"""
from __future__ import annotations

import time

from blocks.kernels import kernel_tile as compute_kernel_tile
from blocks.kernels import row_norms_sq
from numpywren.protocol import TileTask
from numpywren.worker.tasks import TileReader, _write


def row_norms_tile(task: TileTask) -> dict:
    """output (a column tile) = squared norms of the rows of one row block, over all column blocks."""
    reader = TileReader()
    dtype = task.output[0].dtype
    norms, compute = None, 0.0
    for (x,) in reader.stream([(ref,) for ref in task.inputs]):
        start = time.perf_counter()
        norms = row_norms_sq(x.astype(dtype, copy=False), out=norms)
        compute += time.perf_counter() - start
    return _write(task, norms.reshape(-1, 1), reader, compute)


def kernel_tile(task: TileTask) -> dict:
    """output = K(X row block i, Y row block j); ``task.inputs`` are the (X[i, k], Y[j, k]) refs over k.

    ``params`` holds the kernel's parameters and, for rbf, ``norms``: the refs
    of the two row blocks' squared norms written by :func:`row_norms_tile`.
    """
    reader = TileReader()
    params = dict(task.params)
    norm_refs = params.pop("norms", None)
    x_sq = y_sq = None
    if norm_refs is not None:
        x_sq, y_sq = (reader.read(ref)[:, 0] for ref in norm_refs)
    dtype = task.output[0].dtype
    start = time.perf_counter()
    tile = compute_kernel_tile(params.pop("kind"), reader.stream(task.inputs), x_sq=x_sq, y_sq=y_sq,
                               dtype=dtype, **params)
    # Everything in that call was computing except waiting for a prefetched read.
    compute = time.perf_counter() - start - reader.wait_seconds
    return _write(task, tile, reader, compute)
