"""The small problems of the tiled eigensolver and SVD, solved on one worker by LAPACK (through scipy).

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

    LAPACK's failure to converge raises ``numpy.linalg.LinAlgError``.
    """
    import scipy.linalg

    try:
        if vectors:
            return scipy.linalg.eig_banded(ab, lower=True, check_finite=False)
        return scipy.linalg.eig_banded(ab, lower=True, eigvals_only=True, check_finite=False), None
    except scipy.linalg.LinAlgError as e:
        raise np.linalg.LinAlgError(f"symmetric band eigensolver: {e}") from None


def band_flops(n: int, bandwidth: int, vectors: bool) -> float:
    """Rough flop count of a band eigensolver (tridiagonal reduction, then the tridiagonal problem)."""
    return 6.0 * n * n * bandwidth + (9.0 * n ** 3 if vectors else 0.0)
