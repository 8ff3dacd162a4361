"""The small problems of the tiled eigensolver and SVD, solved on one worker by LAPACK (through scipy).

Real or complex: a complex band matrix is Hermitian (eigh) or complex upper band (SVD); the eigenvalues
and singular values come back real, as numpy's are.

A symmetric matrix reduced to band form is given by its diagonal tiles and its
sub-diagonal tiles (upper triangular: the R factors of the panels below the
diagonal); :func:`lower_band` packs them into LAPACK's lower band storage.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def lower_band(diagonal: Sequence[np.ndarray], sub: Sequence[np.ndarray], bandwidth: int) -> np.ndarray:
    """LAPACK lower band storage ``ab[d, j] = a[j + d, j]`` of the block-tridiagonal symmetric matrix with
    diagonal tiles ``diagonal`` (lower triangles read) and sub-diagonal tiles ``sub`` (within the band)."""
    n = sum(d.shape[0] for d in diagonal)
    ab = np.zeros((bandwidth + 1, n), dtype=np.result_type(*diagonal))
    start = 0
    for k, d in enumerate(diagonal):
        below = sub[k] if k < len(sub) else np.zeros((0, d.shape[1]), d.dtype)
        column = np.vstack([np.tril(d), below])
        w = d.shape[1]
        for offset in range(min(bandwidth, column.shape[0] - 1) + 1):
            c = np.arange(max(0, min(w, column.shape[0] - offset)))
            ab[offset, start + c] = column[c + offset, c]
        start += w
    return ab


def eigh_band(ab: np.ndarray, vectors: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Eigenvalues (ascending) and, if ``vectors``, eigenvectors of a symmetric band matrix in lower storage.

    With vectors the band goes to the dense ``?syevd`` whatever its width: ``?sbevd`` accumulates
    ``?sbtrd``'s rotations into the n x n Q at BLAS-1 speed, where ``?syevd`` applies its reflectors by
    BLAS-3 (``?ormtr``). One core, load 5-7, n = 2048, b = 8/16/32/256/512: ``?sbevd`` 2.0/1.9/2.1/6.6/
    22.7 s, dense 1.3/1.2/1.8/2.5/4.3 s (benchmarks/README.md, "eigh's band step"). Narrowing to 64 first
    and back-transforming through the narrowing's reflectors cannot pay either: its ``?sbevd`` with vectors
    alone is slower than the dense solve, before the back-transformation's ~4 n^3 flops.

    LAPACK's failure to converge raises ``numpy.linalg.LinAlgError``.
    """
    import scipy.linalg

    bandwidth, n = ab.shape[0] - 1, ab.shape[1]
    check_finite(ab, "Eigenvalues did not converge")
    try:
        if vectors:   # dense ?syevd: faster than ?sbevd's vectors at every bandwidth measured
            a = dense_from_lower_band(ab, order="F")   # Fortran order: LAPACK overwrites it with the vectors
            return scipy.linalg.eigh(a, lower=True, overwrite_a=True, check_finite=False, driver="evd")
        if dense_values(n, bandwidth):   # a wide band: the dense tridiagonalization (4/3 n^3) is the faster
            return scipy.linalg.eigvalsh(dense_from_lower_band(ab), check_finite=False), None
        from blocks import band   # a band wider than 64 narrowed first (BLAS-3), then ?sbevd on the narrow one

        narrow = band.narrow_symmetric(ab, band.NARROW_BANDWIDTH, band.NARROW_BLOCK)
        return scipy.linalg.eig_banded(narrow, lower=True, eigvals_only=True, check_finite=False), None
    except scipy.linalg.LinAlgError as e:
        raise np.linalg.LinAlgError(f"symmetric band eigensolver: {e}") from None


