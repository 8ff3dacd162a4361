"""LAPACK's band-to-bidiagonal reduction and bidiagonal SVD in band storage, through scipy's Cython LAPACK.

``scipy.linalg.cython_lapack`` exports a C function pointer for every LAPACK routine it wraps
(``__pyx_capi__``, one PyCapsule each); ctypes calls them on numpy arrays, so no compiler and no
private scipy API are needed. The routines are scipy's own (its bundled LAPACK), the ones
``scipy.linalg`` calls; the Cython wrappers take pointers only (no hidden Fortran string lengths).

Why: the singular values of an n x n upper band matrix (upper bandwidth b) cost O(n^2 b) in
O(n b) band storage, against 8/3 n^3 flops and n^2 elements for a dense SVD of the same matrix.
``?gbbrd`` (band to bidiagonal) chases bulges with Givens rotations, at BLAS-1 speed that falls as the
band widens (~3 GFLOPS per core at b = 32, under 1 at b = 512), so a wide band is first narrowed to
``NARROW_BANDWIDTH`` by :func:`narrow`: successive band reduction with blocks of Householder reflectors,
BLAS-3 on windows of the band. Then ``?gbbrd`` and ``?bdsqr``'s dqds. :func:`prefer_dense` is the rule
the band SVD task uses to pick the dense path instead (a band about as wide as the matrix).
"""
from __future__ import annotations

import ctypes
import functools
from collections.abc import Sequence

import numpy as np

_PREFIX = {np.dtype(np.float64): "d", np.dtype(np.float32): "s",
           np.dtype(np.complex128): "z", np.dtype(np.complex64): "c"}
_REAL = {"d": np.float64, "s": np.float32, "z": np.float64, "c": np.float32}


class BandLapackError(np.linalg.LinAlgError):
    """A band routine returned info != 0 (bdsqr: the dqds iteration did not converge)."""


@functools.cache
def _routine(name: str):
    """The C function behind ``scipy.linalg.cython_lapack.<name>``, callable with pointers (all arguments)."""
    from scipy.linalg import cython_lapack

    capsule = cython_lapack.__pyx_capi__[name]
    get_name = ctypes.pythonapi.PyCapsule_GetName
    get_name.restype, get_name.argtypes = ctypes.c_char_p, [ctypes.py_object]
    get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
    get_pointer.restype, get_pointer.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    address = get_pointer(capsule, get_name(capsule))
    return ctypes.CFUNCTYPE(None)(address)  # arguments are passed as pointers: no argtypes to declare


def _int(value: int) -> ctypes.c_int:
    return ctypes.c_int(int(value))


def _p(array: np.ndarray):
    return ctypes.c_void_p(array.ctypes.data)


def upper_band_storage(diagonal: Sequence[np.ndarray], super_r: Sequence[np.ndarray], bandwidth: int,
                       dtype=None) -> np.ndarray:
    """LAPACK general band storage (``kl = 0, ku = bandwidth``; Fortran order, ``ab[ku + i - j, j] = B[i, j]``) of
    the upper band matrix B of the SVD's band reduction: diagonal tiles ``triu(diagonal[k])`` (the QR panels'
    R) and super-diagonal tiles ``triu(super_r[k])^H`` (the LQ panels' L, stored as their R = L^H).

    Holds ``(bandwidth + 1) x n`` elements, never B itself: a tile's element of offset ``t = j - i`` outside
    ``0..bandwidth`` is an error (the reduction puts none there)."""
    sizes = [d.shape[1] for d in diagonal]
    n = sum(sizes)
    dtype = np.result_type(*diagonal) if dtype is None else np.dtype(dtype)
    ku = int(bandwidth)
    ab = np.zeros((ku + 1, n), dtype=dtype, order="F")
    start = 0
    for k, d in enumerate(diagonal):
        w = sizes[k]
        _place(ab, ku, np.triu(d), start, start)
        if k < len(super_r):
            _place(ab, ku, np.triu(super_r[k]).conj().T, start, start + w)
        start += w
    return ab


