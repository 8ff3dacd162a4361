"""Cholesky and triangular-solve tile kernels (LAPACK potrf, BLAS syrk/gemm/trsm through scipy.linalg).

Tiles arrive C-ordered (often as read-only maps of tile files). BLAS wants
column-major operands, so every kernel works on the *transpose* of a
C-ordered buffer, which is a column-major view of the same memory: updates
run in place and no operand is copied. Only the lower triangle of a
diagonal tile is read, as LAPACK's ``potrf(lower=True)`` does.

All kernels take float32, float64, complex64 or complex128 tiles (computing in
``dtype``) and ragged edge tiles. For complex tiles the transposes of the
Cholesky algebra are conjugate transposes (A = L L^H: HERK for SYRK, and the
BLAS 'C' flag for 'T'); the same calls, with the transpose code of :func:`_t`.
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def _scipy_linalg():
    """scipy.linalg, imported on first use: the package (and GEMM on a Lambda layer without scipy) loads
    without it."""
    try:
        import scipy.linalg
    except ImportError as e:
        raise ModuleNotFoundError("factor and solve tiles need scipy (pip install scipy; on AWS Lambda the "
                                  "layer must include it)", name="scipy") from e
    return scipy.linalg


def get_blas_funcs(name, arrays):
    return _scipy_linalg().get_blas_funcs(name, arrays)


def get_lapack_funcs(name, arrays):
    return _scipy_linalg().get_lapack_funcs(name, arrays)


def working_copy(a: np.ndarray, dtype) -> np.ndarray:
    """A writeable C-ordered copy of tile ``a`` in ``dtype`` (inputs may be read-only maps)."""
    return np.array(a, dtype=dtype, order="C", copy=True)


def _t(c: np.ndarray) -> int:
    """BLAS's transpose code for the algebra's transpose: 1 ('T'), or 2 ('C', conjugate) for complex tiles."""
    return 2 if c.dtype.kind == "c" else 1


def syrk_update(c: np.ndarray, panel: np.ndarray) -> np.ndarray:
    """c -= panel @ panel.T (panel @ panel.H: HERK, for complex) on the lower triangle of the C-ordered
    square tile ``c``, in place."""
    panel = np.asarray(panel, dtype=c.dtype)
    syrk = get_blas_funcs("herk" if c.dtype.kind == "c" else "syrk", (c,))
    # c.T is column-major; its upper triangle is c's lower one. trans=1 with a=panel.T gives panel @ panel.T
    # (trans=2: conj(panel) @ panel.T, the transpose of panel @ panel.H).
    syrk(-1.0, panel.T, beta=1.0, c=c.T, trans=_t(c), lower=0, overwrite_c=1)
    return c


def gemm_update(c: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """c -= a @ b.T (a @ b.H for complex) on the C-ordered tile ``c``, in place."""
    a, b = np.asarray(a, dtype=c.dtype), np.asarray(b, dtype=c.dtype)
    gemm = get_blas_funcs("gemm", (c,))
    # c.T -= b @ a.T, with b = (b.T)^T (trans_a=1; conj(b) with trans_a=2) and a.T column-major as is.
    gemm(-1.0, b.T, a.T, beta=1.0, c=c.T, trans_a=_t(c), trans_b=0, overwrite_c=1)
    return c


def matmul_update(c: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """c -= a @ b on the C-ordered tile ``c``, in place (the update of a triangular solve)."""
    a, b = np.asarray(a, dtype=c.dtype), np.asarray(b, dtype=c.dtype)
    gemm = get_blas_funcs("gemm", (c,))
    gemm(-1.0, b.T, a.T, beta=1.0, c=c.T, overwrite_c=1)  # c.T -= b.T @ a.T
    return c


def potrf_lower(c: np.ndarray) -> np.ndarray:
    """Lower Cholesky factor of the symmetric tile whose lower triangle ``c`` holds, in place (the upper
    triangle is zeroed). Not positive definite: numpy.linalg.LinAlgError naming the leading minor."""
    potrf = get_lapack_funcs("potrf", (c,))
    factor, info = potrf(c.T, lower=0, clean=1, overwrite_a=1)   # c.T's upper = c's lower
    if info > 0:
        error = np.linalg.LinAlgError(f"not positive definite: the leading minor of order {info} of the tile "
                                      "is not positive")
        error.order = int(info)
        raise error
    if info < 0:
        raise ValueError(f"potrf: illegal value in argument {-info}")
    return factor.T


def trsm_right_lower_t(c: np.ndarray, l_diag: np.ndarray) -> np.ndarray:
    """c <- c @ inv(l_diag).T (.H for complex) for a lower-triangular ``l_diag``, in place (the panel step of
    Cholesky)."""
    l_diag = np.asarray(l_diag, dtype=c.dtype)
    trsm = get_blas_funcs("trsm", (c,))
    # Solve l_diag @ x.T = c.T: a = l_diag.T is column-major upper, op(a) = l_diag (conj(l_diag) for 'C').
    out = trsm(1.0, l_diag.T, c.T, side=0, lower=0, trans_a=_t(c), overwrite_b=1)
    return out.T


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
    return _scipy_linalg().solve_triangular(np.asarray(t_diag, dtype=dtype), c, lower=lower, overwrite_b=True,
                                         check_finite=False)


def diagonal_flops(n: int, k: int) -> float:
    """Flops of a diagonal tile task: k syrk updates of an n x n tile by n x t panels, then potrf."""
    return float(n) * n * k + n ** 3 / 3.0


def panel_flops(m: int, n: int, k: int) -> float:
    """Flops of a panel tile task: an (m x n) tile updated by k columns (2 m n k), then trsm (m n^2)."""
    return 2.0 * m * n * k + float(m) * n * n


__all__ = ["working_copy", "syrk_update", "gemm_update", "matmul_update", "potrf_lower", "trsm_right_lower_t",
           "cholesky_diagonal", "cholesky_update", "cholesky_panel", "triangular_block", "diagonal_flops", "panel_flops"]