def dense_values(n: int, bandwidth: int) -> bool:
    """Whether eigvalsh's band problem goes through LAPACK's dense ``?syevd`` (4/3 n^3 flops, n^2 numbers):
    for a band of at least n / 8. Narrower ones are narrowed to 64 (``blocks.band.narrow_symmetric``, about
    12 n^2 b flops at BLAS-3 speed on both triangles) and then ``?sbevd``, whose Givens rotations alone are
    slow on a wide band (one core, load 8: n = 4096, b = 1024 narrowed 31.5 s vs dense 15 s; n = 2048,
    b = 256 1.8 s vs ?sbevd directly 4.2 s vs dense 1.8 s; benchmarks/README.md). Checked at scale
    (2026-12-06, one core, CPU seconds, load 1.2-8.5): n = 4096, b = 512 narrowed 7.2 vs dense 4.7, b = 1024
    12.6 vs 4.8; n = 8192, b = 512 31.7 vs 53.6, b = 1024 64.9 vs 58.0: the dense ``?sytrd`` slows past
    cache at n = 8192 (12x the time of n = 4096), so n / 8 still splits the two."""
    return 8 * bandwidth >= n


def check_finite(band: np.ndarray, numpy_message: str) -> None:
    """Raise numpy's LinAlgError (``numpy_message``, numpy's words) for a band holding NaN or inf.

    LAPACK given NaN fails in ways a retry cannot fix (scipy raises ValueError, LAPACK "Internal Error") or
    returns garbage; numpy raises LinAlgError. A NaN or inf in A reaches the band through the reduction.
    """
    if not np.isfinite(band).all():
        raise np.linalg.LinAlgError(f"{numpy_message}: the band matrix holds NaN or infinity, so A does "
                                    "(check_finite=True names A's blocks)")


def dense_from_lower_band(ab: np.ndarray, order: str = "C") -> np.ndarray:
    """The symmetric matrix (its lower triangle) held in LAPACK lower band storage."""
    n = ab.shape[1]
    a = np.zeros((n, n), dtype=ab.dtype, order=order)
    for d in range(min(ab.shape[0], n)):
        idx = np.arange(n - d)
        a[idx + d, idx] = ab[d, :n - d]
    return a


def band_flops(n: int, bandwidth: int, vectors: bool) -> float:
    """Rough flop count of a band eigensolver (tridiagonal reduction, then the tridiagonal problem)."""
    return 6.0 * n * n * bandwidth + (9.0 * n ** 3 if vectors else 0.0)


def band_workspace(kind: str, n: int, bandwidth: int, vectors: bool) -> float:
    """Elements (of the band's dtype) the one-worker solve of order n holds at its peak, beside its input
    tiles: the vectors and LAPACK's work arrays, as scipy allocates them (tracemalloc, n = 1200, bands 10
    and 300, float32/float64/complex128, 2026-12-06), with a margin. ``kind`` is "eigh" (``eigh_band``:
    eigenvectors and ``?sbevd``'s/``?hbevd``'s work 3.0-4.5 n^2) or "svd" (the dense B of
    ``upper_band_dense``, then ``svd_dense``: B's copy, U, Vh and ``?gesdd``'s work 5.6-6.0 n^2; values only:
    the band storage and, for a wide band, the dense B and gesdd's work). A narrow band's values (n = 4000, b = 100) took up
    to 10 n (b + 1) in ?sbevd; a band wider than 64 is narrowed first (``blocks.band``: O(n b) storage)."""
    if kind == "eigh":
        if vectors:   # ?sbevd measured 4.3 n^2 at b = 10, 3.5 at b = 300; the dense ?syevd that replaced it
            # (2026-12-06, eigh_band) 3.0 n^2 whatever b: the declaration keeps its margin
            return 4.75 * n * n + 2.0 * n * (bandwidth + 1) + 256.0 * n
        if dense_values(n, bandwidth):   # the dense path: measured 2.04 n^2
            return 2.25 * n * n + 256.0 * n
        from blocks import band

        c = min(bandwidth, band.NARROW_BANDWIDTH)   # band storage, the narrowing's, LAPACK's copies of the
        return ((bandwidth + 1.0) * n + band.symmetric_workspace(n, bandwidth)   # narrow band (measured
                + 12.0 * n * (c + 1) + 256.0 * n)                                 # <= 10 n (c + 1))
    if kind != "svd":
        raise ValueError(f"band_workspace: kind must be 'eigh' or 'svd', got {kind!r}")
    dense = float(n * n)
    if vectors:   # gesdd on the dense B: independent of the bandwidth
        return dense + 6.25 * n * n + 256.0 * n
    from blocks import band

    storage = (bandwidth + 1.0) * n   # upper_band's array, which singular_values_band reduces in place
    if band.prefer_dense(n, bandwidth):   # B dense (Fortran order, overwritten by gesdd) and its work
        return storage + dense + 1.25 * n * n + 256.0 * n
    return storage + band.values_workspace(n, bandwidth) + 256.0 * n   # the narrowing's storage, gbbrd, bdsqr


