"""LAPACK's band-to-bidiagonal reduction and bidiagonal SVD in band storage, through scipy's Cython LAPACK.

``scipy.linalg.cython_lapack`` exports a C function pointer for every LAPACK routine it wraps
(``__pyx_capi__``, one PyCapsule each); ctypes calls them on numpy arrays, so no compiler and no
private scipy API are needed. The routines are scipy's own (its bundled LAPACK), the ones
``scipy.linalg`` calls; the Cython wrappers take pointers only (no hidden Fortran string lengths).

Why: the singular values of an n x n upper band matrix (upper bandwidth b) cost O(n^2 b) in
``(b + 1) x n`` band storage (``?gbbrd`` to bidiagonal, then ``?bdsqr``'s dqds), against 8/3 n^3 flops
and n^2 elements for a dense SVD of the same matrix. ``?gbbrd`` chases bulges with Givens rotations
(BLAS-1 speed), so for a band much wider than n / 10 the dense path can still be the faster one:
:func:`prefer_dense` is the rule the band SVD task uses.
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


def singular_values(ab: np.ndarray) -> np.ndarray:
    """Singular values (descending, real) of the square upper band matrix in band storage ``ab``; ``ab`` is
    overwritten. O(n^2 b) flops on ``(b + 1) x n`` elements."""
    return bidiagonal_singular_values(*bidiagonalize(ab))


def prefer_dense(n: int, bandwidth: int) -> bool:
    """Whether a dense SVD of the n x n band matrix beats the band path (``?gbbrd``: ~8 n^2 b flops
    of Givens rotations, measured at ~1.3 GFLOPS per core, against the dense ``?gesdd``: 8/3 n^3 at ~12
    GFLOPS per core, both values only, float64, see benchmarks/README.md): the band path wins for
    ``b < 0.04 n``."""
    return 25 * bandwidth >= n


def values_flops(n: int, bandwidth: int) -> float:
    """Flops of :func:`blocks.eigen.singular_values_band` on an n x n band (dense or band path)."""
    return 8.0 / 3.0 * n ** 3 if prefer_dense(n, bandwidth) else 8.0 * n * n * bandwidth
