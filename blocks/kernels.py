"""Kernel-matrix tile kernels: K[a, b] = k(x_a, y_b) for a tile of rows of X against a tile of rows of Y.

The same formulas and parameter names as scikit-learn's ``pairwise_kernels``:

=============  ===============================================  ===========================
kind           K(x, y)                                          parameters
=============  ===============================================  ===========================
rbf            exp(-gamma * ||x - y||^2)                        gamma
linear         x . y
polynomial     (gamma * x . y + coef0) ** degree                gamma, degree, coef0
laplacian      exp(-gamma * ||x - y||_1)                        gamma
=============  ===============================================  ===========================

A tile is built in two steps. The *accumulate* step walks the column blocks
of the features, ``pairs = [(x_k, y_k), ...]``, so a task can stream them from
the store: x . y through BLAS (``x_k @ y_k.T``, as in GEMM) for rbf, linear and
polynomial, the L1 distance for laplacian. The *finish* step applies the
element-wise function once, in place on that tile (no tile-sized temporaries).
RBF uses ||x - y||^2 = |x|^2 + |y|^2 - 2 x . y with the squared row norms
passed in (computed once per row block, not once per tile) and clamps the
small negative values that rounding produces to 0, so K <= 1.

``use_numexpr=True`` fuses the arithmetic of the finish step into one numexpr
pass; ``False`` runs the same steps as in-place numpy ufuncs on cache-sized
blocks of rows. Neither makes a tile-sized temporary. The exponential is
always numpy's: numpy >= 1.22 evaluates it with SIMD instructions, several
times faster than numexpr's scalar ``exp`` (unless numexpr is built with
Intel VML, which the PyPI wheels are not). ``python -m benchmarks.kernel``
measures both paths.
"""
from __future__ import annotations

from collections.abc import Iterable

import numexpr
import numpy as np

from blocks.gemm import gemm_accumulate

KINDS = ("rbf", "linear", "polynomial", "laplacian")
ALIASES = {"poly": "polynomial"}  # scikit-learn accepts both names
L1_CHUNK_ELEMENTS = 1 << 17       # scratch of the L1 distance: 1 MiB of float64, stays in L2 cache
FINISH_CHUNK_ELEMENTS = 1 << 16   # the numpy path finishes a tile in blocks of rows this large (in cache)

Pairs = Iterable[tuple[np.ndarray, np.ndarray]]