def _place(ab: np.ndarray, ku: int, block: np.ndarray, row: int, col: int) -> None:
    """Copy ``block`` (at B[row:, col:]) into band storage, one diagonal of the block at a time."""
    h, w = block.shape
    for offset in range(-(h - 1), w):   # block[r, r + offset] is B[row + r, col + r + offset]
        t = col - row + offset          # its band offset j - i
        values = np.diagonal(block, offset)
        if values.size == 0:
            continue
        if not 0 <= t <= ku:
            if np.any(values):
                raise ValueError(f"upper_band_storage: a tile holds nonzeros at band offset {t}, outside "
                                 f"0..{ku}")
            continue
        c0 = col + max(offset, 0)
        ab[ku - t, c0:c0 + values.size] = values


def dense_from_upper_band(ab: np.ndarray) -> np.ndarray:
    """The n x n matrix (Fortran order) held in upper band storage ``ab`` (``kl = 0``)."""
    ku, n = ab.shape[0] - 1, ab.shape[1]
    B = np.zeros((n, n), dtype=ab.dtype, order="F")
    for t in range(min(ku, n - 1) + 1):
        idx = np.arange(n - t)
        B[idx, idx + t] = ab[ku - t, t:]
    return B


def bidiagonalize(ab: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The upper bidiagonal ``(d, e)`` (real) with the singular values of the square upper band matrix in ``ab``
    (``kl = 0``, ``ku = ab.shape[0] - 1``), by ``?gbbrd`` (no vectors). ``ab`` is overwritten."""
    prefix = _PREFIX[ab.dtype]
    if not ab.flags.f_contiguous:
        raise ValueError("bidiagonalize: ab must be Fortran-ordered (upper_band_storage makes it so)")
    ldab, n = ab.shape
    real = _REAL[prefix]
    d = np.zeros(max(n, 1), real)
    e = np.zeros(max(n, 1), real)
    dummy = np.zeros(1, ab.dtype)
    info = _int(0)
    one, zero = _int(1), _int(0)
    args = [ctypes.c_char_p(b"N"), ctypes.byref(_int(n)), ctypes.byref(_int(n)), ctypes.byref(zero),
            ctypes.byref(zero), ctypes.byref(_int(ldab - 1)), _p(ab), ctypes.byref(_int(ldab)), _p(d), _p(e),
            _p(dummy), ctypes.byref(one), _p(dummy), ctypes.byref(one), _p(dummy), ctypes.byref(one)]
    if prefix in "ds":
        work = np.zeros(2 * max(n, 1), ab.dtype)
        args += [_p(work)]
    else:
        work = np.zeros(max(n, 1), ab.dtype)
        rwork = np.zeros(max(n, 1), real)
        args += [_p(work), _p(rwork)]
    _routine(prefix + "gbbrd")(*args, ctypes.byref(info))
    if info.value != 0:
        raise BandLapackError(f"{prefix}gbbrd: illegal argument {-info.value}")
    return d[:n], e[:max(n - 1, 0)]


def bidiagonal_singular_values(d: np.ndarray, e: np.ndarray) -> np.ndarray:
    """Singular values (descending) of the upper bidiagonal ``(d, e)`` by ``?bdsqr`` without vectors (dqds:
    high relative accuracy); LinAlgError if it does not converge."""
    n = d.size
    if n == 0:
        return d.copy()
    prefix = "d" if d.dtype == np.float64 else "s"
    s = np.array(d, order="F")
    off = np.zeros(max(n, 1), d.dtype)
    off[:n - 1] = e[:n - 1]
    work = np.zeros(4 * n, d.dtype)
    dummy = np.zeros(1, d.dtype)
    info = _int(0)
    one, zero = _int(1), _int(0)
    _routine(prefix + "bdsqr")(ctypes.c_char_p(b"U"), ctypes.byref(_int(n)), ctypes.byref(zero),
                               ctypes.byref(zero), ctypes.byref(zero), _p(s), _p(off), _p(dummy),
                               ctypes.byref(one), _p(dummy), ctypes.byref(one), _p(dummy), ctypes.byref(one),
                               _p(work), ctypes.byref(info))
    if info.value < 0:
        raise BandLapackError(f"{prefix}bdsqr: illegal argument {-info.value}")
    if info.value > 0:
        raise BandLapackError(f"SVD did not converge: {prefix}bdsqr left {info.value} superdiagonals "
                              "unconverged")
    return s


#: the band ``singular_values`` narrows a wider band to before ``?gbbrd`` (whose Givens rotations slow down
#: as the band widens: ~3 GFLOPS at b = 32, ~0.7 at b = 512, one core), and the block of reflectors it
#: narrows by (n = 4096, b = 1024: c = 64, nb = 32 took 11 s + 2.3 s for gbbrd; c = 32 24 s; dense 46 s)
NARROW_BANDWIDTH = 64
NARROW_BLOCK = 32


def singular_values(ab: np.ndarray) -> np.ndarray:
    """Singular values (descending, real) of the square upper band matrix in band storage ``ab``; ``ab`` may
    be overwritten. A band wider than ``NARROW_BANDWIDTH`` is first narrowed by blocked two-sided
    Householder transforms (:func:`narrow`, BLAS-3), then ``?gbbrd`` and ``?bdsqr``: O(n^2 b) flops on
    O(n b) numbers, never n x n."""
    ab = narrow(ab, NARROW_BANDWIDTH, NARROW_BLOCK)
    return bidiagonal_singular_values(*bidiagonalize(ab))


def prefer_dense(n: int, bandwidth: int) -> bool:
    """Whether LAPACK's dense SVD of the n x n band matrix (8/3 n^3 flops at BLAS-3 speed) is the faster way
    to its singular values: only when the band is about as wide as the matrix (one tile column), since the
    band path costs ~6 n^2 b at BLAS-3 speed (the narrowing) plus ~8 n^2 c with ``?gbbrd`` (n = 4096,
    b = 1024, one core, load 7: 13.7 s vs 45.9 s dense; benchmarks/README.md)."""
    return 2 * bandwidth >= n


def values_flops(n: int, bandwidth: int) -> float:
    """Flops of :func:`blocks.eigen.singular_values_band` on an n x n band (dense or band path)."""
    if prefer_dense(n, bandwidth):
        return 8.0 / 3.0 * n ** 3
    c = min(bandwidth, NARROW_BANDWIDTH)
    return 8.0 * n * n * c + (6.0 * n * n * bandwidth if bandwidth > c else 0.0)


def values_workspace(n: int, bandwidth: int) -> float:
    """Elements :func:`singular_values` holds beside its input ``ab``: the narrowing's skewed band storage and
    window copies, the narrowed band, and the bidiagonal's arrays (never n x n)."""
    skewed = 0.0
    if bandwidth > NARROW_BANDWIDTH:
        kl, ku = _skewed_extent(bandwidth, NARROW_BANDWIDTH, NARROW_BLOCK)
        width = bandwidth + 2 * NARROW_BLOCK
        skewed = (kl + ku + 1.0) * n + 4.0 * width * width + 4.0 * n
    return skewed + (NARROW_BANDWIDTH + 1.0) * n + 16.0 * n


class _Skewed:
    """A general band matrix (``kl`` below, ``ku`` above the diagonal) in LAPACK band storage, whose any
    rectangle lying inside the band is a strided numpy *view*: ``A[i, j]`` sits at flat index
    ``ku + i + j (ldab - 1)`` of the Fortran-ordered storage, so rows step by one element and columns by
    ``ldab - 1``. Windows are read and written in place, with BLAS-3 on them, no n x n array."""

    def __init__(self, n: int, kl: int, ku: int, dtype):
        self.n, self.kl, self.ku = n, kl, ku
        self.ab = np.zeros((kl + ku + 1, n), dtype=dtype, order="F")
        self._flat = self.ab.reshape(-1, order="F")

    def window(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        if r1 <= r0 or c1 <= c0:
            return np.zeros((max(r1 - r0, 0), max(c1 - c0, 0)), self.ab.dtype)
        if c1 - 1 - r0 > self.ku or r1 - 1 - c0 > self.kl:
            raise AssertionError(f"window rows {r0}:{r1} cols {c0}:{c1} leaves the band ({self.kl}, {self.ku})")
        size = self.ab.itemsize
        start = self.ku + r0 + c0 * (self.ab.shape[0] - 1)
        return np.lib.stride_tricks.as_strided(self._flat[start:], (r1 - r0, c1 - c0),
                                               (size, size * (self.ab.shape[0] - 1)), writeable=True)


def _reflectors(x: np.ndarray):
    """QR of x (rows >= 1): ``(V, T, R)`` with ``Q = I - V T V^H`` (LAPACK's compact WY form) and R
    (k x cols, k = min(shape)) upper triangular; T by ``?larft``'s recurrence on ``V^H V``."""
    import scipy.linalg

    geqrf, = scipy.linalg.get_lapack_funcs(("geqrf",), (x,))
    qr, tau, _, info = geqrf(x)   # a copy: x may be a window of the band
    if info != 0:
        raise BandLapackError(f"geqrf: illegal argument {-info}")
    k = tau.size
    V = np.tril(qr[:, :k], -1)
    V[np.arange(k), np.arange(k)] = 1
    W = V.conj().T @ V
    T = np.zeros((k, k), qr.dtype)
    for i in range(k):
        T[i, i] = tau[i]
        if i:
            T[:i, i] = -tau[i] * (T[:i, :i] @ W[:i, i])
    return V, T, np.triu(qr[:k, :])


class _Narrowing:
    """Successive band reduction (Bischof, Lang, Sun): an upper band matrix of bandwidth b to bandwidth c
    by blocks of ``nb <= c`` Householder reflectors, bulges chased down the band, all two-sided transforms
    BLAS-3 on windows of :class:`_Skewed` (O(n^2 b) flops, ~ 4 n (b + nb) numbers held).

    Each sweep takes the next nb rows: an LQ of their entries beyond offset c (right transform, applied
    to every row holding those columns) fills below the diagonal; a QR of the first nb filled columns
    (left transform) removes that fill and spills beyond offset b in its first nb rows; an LQ of those
    restores offset b, and so on down the band. What a step leaves (triangles narrower than b - c) is in
    the columns and rows the next sweeps take. Which rows and columns hold nonzeros is tracked per row
    and per column, so every transform is applied to all of them."""

    def __init__(self, ab: np.ndarray, c: int, nb: int):
        b, n = ab.shape[0] - 1, ab.shape[1]
        self.n, self.b, self.nb = n, b, nb
        self.S = _Skewed(n, *_skewed_extent(b, c, nb), ab.dtype)
        self.S.ab[self.S.ku - b:self.S.ku + 1] = ab
        idx = np.arange(n)
        self.rlo, self.rhi = idx.copy(), np.minimum(idx + b + 1, n)   # row i's nonzeros: columns [rlo, rhi)
        self.clo, self.chi = np.maximum(idx - b, 0), idx + 1           # column j's nonzeros: rows [clo, chi)

    def right(self, r0: int, r1: int, c0: int, c1: int) -> None:
        """LQ of rows r0:r1 over columns c0:c1; the same orthogonal Q applied to every other row."""
        S = self.S
        V, T, R = _reflectors(S.window(r0, r1, c0, c1).conj().T)
        k = R.shape[0]
        X = S.window(r0, r1, c0, c1)
        X[:, :k] = R.conj().T
        X[:, k:] = 0
        a0, a1 = int(self.clo[c0:c1].min()), int(self.chi[c0:c1].max())
        for lo, hi in ((a0, r0), (max(a0, r1), a1)):
            if hi > lo:
                Y = S.window(lo, hi, c0, c1)
                Y -= ((Y @ V) @ T) @ V.conj().T
        t = np.arange(r1 - r0)
        self.rhi[r0:r1] = c0 + np.minimum(t, k - 1) + 1
        self.rlo[r0:r1] = np.minimum(self.rlo[r0:r1], c0)
        others = np.r_[a0:min(r0, a1), max(a0, r1):a1]
        self.rlo[others] = np.minimum(self.rlo[others], c0)
        self.rhi[others] = np.maximum(self.rhi[others], c1)
        j = np.arange(c0, c1)
        inside = j - c0 < k   # columns keeping a triangle of R^H in rows r0 + (j - c0)..r1
        below = a1 > r1
        lo = np.where(inside, r0 + (j - c0), r1 if below else self.n)
        if a0 < r0:
            lo = np.minimum(lo, a0)
        hi = np.where(inside, max(r1, a1), a1 if below else 0)
        if a0 < r0:
            hi = np.maximum(hi, r0)
        self.clo[c0:c1], self.chi[c0:c1] = lo, np.maximum(hi, lo)

    def left(self, c0: int, c1: int, r0: int, r1: int) -> None:
        """QR of columns c0:c1 over rows r0:r1; the same Q^H applied to every other column."""
        S = self.S
        V, T, R = _reflectors(S.window(r0, r1, c0, c1))
        k = R.shape[0]
        X = S.window(r0, r1, c0, c1)
        X[:k] = R
        X[k:] = 0
        a0, a1 = int(self.rlo[r0:r1].min()), int(self.rhi[r0:r1].max())
        for lo, hi in ((a0, c0), (max(a0, c1), a1)):
            if hi > lo:
                Y = S.window(r0, r1, lo, hi)
                Y -= V @ (T.conj().T @ (V.conj().T @ Y))
        t = np.arange(c1 - c0)
        self.chi[c0:c1] = r0 + np.minimum(t, k - 1) + 1
        self.clo[c0:c1] = np.minimum(self.clo[c0:c1], r0)
        others = np.r_[a0:min(c0, a1), max(a0, c1):a1]
        self.clo[others] = np.minimum(self.clo[others], r0)
        self.chi[others] = np.maximum(self.chi[others], r1)
        i = np.arange(r0, r1)
        inside = i - r0 < k
        right = a1 > c1
        lo = np.where(inside, c0 + (i - r0), c1 if right else self.n)
        if a0 < c0:
            lo = np.minimum(lo, a0)
        hi = np.where(inside, max(c1, a1), a1 if right else 0)
        if a0 < c0:
            hi = np.maximum(hi, c0)
        self.rlo[r0:r1], self.rhi[r0:r1] = lo, np.maximum(hi, lo)

    def run(self, c: int) -> np.ndarray:
        n, b, nb = self.n, self.b, self.nb
        for i in range(0, n, nb):
            r0, r1, offset = i, min(i + nb, n), c
            while True:
                c0, c1 = r0 + offset, int(self.rhi[r0:r1].max())
                if c0 >= n or c1 <= c0 + 1:
                    break
                self.right(r0, r1, c0, c1)
                k0, k1 = c0, min(c0 + nb, n)
                rr1 = int(self.chi[k0:k1].max())
                if rr1 <= k0 + 1:
                    break
                self.left(k0, k1, k0, rr1)
                r0, r1, offset = k0, k1, b
        idx = np.arange(n)
        if np.any(self.rlo < idx) or np.any(self.rhi > np.minimum(idx + c + 1, n)):
            raise AssertionError("band narrowing left entries outside the target band")
        ku = self.S.ku
        return np.asfortranarray(self.S.ab[ku - c:ku + 1])


def narrow(ab: np.ndarray, bandwidth: int, block: int | None = None) -> np.ndarray:
    """The upper band storage (bandwidth ``bandwidth``) of a matrix with the singular values of the upper band
    matrix in ``ab`` (``kl = 0``): orthogonal two-sided transforms by blocks of ``block`` (default
    ``bandwidth``) reflectors (:class:`_Narrowing`)."""
    b = ab.shape[0] - 1
    if b <= bandwidth:
        return ab
    nb = bandwidth if block is None else min(block, bandwidth)
    return _Narrowing(ab, bandwidth, nb).run(bandwidth)


def _skewed_extent(b: int, c: int, nb: int) -> tuple[int, int]:
    """The diagonals below and above the main one that the narrowing's windows reach (kl, ku): the bulges of
    a chase step reach b - c + nb - 1 below and 2 b - c + nb - 1 above (measured, and asserted per window)."""
    return b - c + nb, 2 * b - c + nb


class _SymmetricNarrowing:
    """Successive band reduction of a symmetric (Hermitian) band matrix, bandwidth b to c: as
    :class:`_Narrowing`, but each step's Q is applied from both sides (``Q^H A Q``, eigenvalues kept). Both
    triangles are held in :class:`_Skewed` storage, so every transform is two plain BLAS-3 updates; what
    holds nonzeros is tracked per column (rows ``[lo, hi)``), rows mirroring columns."""

    def __init__(self, lower: np.ndarray, c: int, nb: int):
        b, n = lower.shape[0] - 1, lower.shape[1]
        self.n, self.b, self.nb = n, b, nb
        reach = 2 * b - c + nb   # the windows reach 2 b - c + nb - 1 off the diagonal (measured; asserted)
        self.S = S = _Skewed(n, reach, reach, lower.dtype)
        for d in range(b + 1):   # ab[d, j] = A[j + d, j]; A[j, j + d] = conj
            S.ab[S.ku + d, :n - d] = lower[d, :n - d]
            if d:
                S.ab[S.ku - d, d:] = lower[d, :n - d].conj()
        idx = np.arange(n)
        self.lo, self.hi = np.maximum(idx - b, 0), np.minimum(idx + b + 1, n)

    def step(self, j0: int, j1: int, k0: int, k1: int) -> None:
        """QR of rows k0:k1 of columns j0:j1 (k0 >= j1), its Q applied as Q^H A Q on indices k0:k1."""
        S = self.S
        V, T, R = _reflectors(S.window(k0, k1, j0, j1))
        k = R.shape[0]
        X = S.window(k0, k1, j0, j1)
        X[:k], X[k:] = R, 0
        Xt = S.window(j0, j1, k0, k1)
        Xt[:, :k], Xt[:, k:] = R.conj().T, 0
        a0, a1 = int(self.lo[k0:k1].min()), int(self.hi[k0:k1].max())
        parts = [(lo, hi) for lo, hi in ((a0, j0), (j1, a1)) if hi > lo]
        for lo, hi in parts:   # rows k0:k1 from the left: Q^H A
            Y = S.window(k0, k1, lo, hi)
            Y -= V @ (T.conj().T @ (V.conj().T @ Y))
        for lo, hi in parts:   # columns k0:k1 from the right: A Q
            Y = S.window(lo, hi, k0, k1)
            Y -= ((Y @ V) @ T) @ V.conj().T
        self._rescan(min(a0, j0), max(a1, k1))

    def _rescan(self, c0: int, c1: int) -> None:
        """Columns c0:c1's nonzero rows, read off the storage: exact, since a transform leaves a zero block
        exactly zero (so no tracked bound drifts outwards)."""
        nonzero = self.S.ab[:, c0:c1] != 0
        ldab, ku = nonzero.shape[0], self.S.ku
        first = np.argmax(nonzero, axis=0)
        last = ldab - 1 - np.argmax(nonzero[::-1], axis=0)
        cols = np.arange(c0, c1)
        empty = ~nonzero.any(axis=0)
        self.lo[c0:c1] = np.where(empty, cols, cols + first - ku)
        self.hi[c0:c1] = np.where(empty, cols + 1, cols + last - ku + 1)

    def run(self, c: int) -> np.ndarray:
        n, b, nb = self.n, self.b, self.nb
        for i in range(0, n, nb):
            j0, j1, offset = i, min(i + nb, n), c
            while True:
                k0, k1 = j0 + offset, int(self.hi[j0:j1].max())
                if k0 >= n or k1 <= k0 + 1:
                    break
                self.step(j0, j1, k0, k1)
                j0, j1, offset = k0, min(k0 + nb, n), b
        idx = np.arange(n)
        if np.any(self.hi > np.minimum(idx + c + 1, n)):
            raise AssertionError("symmetric band narrowing left entries outside the target band")
        ku = self.S.ku
        return np.ascontiguousarray(self.S.ab[ku:ku + c + 1])


def narrow_symmetric(lower: np.ndarray, bandwidth: int, block: int | None = None) -> np.ndarray:
    """LAPACK lower band storage (bandwidth ``bandwidth``) of a matrix with the eigenvalues of the symmetric
    (Hermitian) band matrix in lower band storage ``lower`` (``ab[d, j] = A[j + d, j]``):
    :class:`_SymmetricNarrowing`, blocks of ``block`` (default ``bandwidth``) reflectors."""
    b = lower.shape[0] - 1
    if b <= bandwidth:
        return lower
    nb = bandwidth if block is None else min(block, bandwidth)
    return _SymmetricNarrowing(lower, bandwidth, nb).run(bandwidth)


def symmetric_workspace(n: int, bandwidth: int) -> float:
    """Elements :func:`narrow_symmetric` holds beside its input (to ``NARROW_BANDWIDTH``): both triangles in
    skewed storage, its windows, the narrowed band."""
    c, nb = NARROW_BANDWIDTH, NARROW_BLOCK
    if bandwidth <= c:
        return 0.0
    reach = 2 * bandwidth - c + nb
    width = bandwidth + 2 * nb
    return (2.0 * reach + 1) * n + 4.0 * width * width + (c + 1.0) * n + 4.0 * n
