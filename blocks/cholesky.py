"""Cholesky and triangular-solve tile kernels: LAPACK potrf, BLAS syrk/gemm/trsm through ``blocks.blas``
(the layer's MKL when present, else scipy's OpenBLAS wrappers, in place).

Tiles arrive C-ordered (often as read-only maps of tile files); ``blocks.blas``
maps each call to the column-major routine on the transpose of a C-ordered
buffer, so updates run in place and no operand is copied. Only the lower
triangle of a diagonal tile is read, as LAPACK's ``potrf(lower=True)`` does.

All kernels take float32, float64, complex64 or complex128 tiles (computing in
``dtype``) and ragged edge tiles. For complex tiles the transposes of the
Cholesky algebra are conjugate transposes (A = L L^H): HERK for SYRK, and the
conjugate of the other operand (a copy of one tile) for GEMM's and TRSM's.
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from blocks import blas


def working_copy(a: np.ndarray, dtype) -> np.ndarray:
    """A writeable C-ordered copy of tile ``a`` in ``dtype`` (inputs may be read-only maps)."""
    return np.array(a, dtype=dtype, order="C", copy=True)


def syrk_update(c: np.ndarray, panel: np.ndarray) -> np.ndarray:
    """c -= panel @ panel.T (panel @ panel.H for complex: HERK) on the lower triangle of the square tile
    ``c``, in place."""
    rank_k = blas.herk if c.dtype.kind == "c" else blas.syrk
    return rank_k(np.asarray(panel, dtype=c.dtype), c, lower=True, alpha=-1.0, beta=1.0)


def _conj(x: np.ndarray) -> np.ndarray:
    """The conjugate of a complex tile (a copy); a real tile as it is."""
    return np.conj(x) if x.dtype.kind == "c" else x


def gemm_update(c: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """c -= a @ b.T (a @ b.H for complex) on the tile ``c``, in place."""
    b = _conj(np.asarray(b, dtype=c.dtype))
    return blas.gemm(np.asarray(a, dtype=c.dtype), b.T, c, alpha=-1.0, beta=1.0)


def matmul_update(c: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """c -= a @ b on the tile ``c``, in place (the update of a triangular solve)."""
    return blas.gemm(np.asarray(a, dtype=c.dtype), np.asarray(b, dtype=c.dtype), c, alpha=-1.0, beta=1.0)


def potrf_lower(c: np.ndarray) -> np.ndarray:
    """Lower Cholesky factor of the symmetric tile whose lower triangle ``c`` holds, in place (the upper
    triangle is zeroed). Not positive definite: numpy.linalg.LinAlgError naming the leading minor."""
    try:
        blas.potrf(c, lower=True)
    except blas.LapackError as e:
        order = getattr(e, "order", None)
        if order is None:
            raise ValueError(str(e)) from None
        error = np.linalg.LinAlgError(f"not positive definite: the leading minor of order {order} of the tile "
                                      "is not positive")
        error.order = int(order)
        raise error from None
    c[np.triu_indices_from(c, 1)] = 0
    return c


def trsm_right_lower_t(c: np.ndarray, l_diag: np.ndarray) -> np.ndarray:
    """c <- c @ inv(l_diag).T (.H for complex: inv(conj(L)).T) for a lower-triangular ``l_diag``, in place
    (the panel step of Cholesky)."""
    return blas.trsm(_conj(np.asarray(l_diag, dtype=c.dtype)), c, left=False, lower=True, trans=True)


def cholesky_diagonal(a: np.ndarray, panels: Iterable[np.ndarray], dtype) -> np.ndarray:
    """L[j, j] = potrf(A[j, j] - sum_k L[j, k] @ L[j, k].T) (left-looking; ``panels`` may stream)."""
    c = working_copy(a, dtype)
    for panel in panels:
        syrk_update(c, panel)
    return potrf_lower(c)


def cholesky_update(a: np.ndarray, updates: Iterable, diagonal: bool, dtype) -> np.ndarray:
    """The early part of a tile's update: A[j, j] - sum_k L[j, k] L[j, k]^T (``diagonal``; ``updates`` are
    panels, only the lower triangle is computed) or A[i, j] - sum_k L[i, k] L[j, k]^T (``updates`` are
    (L[i, k], L[j, k]) pairs)."""
    c = working_copy(a, dtype)
    for update in updates:
        if diagonal:
            syrk_update(c, update)
        else:
            gemm_update(c, *update)
    return c


def cholesky_panel(a: np.ndarray, pairs: Iterable[tuple[np.ndarray, np.ndarray]], l_diag: np.ndarray,
                   dtype) -> np.ndarray:
    """L[i, j] = (A[i, j] - sum_k L[i, k] @ L[j, k].T) @ inv(L[j, j]).T (left-looking)."""
    c = working_copy(a, dtype)
    for l_ik, l_jk in pairs:
        gemm_update(c, l_ik, l_jk)
    return trsm_right_lower_t(c, l_diag)


def triangular_block(b: np.ndarray, pairs: Iterable[tuple[np.ndarray, np.ndarray]], t_diag: np.ndarray,
                     lower: bool, dtype) -> np.ndarray:
    """X[i] = inv(T[i, i]) @ (B[i] - sum_k T[i, k] @ X[k]) (block substitution); a zero on the diagonal
    of ``t_diag`` raises LinAlgError as scipy.linalg.solve_triangular does."""
    c = working_copy(b, dtype)
    for t_ik, x_k in pairs:
        matmul_update(c, t_ik, x_k)
    zero = np.flatnonzero(np.diagonal(t_diag) == 0)
    if zero.size:
        raise np.linalg.LinAlgError(f"singular matrix: resolution failed at diagonal {zero[0]}")
    if c.size:
        blas.trsm(np.asarray(t_diag, dtype=dtype), c, left=True, lower=lower)
    return c


def diagonal_flops(n: int, k: int) -> float:
    """Flops of a diagonal tile task: k syrk updates of an n x n tile by n x t panels, then potrf."""
    return float(n) * n * k + n ** 3 / 3.0


def panel_flops(m: int, n: int, k: int) -> float:
    """Flops of a panel tile task: an (m x n) tile updated by k columns (2 m n k), then trsm (m n^2)."""
    return 2.0 * m * n * k + float(m) * n * n


__all__ = ["working_copy", "syrk_update", "gemm_update", "matmul_update", "potrf_lower", "trsm_right_lower_t",
           "cholesky_diagonal", "cholesky_update", "cholesky_panel", "triangular_block", "diagonal_flops", "panel_flops"]