# -- accumulate over the feature (column) blocks -----------------------------------------------
def row_norms_sq(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Squared Euclidean norm of every row of ``x``; added into ``out`` when given (column blocks)."""
    norms = np.einsum("ij,ij->i", x, x)
    if out is None:
        return norms
    out += norms
    return out


def dot_products(pairs: Pairs, dtype=None) -> np.ndarray:
    """``sum_k x_k @ y_k.T`` over the column blocks, through BLAS (one output buffer); for complex
    tiles ``x_k @ y_k^H``, the complex inner products (the linear kernel's K = X Y^H)."""
    return gemm_accumulate(((x, y.conj().T if np.iscomplexobj(y) else y.T) for x, y in pairs), dtype=dtype)


def l1_distances(pairs: Pairs, dtype=None) -> np.ndarray:
    """``D[a, b] = sum_k ||x_k[a] - y_k[b]||_1`` over the column blocks.

    No BLAS trick exists for the L1 distance, so it is chunked broadcasting:
    for a few rows of x at a time, ``|x[rows, :, None] - y.T|`` is formed in a
    scratch of ``L1_CHUNK_ELEMENTS`` (cache-sized) and summed over the feature
    axis, which numpy vectorizes along the contiguous rows of ``y.T``.
    """
    out = None
    for x, y in pairs:
        if dtype is not None:
            x, y = x.astype(dtype, copy=False), y.astype(dtype, copy=False)
        if out is None:
            out = np.zeros((x.shape[0], y.shape[0]), dtype=np.result_type(x, y))
        y_t = np.ascontiguousarray(y.T)
        features, m = y_t.shape
        cols = min(m, max(1, L1_CHUNK_ELEMENTS // features))
        rows = max(1, L1_CHUNK_ELEMENTS // (features * cols))
        for c in range(0, m, cols):
            for r in range(0, x.shape[0], rows):
                chunk = np.subtract(x[r:r + rows, :, None], y_t[None, :, c:c + cols])
                np.abs(chunk, out=chunk)
                out[r:r + rows, c:c + cols] += chunk.sum(axis=1)
    if out is None:
        raise ValueError("l1_distances needs at least one pair of tiles")
    return out


# -- finish: the element-wise function, in place -----------------------------------------------
def rbf_finish(xy: np.ndarray, x_sq: np.ndarray, y_sq: np.ndarray, gamma: float,
               use_numexpr: bool = True) -> np.ndarray:
    """Turn the x . y tile into exp(-gamma * max(|x|^2 + |y|^2 - 2 x . y, 0)), in place.

    Computed as exp(min(2 gamma x.y + (-gamma |x|^2 - gamma |y|^2), 0)): the
    norms are scaled once per row and column, not once per element, and added
    together first so that a diagonal tile of K(X, X) comes out symmetric.
    """
    dt = xy.dtype
    gx = (np.asarray(x_sq, dtype=dt) * dt.type(-gamma)).reshape(-1, 1)
    gy = (np.asarray(y_sq, dtype=dt) * dt.type(-gamma)).reshape(1, -1)
    two_gamma, zero = dt.type(2 * gamma), dt.type(0)
    if use_numexpr:
        # min(u, 0) through where() (numexpr's where is faster than its minimum), written so that
        # a NaN u stays NaN (NaN > 0 is false), as np.minimum and scikit-learn keep it
        numexpr.evaluate("where(two_gamma * xy + (gx + gy) > zero, zero, two_gamma * xy + (gx + gy))",
                         local_dict={"xy": xy, "gx": gx, "gy": gy, "two_gamma": two_gamma, "zero": zero},
                         out=xy, casting="same_kind")
        return np.exp(xy, out=xy)
    rows = max(1, FINISH_CHUNK_ELEMENTS // max(1, xy.shape[1]))
    norms = np.empty((min(rows, xy.shape[0]), xy.shape[1]), dtype=dt)
    for start in range(0, xy.shape[0], rows):  # a cache-sized block of rows goes through every step
        block = xy[start:start + rows]
        scaled = np.add(gx[start:start + rows], gy, out=norms[:len(block)])
        np.multiply(block, two_gamma, out=block)
        np.add(block, scaled, out=block)
        np.minimum(block, zero, out=block)       # rounding can make a tiny distance negative
        np.exp(block, out=block)
    return xy


def polynomial_finish(xy: np.ndarray, gamma: float, degree: float, coef0: float,
                      use_numexpr: bool = True) -> np.ndarray:
    """Turn the x . y tile into (gamma * x . y + coef0) ** degree, in place."""
    dt = xy.dtype
    g, c = dt.type(gamma), dt.type(coef0)
    if use_numexpr:
        # An integral degree goes into the expression as a literal, which numexpr
        # expands into multiplications instead of calling pow.
        power = str(int(degree)) if float(degree).is_integer() else "degree"
        numexpr.evaluate(f"(g * xy + c) ** {power}", local_dict={"g": g, "c": c, "xy": xy,
                                                                 "degree": dt.type(degree)},
                         out=xy, casting="same_kind")
        return xy
    np.multiply(xy, g, out=xy)
    np.add(xy, c, out=xy)
    return np.power(xy, dt.type(degree), out=xy)


def laplacian_finish(dist: np.ndarray, gamma: float) -> np.ndarray:
    """Turn the L1 distance tile into exp(-gamma * dist), in place (two numpy passes)."""
    np.multiply(dist, dist.dtype.type(-gamma), out=dist)
    return np.exp(dist, out=dist)


# -- one whole tile ------------------------------------------------------------------------------
def kernel_tile(kind: str, pairs: Pairs, *, gamma: float | None = None, degree: float = 3,
                coef0: float = 1, x_sq=None, y_sq=None, same_rows: bool = False,
                use_numexpr: bool = True, dtype=None) -> np.ndarray:
    """K tile from the column-block ``pairs`` of one row block of X and one of Y.

    ``x_sq``/``y_sq`` are the rows' squared norms (rbf; computed here if not
    given). ``same_rows`` says x and y are the same rows (a diagonal tile of
    K(X, X)): their distance is exactly 0, as scikit-learn sets it, so the
    diagonal of an rbf tile is exactly 1. ``gamma=None`` means 1 / n_features.
    """
    kind = ALIASES.get(kind, kind)
    if kind not in KINDS:
        raise ValueError(f"unknown kernel kind {kind!r}; use one of {', '.join(KINDS)}")
    if kind == "laplacian":
        pairs = list(pairs) if gamma is None else pairs
        dist = l1_distances(pairs, dtype=dtype)
        return laplacian_finish(dist, _gamma(gamma, pairs))
    out_dtype = dtype
    if kind == "rbf":
        # As scikit-learn does, float32 distances are computed in float64: |x|^2 + |y|^2 - 2 x.y
        # cancels catastrophically in float32 for points far from the origin.
        if dtype is None:
            pairs = list(pairs)
            out_dtype = np.result_type(*(a.dtype for pair in pairs for a in pair))
        dtype = np.result_type(out_dtype, np.float64)
        if x_sq is None or y_sq is None:
            pairs = list(pairs)
            x_sq = sum(row_norms_sq(x.astype(dtype, copy=False)) for x, _ in pairs)
            y_sq = sum(row_norms_sq(y.astype(dtype, copy=False)) for _, y in pairs)
    if gamma is None:
        pairs = list(pairs)
    xy = dot_products(pairs, dtype=dtype)
    if kind == "linear":
        return xy
    gamma = _gamma(gamma, pairs)
    if kind == "polynomial":
        return polynomial_finish(xy, gamma, degree, coef0, use_numexpr)
    out = rbf_finish(xy, x_sq, y_sq, gamma, use_numexpr)
    if same_rows:  # distance 0 exactly, except for a row holding NaN or inf
        np.fill_diagonal(out, np.where(np.isfinite(x_sq), 1.0, np.nan))
    return out.astype(out_dtype, copy=False)


def _gamma(gamma, pairs) -> float:
    return gamma if gamma is not None else 1.0 / sum(x.shape[1] for x, _ in pairs)


# -- whole tiles from full rows (convenience, and the single-tile reference) ----------------------
def rbf(x, y, gamma=None, x_sq=None, y_sq=None, use_numexpr=True):
    """exp(-gamma * ||x - y||^2) for every row of ``x`` against every row of ``y``."""
    return kernel_tile("rbf", [(x, y)], gamma=gamma, x_sq=x_sq, y_sq=y_sq, use_numexpr=use_numexpr)


def linear(x, y):
    """x @ y.T"""
    return kernel_tile("linear", [(x, y)])


def polynomial(x, y, gamma=None, degree=3, coef0=1, use_numexpr=True):
    """(gamma * x @ y.T + coef0) ** degree"""
    return kernel_tile("polynomial", [(x, y)], gamma=gamma, degree=degree, coef0=coef0,
                       use_numexpr=use_numexpr)


def laplacian(x, y, gamma=None):
    """exp(-gamma * ||x - y||_1) for every row of ``x`` against every row of ``y`` (numpy only:
    numexpr has nothing to fuse in its finish step)."""
    return kernel_tile("laplacian", [(x, y)], gamma=gamma)


def tile_flops(kind: str, rows: int, cols: int, features: int) -> float:
    """Floating-point work of one tile's accumulate step: a multiply-add per feature for the dot
    product (2 n m d, like GEMM); subtract, absolute value and add for the L1 distance (3 n m d)."""
    per = 3.0 if ALIASES.get(kind, kind) == "laplacian" else 2.0
    return per * rows * cols * features


__all__ = ["KINDS", "ALIASES", "row_norms_sq", "dot_products", "l1_distances", "rbf_finish",
           "polynomial_finish", "laplacian_finish", "kernel_tile", "rbf", "linear", "polynomial",
           "laplacian", "tile_flops"]
