"""LU tile kernels: a panel's partial-pivoting factorization (with its multipliers), the U blocks, substitution.

Rows stay in their original order across the tiles of a factorization (see
numpywren.decomp_lu); these kernels work on the rows a task gathers. BLAS and LAPACK
calls go through ``blocks.blas`` (the layer's MKL when present, else
numpy/scipy's OpenBLAS). All kernels take float32, float64, complex64 or complex128 tiles and
compute in the ``dtype`` they are given (float32 is factored in float32).
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from blocks import blas


def panel_pivots(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Partial pivoting (getrf) on an m x w panel, m >= w: ``(order, lu, info)``.

    ``order`` lists the w pivot rows (indices into ``rows``) in pivot order,
    ``lu`` the w x w diagonal block (unit L below the diagonal, U on and
    above), ``info`` LAPACK's (> 0: U[info-1, info-1] is exactly zero).
    """
    perm, lu, info = panel_factor(rows)
    return perm[:rows.shape[1]], np.array(lu[:rows.shape[1]]), info


def panel_factor(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Partial pivoting (getrf) on an m x w panel, m >= w, keeping its multipliers: ``(perm, lu, info)``.

    ``perm`` is the row order getrf chose (indices into ``rows``, all m; the first w are the
    pivots), ``lu`` the factored panel in that order: the w x w diagonal block on top, below
    it the multipliers (L) of the other rows, row r of ``lu`` belonging to ``rows[perm[r]]``.
    """
    m, w = rows.shape
    lu, ipiv, info = blas.getrf(rows)
    perm = np.arange(m)
    for r, p in enumerate(ipiv):
        perm[r], perm[p] = perm[p], perm[r]
    return perm, lu, info


def copy_into(dst: np.ndarray, src: np.ndarray, block: int = 64) -> np.ndarray:
    """dst[...] = src (cast to dst's dtype), in ``block`` x ``block`` pieces when one is row-major and the
    other column-major: numpy's own copy then walks one side a whole row or column apart, 5-10x slower
    on a tall panel (a 7168 x 1024 float64 panel: ~110-170 ms against ~20-35 ms). Returns ``dst``."""
    if dst.shape != src.shape:
        raise ValueError(f"copy_into: {src.shape} into {dst.shape}")
    if dst.ndim != 2 or min(src.shape) <= 1 or _row_major(dst) == _row_major(src):
        dst[...] = src
        return dst
    rows, cols = src.shape
    for i in range(0, rows, block):
        for j in range(0, cols, block):
            dst[i:i + block, j:j + block] = src[i:i + block, j:j + block]
    return dst


def _row_major(a: np.ndarray) -> bool:
    """Whether ``a``'s elements along a row are nearer each other than along a column."""
    return abs(a.strides[1]) <= abs(a.strides[0])


def subtract_products(c: np.ndarray, pairs: Iterable[tuple[np.ndarray, np.ndarray]],
                      rows: np.ndarray | None = None) -> np.ndarray:
    """c -= sum a @ b in place, skipping the rows of ``a`` that are zero (rows already pivoted carry
    zero multipliers, so late updates of a tile touch only its active rows) and, if ``rows`` (a boolean
    mask) is given, the rows it excludes (their values are left as they are).

    With ``rows``, the rows it keeps are gathered once, updated in place by every product (a row of
    ``a`` that is zero there adds nothing) and written back once: no temporary per product."""
    if rows is not None:
        live = np.flatnonzero(rows)
        if live.size == c.shape[0]:
            target = c
        elif live.size:
            target = c[live]
        else:
            for _ in pairs:   # consume the stream (its reads are accounted by the caller)
                pass
            return c
        for a, b in pairs:
            a = np.asarray(a if target is c else a[live], c.dtype)
            blas.gemm(a, np.asarray(b, c.dtype), target, alpha=-1.0, beta=1.0)
        if target is not c:
            c[live] = target
        return c
    for a, b in pairs:
        nonzero = np.any(a != 0, axis=1)
        live = np.flatnonzero(nonzero if rows is None else nonzero & rows)
        if live.size == a.shape[0]:
            blas.gemm(np.asarray(a, c.dtype), np.asarray(b, c.dtype), c, alpha=-1.0, beta=1.0)
        elif live.size:
            c[live] -= blas.gemm(np.asarray(a[live], c.dtype), np.asarray(b, c.dtype))
    return c


def substitute(b: np.ndarray, pairs: Iterable[tuple[np.ndarray, np.ndarray]], t_diag: np.ndarray, *,
               lower: bool, unit: bool) -> np.ndarray:
    """X = T^-1 (B - sum T_k X_k) for a triangular diagonal block ``t_diag`` (``lower`` or upper, ``unit``
    diagonal or not), in place in ``b``. A zero on a non-unit diagonal raises LinAlgError naming it."""
    subtract_products(b, pairs)
    if not unit:
        zero = np.flatnonzero(np.diagonal(t_diag) == 0)
        if zero.size:
            error = np.linalg.LinAlgError(f"Singular matrix: U has an exactly zero pivot at row {zero[0]} of "
                                          "this diagonal block")
            error.row = int(zero[0])
            raise error
    if b.size:
        blas.trsm(np.asarray(t_diag, b.dtype), b, left=True, lower=lower, unit_diagonal=unit)
    return b


# -- a panel's record: one tile (1 x record_length) the panel task writes ------------------------------
def record_length(n: int, t: int) -> int:
    """Numbers in a panel record of an n x n factorization with t x t tiles: the pivot order so far (n),
    the first zero pivot (1), the diagonal block's packed LU (t * t)."""
    return n + 1 + t * t


def pack_record(order: np.ndarray, info: int, lu: np.ndarray, n: int, t: int) -> np.ndarray:
    """``order``: original row of each factored position so far (the rest -1); ``info``: global
    1-based position of the first exactly zero pivot, or 0; ``lu``: the w x w diagonal block. The record is
    float64, or complex128 for a complex ``lu`` (the integers then sit, exactly, in the real parts)."""
    dtype = np.result_type(lu.dtype, np.float64)
    record = np.full((1, record_length(n, t)), -1.0, dtype=dtype)
    record[0, :order.size] = order
    record[0, n] = info
    block = np.zeros((t, t), dtype=dtype)
    block[:lu.shape[0], :lu.shape[1]] = lu
    record[0, n + 1:] = block.ravel()
    return record


def pack_order(order: np.ndarray, info: int) -> np.ndarray:
    """A record's first n + 1 numbers alone (1 x (n + 1) float64): the pivot order so far and the first zero
    pivot, all that the update, gather and permute tasks need of a panel record (its t x t block is 8 MB
    at t = 1024, the order 64 KB at n = 8192)."""
    small = np.empty((1, order.size + 1))
    small[0, :order.size] = order
    small[0, order.size] = info
    return small


def unpack_order(small: np.ndarray, n: int) -> tuple[np.ndarray, int]:
    """(order so far, info) from :func:`pack_order`'s tile, or from a whole record."""
    flat = np.asarray(small).ravel()
    return flat[:n].real.astype(np.int64), int(flat[n].real)


def unpack_record(record: np.ndarray, n: int, t: int, w: int) -> tuple[np.ndarray, int, np.ndarray]:
    """(order so far, as int64 with -1 for positions not yet factored; info; the w x w diagonal LU)."""
    flat = np.asarray(record).ravel()
    return (flat[:n].real.astype(np.int64), int(flat[n].real), flat[n + 1:].reshape(t, t)[:w, :w])


def lu_flops(n: int) -> float:
    """The conventional flop count of an LU factorization, 2 n^3 / 3."""
    return 2.0 * n ** 3 / 3.0


# -- conditioning: LAPACK gecon's estimate of ||A^-1||_1 --------------------------------------------------------
def _signs(y: np.ndarray) -> np.ndarray:
    """sign(y) as LAPACK's lacn2 takes it: +-1 for real y, y / |y| (1 where y is 0) for complex y."""
    if np.iscomplexobj(y):
        magnitude = np.abs(y)
        return np.where(magnitude == 0, 1, y / np.where(magnitude == 0, 1, magnitude))
    return np.where(y >= 0, 1.0, -1.0)


def inverse_norm1_estimate(solve, n: int, dtype, max_iterations: int = 5) -> float:
    """A lower bound on ||A^-1||_1, usually within a small factor of it: Hager's method as Higham made it
    LAPACK's ``lacn2`` (gecon's estimator), given ``solve(V, adjoint)`` -> A^-1 V, or A^-H V with
    ``adjoint`` (V is n x k). The first pass also carries lacn2's alternating vector, which LAPACK solves
    last; the estimate is the same. Takes 3 passes at least, 2 + 2 * ``max_iterations`` at most."""
    if n == 0:
        return 0.0
    alternating = np.array([(-1.0) ** i * (1.0 + i / max(n - 1, 1)) for i in range(n)])
    first = solve(np.stack([np.full(n, 1.0 / n), alternating], axis=1).astype(dtype), False)
    y, y_alt = first[:, 0], first[:, 1]
    extra = 2.0 * np.abs(y_alt).sum() / (3.0 * n)   # lacn2's final check, on the alternating vector
    estimate = float(np.abs(y).sum())
    if n == 1:
        return max(estimate, extra)
    signs = _signs(y)
    z = solve(signs[:, None].astype(dtype), True)[:, 0]
    j = int(np.argmax(np.abs(z)))
    for _ in range(max_iterations - 1):
        e = np.zeros((n, 1), dtype)
        e[j] = 1
        y = solve(e, False)[:, 0]
        previous, estimate = estimate, float(np.abs(y).sum())
        new_signs = _signs(y)
        if estimate <= previous or (not np.iscomplexobj(y) and np.array_equal(new_signs, signs)):
            estimate = max(estimate, previous)
            break
        signs = new_signs
        z = solve(signs[:, None].astype(dtype), True)[:, 0]
        last, j = j, int(np.argmax(np.abs(z)))
        if np.abs(z[last]) == np.abs(z[j]):
            break
    return max(estimate, extra)


__all__ = ["copy_into", "record_length", "pack_record", "unpack_record", "pack_order", "unpack_order", "panel_pivots", "panel_factor", "subtract_products",
           "substitute", "lu_flops", "inverse_norm1_estimate"]
