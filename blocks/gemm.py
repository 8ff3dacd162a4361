"""GEMM tile kernels: C = sum_k A_k @ B_k, accumulated in place."""
from __future__ import annotations

from typing import Iterable

import numpy as np

from blocks import blas


def gemm_accumulate(pairs: Iterable[tuple[np.ndarray, np.ndarray]], dtype=None) -> np.ndarray:
    """Return ``sum(a @ b for a, b in pairs)`` with one output buffer and one scratch buffer.

    Inputs may be transposed views (``tile.T``): numpy hands them to BLAS with
    the transpose flag, so no copy is made. ``pairs`` may be a lazy iterator
    (the task runner uses one that prefetches the next tiles while this one
    multiplies). Each product is added into the output by GEMM itself (beta = 1:
    no scratch buffer, no separate addition pass): through the layer's MKL
    library (``blocks.blas``) where present, else scipy's BLAS wrapper (the
    same OpenBLAS as numpy's; 1-3% less CPU per 1024^3 pair than matmul into
    a scratch tile plus ``+=``, benchmarks/README.md "Small jobs, part 3").
    """
    out = scratch = None
    lib = blas.library()
    for a, b in pairs:
        if dtype is not None and (a.dtype != dtype or b.dtype != dtype):
            a, b = a.astype(dtype, copy=False), b.astype(dtype, copy=False)
        if a.dtype == b.dtype and a.dtype in blas._PREFIX and (lib is None or lib.has(a.dtype, "gemm")):
            out = blas.gemm(a, b, out, beta=0.0 if out is None else 1.0, lib=lib)
            continue
        if out is None:
            out = np.matmul(a, b)
            continue
        if scratch is None:
            scratch = np.empty_like(out)
        np.matmul(a, b, out=scratch)
        out += scratch
    if out is None:
        raise ValueError("gemm_accumulate needs at least one pair of tiles")
    return out


def tile_flops(m: int, n: int, k: int) -> float:
    """Floating-point operations of one (m x k) @ (k x n) product (multiply + add)."""
    return 2.0 * m * n * k


def sum_tiles(tiles: Iterable[np.ndarray]) -> np.ndarray:
    """Sum partial-product tiles (the reduction step of split-k GEMM)."""
    out = None
    for t in tiles:
        if out is None:
            out = np.array(t, copy=True)
        else:
            out += t
    if out is None:
        raise ValueError("sum_tiles needs at least one tile")
    return out