def upper_band_dense(diagonal: Sequence[np.ndarray], super_r: Sequence[np.ndarray]) -> np.ndarray:
    """The upper-band matrix B of an SVD's band reduction, dense: diagonal tiles ``triu(diagonal[k])`` (the QR
    panels' R) and super-diagonal tiles ``triu(super_r[k])^H`` (the LQ panels' L, stored as their R = L^H)."""
    sizes = [d.shape[1] for d in diagonal]
    n = sum(sizes)
    B = np.zeros((n, n), dtype=np.result_type(*diagonal))
    start = 0
    for k, d in enumerate(diagonal):
        w = sizes[k]
        B[start:start + d.shape[0], start:start + w] = np.triu(d)
        if k < len(super_r):
            low = np.triu(super_r[k]).conj().T
            B[start:start + low.shape[0], start + w:start + w + low.shape[1]] = low
        start += w
    return B


def upper_band(diagonal: Sequence[np.ndarray], super_r: Sequence[np.ndarray], bandwidth: int) -> np.ndarray:
    """The upper-band matrix B of an SVD's band reduction in LAPACK band storage (``(bandwidth + 1) x n``,
    ``blocks.band.upper_band_storage``): what the band task holds instead of the dense B."""
    from blocks import band

    return band.upper_band_storage(diagonal, super_r, bandwidth)


def singular_values_band(ab: np.ndarray) -> np.ndarray:
    """Singular values (descending, real) of the upper-band matrix in band storage ``ab`` (``upper_band``;
    overwritten). A band narrow for its order (``blocks.band.prefer_dense`` false) is reduced in band
    storage: O(n^2 b) flops on ``(b + 1) x n`` numbers (``?gbbrd``, then ``?bdsqr``'s dqds, high relative
    accuracy). A wide one goes through LAPACK's dense SVD of B (8/3 n^3 flops at BLAS-3 speed, n^2 numbers),
    which is then the faster. LinAlgError for NaN/inf or no convergence."""
    from blocks import band

    n = ab.shape[1]
    if n == 0:
        return np.zeros(0, np.finfo(ab.dtype).dtype)
    check_finite(ab, "SVD did not converge")
    if not band.prefer_dense(n, ab.shape[0] - 1):
        return band.singular_values(ab)
    import scipy.linalg

    B = band.dense_from_upper_band(ab)
    del ab
    try:
        return scipy.linalg.svd(B, compute_uv=False, overwrite_a=True, check_finite=False, lapack_driver="gesdd")
    except scipy.linalg.LinAlgError as e:
        raise np.linalg.LinAlgError(f"band SVD: {e}") from None


def svd_dense(B: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``U, s, Vh`` of a square matrix by LAPACK's divide and conquer (numpy's driver); LinAlgError if it fails."""
    import scipy.linalg

    check_finite(B, "SVD did not converge")
    try:
        return scipy.linalg.svd(B, check_finite=False, lapack_driver="gesdd")
    except scipy.linalg.LinAlgError as e:
        raise np.linalg.LinAlgError(f"band SVD: {e}") from None
