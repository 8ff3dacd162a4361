"""A thin ctypes binding to a Fortran-interface BLAS/LAPACK library, for the tile kernels.

The Lambda layer built with ``--blas mkl`` ships ``lib/libnumpywren_mkl.so``: Intel MKL linked
statically (sequential) into a small library exporting only the routines below. When that library
is found, the tile kernels call it directly on numpy arrays; otherwise they use numpy/scipy
(numpy's bundled OpenBLAS). Which one is in use is ``describe()``, recorded in every task's stats.

Where the library comes from, first match wins:
  * ``$NUMPYWREN_BLAS_LIB``: a path (it must load, or ``BlasLibraryError``), or ``numpy`` to force
    numpy's BLAS;
  * ``/opt/lib/libnumpywren_mkl.so`` (where Lambda mounts the layer's ``lib/``);
  * ``lib/libnumpywren_mkl.so`` beside the ``python/`` folder this package was loaded from (a layer
    zip unpacked anywhere);
  * the ``mkl`` wheel's ``libmkl_rt`` (``pip install numpywren[mkl]``, x86_64), set to MKL's sequential
    threading layer: one core per worker, as the layer's library.

No copies: a C-ordered array is the Fortran-ordered transpose of itself, so each call is mapped to
the column-major routine with flipped transpose/side/triangle flags. Only QR needs Fortran order
(the QR of a transpose is not a transpose of the QR): ``geqrf``/``orgqr`` work on Fortran-ordered
arrays in place and copy others once. Arrays with other strides are copied. Any library exporting
the LP64 Fortran symbols works (tests use the OpenBLAS scipy ships, whose symbols carry a
``scipy_`` prefix).

Complex arrays (complex64, complex128) call the ``c``/``z`` routines (``COMPLEX_ROUTINES``; ``herk`` for
the Hermitian rank-k update) when the library exports them, else numpy/scipy's. Transposes stay
transposes (``trans=True`` is 'T', never 'C'): conjugating is the caller's (blocks.cholesky).
"""
from __future__ import annotations

import ctypes
import functools
import logging
import os
import threading
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

LIB_NAME = "libnumpywren_mkl.so"
ENV = "NUMPYWREN_BLAS_LIB"
#: The Fortran routines the tile kernels use (single and double precision), exported by the MKL library.
ROUTINES = ("gemm", "syrk", "trsm", "potrf", "getrf", "geqrf", "orgqr")
#: The complex routines (z: complex128, c: complex64) the tile kernels use; optional in a library (a layer built
#: before complex support lacks them: complex tiles then use numpy/scipy). orgqr's complex name is ungqr.
COMPLEX_ROUTINES = ("gemm", "herk", "trsm", "potrf", "getrf", "geqrf", "ungqr")
_PREFIX = {np.dtype(np.float64): "d", np.dtype(np.float32): "s",
           np.dtype(np.complex128): "z", np.dtype(np.complex64): "c"}
_SYMBOL_PREFIXES = ("", "scipy_")  # plain (MKL, reference BLAS) or scipy's renamed OpenBLAS


class BlasLibraryError(RuntimeError):
    """The BLAS library the user pointed at cannot be used."""


class LapackError(ArithmeticError):
    """A LAPACK routine returned info != 0 (e.g. potrf on a matrix that is not positive definite)."""


#: MKL_Set_Threading_Layer's argument for MKL's sequential layer (mkl_service.h)
MKL_THREADING_SEQUENTIAL = 1
#: MKL_Set_Interface_Layer's argument for 32-bit integers (mkl_service.h; ILP64 is bit 1, GNU bit 2)
MKL_INTERFACE_LP64 = 0
MKL_INTERFACE_ILP64 = 1


def _default_paths() -> list[Path]:
    paths = [Path("/opt/lib") / LIB_NAME]
    here = Path(__file__).resolve().parents[1]
    if here.name == "python":  # inside an unpacked layer: <layer>/python/blocks/blas.py
        paths.append(here.parent / "lib" / LIB_NAME)
    return paths


def _mkl_wheel_library() -> Path | None:
    """``libmkl_rt.so.N`` of the installed ``mkl`` wheel (the ``numpywren[mkl]`` extra), or None."""
    from importlib import metadata

    try:
        files = metadata.distribution("mkl").files or []
    except metadata.PackageNotFoundError:
        return None
    for f in files:
        if f.name.startswith("libmkl_rt.so"):
            path = Path(os.path.realpath(f.locate()))
            if path.is_file():
                return path
    return None


class Library:
    """One loaded library: ``<p>gemm_`` etc. for p in d, s, under an optional symbol prefix."""

    def __init__(self, path: str | os.PathLike):
        self.path = str(path)
        try:
            self._lib = ctypes.CDLL(self.path)
        except OSError as e:
            raise BlasLibraryError(f"cannot load BLAS library {self.path}: {e}") from None
        self._prefix = next((p for p in _SYMBOL_PREFIXES if hasattr(self._lib, p + "dgemm_")), None)
        if self._prefix is None:
            raise BlasLibraryError(f"{self.path} exports no dgemm_ (nor scipy_dgemm_): not a Fortran BLAS")
        missing = [p + r + "_" for r in ROUTINES for p in "ds" if not hasattr(self._lib, self._prefix + p + r + "_")]
        if missing:
            raise BlasLibraryError(f"{self.path} lacks {', '.join(missing)}")
        self._select_mkl_layers()
        self.version = self._version()
        self.is_mkl = hasattr(self._lib, "mkl_get_version_string")

    def _select_mkl_layers(self) -> None:
        """libmkl_rt (the mkl wheel) picks its layers at run time, before any other call: LP64 (these ctypes calls
        pass 32-bit integers; ``$MKL_INTERFACE_LAYER=ILP64`` would make it read garbage dimensions) and the
        sequential threading layer (one core per worker). Each setter returns the layer in force; one that is not
        the asked one (the library was initialised already) is refused, never used."""
        interface = getattr(self._lib, "MKL_Set_Interface_Layer", None)
        if interface is not None and interface(ctypes.c_int(MKL_INTERFACE_LP64)) & MKL_INTERFACE_ILP64:
            raise BlasLibraryError(f"{self.path} runs MKL's ILP64 interface (64-bit integers: $MKL_INTERFACE_LAYER?); "
                                   "the tile kernels pass 32-bit ones (LP64)")
        threading_layer = getattr(self._lib, "MKL_Set_Threading_Layer", None)
        if threading_layer is not None:
            got = threading_layer(ctypes.c_int(MKL_THREADING_SEQUENTIAL))
            if got != MKL_THREADING_SEQUENTIAL:
                raise BlasLibraryError(f"{self.path} keeps MKL threading layer {got}, not the sequential one a "
                                       "one-core worker needs (was MKL initialised before numpywren loaded it?)")

    def _version(self) -> str:
        fn = getattr(self._lib, "mkl_get_version_string", None)
        if fn is None:
            return "Fortran BLAS " + Path(self.path).name
        buf = ctypes.create_string_buffer(256)
        fn(buf, ctypes.c_int(len(buf)))
        return buf.value.decode(errors="replace").strip()

    def routine(self, dtype: np.dtype, name: str):
        if dtype.kind == "c" and name == "orgqr":
            name = "ungqr"
        return getattr(self._lib, self._prefix + _PREFIX[dtype] + name + "_")

    def has(self, dtype: np.dtype, name: str) -> bool:
        """Whether the library exports ``name`` for ``dtype`` (complex routines are optional)."""
        try:
            self.routine(dtype, name)
        except AttributeError:
            return False
        return True


#: Routines that stay on numpy/scipy's OpenBLAS when the library found by default is MKL (a per-kernel choice,
#: by measurement, benchmarks/README.md "Cholesky and TSQR at the limit"): MKL's sequential getrf on LU's tall
#: panels (8192 x 1024) ran at half OpenBLAS's speed and made the whole LU slower, while MKL's potrf, trsm,
#: syrk and gemm were as fast or faster. An explicit ``lib=`` argument is always used as given.
OPENBLAS_ROUTINES = frozenset({"getrf"})


def _default(name: str) -> Library | None:
    """The library ``name`` runs on when the caller names none: :func:`library`, except MKL's
    ``OPENBLAS_ROUTINES``."""
    lib = library()
    if lib is not None and name in OPENBLAS_ROUTINES and lib.is_mkl:
        return None
    return lib


def _for(lib: Library | None, dtype: np.dtype, name: str) -> Library | None:
    """``lib`` if it has the routine for ``dtype``, else None (numpy/scipy's, e.g. complex on an older layer)."""
    return lib if lib is not None and lib.has(dtype, name) else None


_lock = threading.Lock()
_loaded: tuple[str | None, Library | None] | None = None  # (the setting it was loaded for, library)


def library() -> Library | None:
    """The library the kernels use, or None for numpy's BLAS (cached; reloaded if ``$NUMPYWREN_BLAS_LIB`` changes)."""
    global _loaded
    setting = os.environ.get(ENV)
    with _lock:
        if _loaded is None or _loaded[0] != setting:
            _loaded = (setting, _find(setting))
        return _loaded[1]


def _find(setting: str | None) -> Library | None:
    if setting is not None and setting.strip().lower() == "numpy":
        return None
    if setting:
        if not Path(setting).is_file():
            raise BlasLibraryError(f"${ENV}={setting!r} is not a file (set it to a library path or to 'numpy')")
        return Library(setting)
    path = next((p for p in _default_paths() if p.is_file()), None) or _mkl_wheel_library()
    if path is None:
        return None
    lib = Library(path)
    log.info("tile kernels use %s (%s)", lib.version, path)
    return lib


def describe() -> str:
    """Which BLAS the tile kernels use, for job reports and benchmark CSVs."""
    lib = library()
    if lib is None:
        return "numpy " + _numpy_blas()
    own = [r for r in OPENBLAS_ROUTINES if lib.is_mkl]
    return f"{lib.version} ({Path(lib.path).name})" + (f"; {', '.join(sorted(own))}: numpy {_numpy_blas()}"
                                                          if own else "")


@functools.lru_cache(maxsize=1)
def _numpy_blas() -> str:
    try:
        deps = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{deps.get('name')} {deps.get('version')}"
    except Exception:  # noqa: BLE001 - older numpy has no dict mode
        return "BLAS"


# -- memory layout ------------------------------------------------------------------------------
def _layout(x: np.ndarray) -> tuple[str, int] | None:
    """('N', ld) if ``x`` is column-major in memory, ('T', ld) if row-major (x^T column-major), None otherwise."""
    size = x.itemsize
    rows, cols = x.shape
    s0, s1 = x.strides
    if not x.flags.aligned or s0 % size or s1 % size:
        return None
    if s0 == size and (cols <= 1 or s1 >= size * max(1, rows)):
        return "N", max(1, rows) if cols <= 1 else s1 // size
    if s1 == size and (rows <= 1 or s0 >= size * max(1, cols)):
        return "T", max(1, cols) if rows <= 1 else s0 // size
    return None


def _blas_ready(x: np.ndarray, dtype) -> tuple[np.ndarray, str, int]:
    """``x`` as ``dtype`` with a BLAS layout: the array itself when possible, else one C-ordered copy."""
    if x.dtype != dtype:
        x = x.astype(dtype)
    lay = _layout(x)
    if lay is None:
        x = np.ascontiguousarray(x)
        lay = _layout(x)
    return x, lay[0], lay[1]


def _flip(t: str) -> str:
    return "T" if t == "N" else "N"


def _other(uplo: str) -> str:
    return "U" if uplo == "L" else "L"


_c = ctypes.c_char_p
_i = ctypes.c_int  # LP64: Fortran INTEGER is 32 bits
_p = ctypes.c_void_p


def _int(v: int):
    if not 0 <= v < 2 ** 31:  # LP64: a larger size or leading dimension would wrap silently
        raise ValueError(f"{v} does not fit the LP64 BLAS interface's 32-bit integers")
    return ctypes.byref(_i(v))


def _scalar(dtype, v: float):
    real = ctypes.c_double if dtype in (np.float64, np.complex128) else ctypes.c_float
    if np.dtype(dtype).kind == "c":   # a Fortran COMPLEX: (real, imaginary) side by side
        return ctypes.byref((real * 2)(complex(v).real, complex(v).imag))
    return ctypes.byref(real(v))


def _ptr(x: np.ndarray):
    return _p(x.ctypes.data)


def _chars(*flags: str):
    """Character arguments by reference, plus gfortran's hidden length arguments (appended by the caller)."""
    return [_c(f.encode()) for f in flags], [ctypes.c_size_t(1)] * len(flags)


def _check_dtype(*arrays: np.ndarray) -> np.dtype:
    dtype = np.result_type(*arrays)
    if dtype not in _PREFIX:
        raise TypeError(f"BLAS kernels take float32, float64, complex64 or complex128 arrays, got {dtype}")
    return dtype


def _writable(c: np.ndarray, shape: tuple, dtype) -> tuple[str, int]:
    if c.shape != shape or c.dtype != dtype:
        raise ValueError(f"output must be a {dtype} array of shape {shape}, got {c.dtype} {c.shape}")
    lay = _layout(c)
    if lay is None or not c.flags.writeable:
        raise ValueError("output must be a writable C- or Fortran-ordered array")
    return lay


# -- the routines -------------------------------------------------------------------------------
def gemm(a: np.ndarray, b: np.ndarray, c: np.ndarray | None = None, *, alpha: float = 1.0,
         beta: float = 0.0, lib: Library | None = None) -> np.ndarray:
    """``c = alpha * a @ b + beta * c`` in place (``c`` new, C-ordered, when None). Either memory order."""
    lib = lib or library()
    dtype = _check_dtype(a, b) if c is None else _check_dtype(c)
    lib = _for(lib, dtype, "gemm")
    (m, k), (k2, n) = a.shape, b.shape
    if k != k2:
        raise ValueError(f"gemm: shapes {a.shape} and {b.shape} do not chain")
    if c is None:
        c = np.zeros((m, n), dtype) if beta else np.empty((m, n), dtype)
    if lib is None and 0 not in (m, n, k) and _scipy_ready(c, dtype):
        return _scipy_gemm(a, b, c, alpha, beta)
    if lib is None or 0 in (m, n, k):
        result = alpha * (a @ b)
        c[...] = result + beta * c if beta else result
        return c
    ct, ldc = _writable(c, (m, n), dtype)
    a, ta, lda = _blas_ready(a, dtype)
    b, tb, ldb = _blas_ready(b, dtype)
    if ct == "N":  # column-major C = op(A) op(B)
        args = (ta, tb, m, n, k, a, lda, b, ldb)
    else:  # row-major C: compute C^T = B^T A^T in column-major terms
        args = (_flip(tb), _flip(ta), n, m, k, b, ldb, a, lda)
    t1, t2, mm, nn, kk, x, ldx, y, ldy = args
    chars, lens = _chars(t1, t2)
    lib.routine(dtype, "gemm")(*chars, _int(mm), _int(nn), _int(kk), _scalar(dtype, alpha), _ptr(x), _int(ldx),
                               _ptr(y), _int(ldy), _scalar(dtype, beta), _ptr(c), _int(ldc), *lens)
    return c


def syrk(a: np.ndarray, c: np.ndarray | None = None, *, lower: bool = True, alpha: float = 1.0,
         beta: float = 0.0, lib: Library | None = None) -> np.ndarray:
    """One triangle (``lower`` or upper) of ``c = alpha * a @ a.T + beta * c``; the other triangle is left as is."""
    lib = lib or library()
    dtype = _check_dtype(a) if c is None else _check_dtype(c)
    lib = _for(lib, dtype, "syrk")
    n, k = a.shape
    if c is None:
        c = np.zeros((n, n), dtype)
    if lib is None and 0 not in (n, k) and _scipy_ready(c, dtype):
        return _scipy_syrk(a, c, lower, alpha, beta)
    if lib is None or 0 in (n, k):
        full = alpha * (a @ a.T) + (beta * c if beta else 0)
        mask = np.tril(np.ones((n, n), bool)) if lower else np.triu(np.ones((n, n), bool))
        c[mask] = full[mask]
        return c
    ct, ldc = _writable(c, (n, n), dtype)
    uplo = "L" if lower else "U"
    if ct == "T":  # row-major C: the column-major routine sees C^T, whose lower triangle is C's upper
        uplo = _other(uplo)
    a, ta, lda = _blas_ready(a, dtype)
    # column-major A (n x k): C = A A^T is trans 'N'; row-major A is A^T (k x n) there: C = (A^T)^T A^T, trans 'T'
    chars, lens = _chars(uplo, ta)
    lib.routine(dtype, "syrk")(*chars, _int(n), _int(k), _scalar(dtype, alpha), _ptr(a), _int(lda),
                               _scalar(dtype, beta), _ptr(c), _int(ldc), *lens)
    return c


def trsm(a: np.ndarray, b: np.ndarray, *, left: bool = True, lower: bool = True, trans: bool = False,
         unit_diagonal: bool = False, alpha: float = 1.0, lib: Library | None = None) -> np.ndarray:
    """Solve ``op(a) x = alpha b`` (``left``) or ``x op(a) = alpha b`` in place in ``b``; op is transpose if ``trans``.

    ``a`` is triangular (``lower`` or upper; the other triangle is not read). ``b`` must be a writable
    float array of ``a``'s dtype (it is overwritten with ``x``).
    """
    lib = lib or library()
    dtype = _check_dtype(b)
    lib = _for(lib, dtype, "trsm")
    n = a.shape[0]
    if a.shape != (n, n) or b.shape[0 if left else 1] != n:
        raise ValueError(f"trsm: a {a.shape} and b {b.shape} do not fit (left={left})")
    if lib is None and b.size and b.dtype == dtype and b.flags.writeable and (b.flags.f_contiguous
                                                                              or b.flags.c_contiguous):
        return _scipy_trsm(a, b, left, lower, trans, unit_diagonal, alpha)
    if lib is None or b.size == 0:
        import scipy.linalg

        tri = np.tril(a) if lower else np.triu(a)
        if unit_diagonal:
            np.fill_diagonal(tri, 1)
        op = tri.T if trans else tri
        if left:
            x = scipy.linalg.solve_triangular(op, alpha * b, lower=lower != trans, check_finite=False)
        else:  # x op = b  <=>  op^T x^T = b^T
            x = scipy.linalg.solve_triangular(op.T, alpha * b.T, lower=lower == trans, check_finite=False).T
        b[...] = x
        return b
    bt, ldb = _writable(b, b.shape, dtype)
    a, ta, lda = _blas_ready(a, dtype)
    side, uplo, transa = "L" if left else "R", "L" if lower else "U", "T" if trans else "N"
    if ta == "T":  # row-major A is A^T in column-major: its triangle flips, and so does the transpose
        uplo, transa = _other(uplo), _flip(transa)
    m, nn = b.shape
    if bt == "T":  # row-major B: solve for X^T.  op(A) X = B <=> X^T op(A)^T = B^T (side and transpose flip)
        side, transa, m, nn = ("R" if side == "L" else "L"), _flip(transa), nn, m
    chars, lens = _chars(side, uplo, transa, "U" if unit_diagonal else "N")
    lib.routine(dtype, "trsm")(*chars, _int(m), _int(nn), _scalar(dtype, alpha), _ptr(a), _int(lda),
                               _ptr(b), _int(ldb), *lens)
    return b


def _scipy_trsm(a, b, left, lower, trans, unit_diagonal, alpha) -> np.ndarray:
    """trsm in place by scipy's BLAS (numpy's fallback): a C-ordered b is solved as b^T, with side and
    transpose flipped, so no copy of b is made (``solve_triangular`` copies it twice)."""
    from scipy.linalg.blas import get_blas_funcs

    (fn,) = get_blas_funcs(("trsm",), (b,))
    target, side, flip, tri, low = _triangular_operands(a, b, left, lower, trans)
    out = fn(alpha, tri, target, side=0 if side else 1, lower=int(low), trans_a=int(flip), diag=int(unit_diagonal),
             overwrite_b=1)
    _into(target, out)
    return b


def _triangular_operands(a, b, left, lower, trans):
    """(target, left, trans, triangle, lower) for scipy's trsm/trmm on Fortran-ordered operands, copying neither
    ``b`` nor a C- or Fortran-ordered ``a``: a C-ordered ``b`` is solved as ``b^T`` (side and transpose flip), a
    C-ordered ``a`` is passed as ``a^T`` (its triangle and the transpose flip). A copy of a C-ordered 1024 x 1024
    triangle cost a quarter of OpenBLAS's whole trsm."""
    target, side, flip = (b, left, trans) if b.flags.f_contiguous else (b.T, not left, not trans)
    tri, t = _fortran_op(a, b.dtype)
    return target, side, flip != bool(t), tri, lower != bool(t)


def trmm(a: np.ndarray, b: np.ndarray, *, left: bool = True, lower: bool = True, trans: bool = False,
         alpha: float = 1.0) -> np.ndarray:
    """``b = alpha op(a) b`` (``left``) or ``b = alpha b op(a)`` in place, ``a`` triangular (``lower`` or upper; the
    other triangle is not read), op the transpose if ``trans``. ``b`` must be a writable C- or Fortran-ordered array
    of ``a``'s dtype.

    With an explicit inverse (:func:`trtri`) this replaces a triangular solve where the BLAS's trsm is slow:
    OpenBLAS's sequential trmm runs at GEMM speed, its trsm at a third of it on a tall block's 256-wide triangle
    (benchmarks/README.md, "The default BLAS and triangular solves by inverse"). It always runs on scipy's BLAS:
    the layer's MKL library does not export trmm, and on MKL the kernels keep trsm (as fast as MKL's GEMM).
    """
    dtype = _check_dtype(b)
    n = a.shape[0]
    if a.shape != (n, n) or b.shape[0 if left else 1] != n:
        raise ValueError(f"trmm: a {a.shape} and b {b.shape} do not fit (left={left})")
    if not (b.flags.writeable and (b.flags.c_contiguous or b.flags.f_contiguous)) or b.dtype != dtype:
        raise ValueError("trmm: b must be a writable C- or Fortran-ordered array")
    if b.size == 0:
        return b
    from scipy.linalg.blas import get_blas_funcs

    (fn,) = get_blas_funcs(("trmm",), (b,))
    target, side, flip, tri, low = _triangular_operands(a, b, left, lower, trans)
    _into(target, fn(alpha, tri, target, side=0 if side else 1, lower=int(low), trans_a=int(flip), overwrite_b=1))
    return b


def trtri(a: np.ndarray, *, lower: bool = True) -> np.ndarray:
    """The inverse of the triangular matrix in ``a``'s ``lower`` (or upper) triangle, as a new Fortran-ordered array
    with zeros in the other triangle (LAPACK trtri, scipy's). ``LapackError`` if the triangle is exactly singular.

    Called once per triangle (n^3/3 flops), so scipy's LAPACK serves every library."""
    from scipy.linalg.lapack import get_lapack_funcs

    dtype = _check_dtype(a)
    tri, t = _fortran_op(a, dtype)
    low = lower != bool(t)
    (fn,) = get_lapack_funcs(("trtri",), (tri,))
    inv, info = fn(tri, lower=int(low))
    if info > 0:
        raise LapackError(f"trtri: the triangle is singular (diagonal {info} is zero)")
    if info < 0:
        raise LapackError(f"trtri: argument {-info} had an illegal value")
    inv = np.tril(inv) if low else np.triu(inv)
    return np.asfortranarray(inv.T if t else inv)


# -- numpy's fallback: scipy's BLAS/LAPACK wrappers, in place ---------------------------------------
# f2py copies any operand that is not Fortran-ordered; a C-ordered array is the Fortran-ordered transpose of
# itself, so each call below passes the Fortran-ordered one of (x, x.T) with the matching transpose flag.
def _scipy_ready(c: np.ndarray, dtype) -> bool:
    """True if ``c`` can be updated in place by scipy's wrappers (writable, contiguous, of ``dtype``)."""
    return c.dtype == dtype and c.flags.writeable and (c.flags.c_contiguous or c.flags.f_contiguous)


def _fortran_op(x: np.ndarray, dtype) -> tuple[np.ndarray, int]:
    """(y, trans) with y Fortran-ordered and op(y) == x (trans 1: y = x.T), copying only strided arrays."""
    x = np.asarray(x, dtype=dtype)
    if x.flags.f_contiguous:
        return x, 0
    if x.flags.c_contiguous:
        return x.T, 1
    return np.asfortranarray(x), 0


def _into(target: np.ndarray, out: np.ndarray) -> None:
    if out is not target and not np.shares_memory(out, target):
        target[...] = out


def _scipy_gemm(a, b, c, alpha, beta) -> np.ndarray:
    from scipy.linalg.blas import get_blas_funcs

    (fn,) = get_blas_funcs(("gemm",), (c,))
    if c.flags.f_contiguous:
        target, (x, tx), (y, ty) = c, _fortran_op(a, c.dtype), _fortran_op(b, c.dtype)
    else:   # C-ordered c: c^T = b^T a^T, Fortran-ordered
        target, (x, tx), (y, ty) = c.T, _fortran_op(b.T, c.dtype), _fortran_op(a.T, c.dtype)
    _into(target, fn(alpha, x, y, beta=beta, c=target, trans_a=tx, trans_b=ty, overwrite_c=1))
    return c


def herk(a: np.ndarray, c: np.ndarray | None = None, *, lower: bool = True, alpha: float = 1.0,
         beta: float = 0.0, lib: Library | None = None) -> np.ndarray:
    """One triangle (``lower`` or upper) of ``c = alpha * a @ a.H + beta * c`` (``alpha``, ``beta`` real), as
    BLAS's HERK; the other triangle is left as is. :func:`syrk` for real arrays."""
    lib = lib or library()
    dtype = _check_dtype(a) if c is None else _check_dtype(c)
    if dtype.kind != "c":
        return syrk(a, c, lower=lower, alpha=alpha, beta=beta, lib=lib)
    lib = _for(lib, dtype, "herk")
    n, k = a.shape
    if c is None:
        c = np.zeros((n, n), dtype)
    ct, ldc = _writable(c, (n, n), dtype)
    mask = np.tril(np.ones((n, n), bool)) if lower else np.triu(np.ones((n, n), bool))
    if 0 in (n, k):
        c[mask] = (beta * c)[mask]
        return c
    # The routine sees c column-major (ct 'N'), or c^T (ct 'T': c's lower triangle is its upper one); a must be
    # in the same memory order: then c^T += alpha conj(a) a^T is HERK 'C' on a^T (row-major a), with no copy.
    a = np.asfortranarray(a, dtype) if ct == "N" else np.ascontiguousarray(a, dtype)
    uplo, trans, lda = ("L" if lower else "U"), "N", max(1, n)
    if ct == "T":
        uplo, trans, lda = _other(uplo), "C", max(1, k)
    if lib is None:
        from scipy.linalg.blas import get_blas_funcs

        (fn,) = get_blas_funcs(("herk",), (c,))
        target, x = (c, a) if ct == "N" else (c.T, a.T)   # both Fortran-ordered
        _into(target, fn(alpha, x, beta=beta, c=target, trans=0 if trans == "N" else 2, lower=int(uplo == "L"),
                         overwrite_c=1))
        return c
    real = np.float64 if dtype == np.complex128 else np.float32
    chars, lens = _chars(uplo, trans)
    lib.routine(dtype, "herk")(*chars, _int(n), _int(k), _scalar(real, alpha), _ptr(a), _int(lda),
                               _scalar(real, beta), _ptr(c), _int(ldc), *lens)
    return c


def _scipy_syrk(a, c, lower, alpha, beta) -> np.ndarray:
    from scipy.linalg.blas import get_blas_funcs

    (fn,) = get_blas_funcs(("syrk",), (c,))
    target, low = (c, lower) if c.flags.f_contiguous else (c.T, not lower)   # c^T's lower triangle is c's upper
    x, tx = _fortran_op(a, c.dtype)   # a a^T = x x^T (tx 0) or x^T x (tx 1, x = a^T)
    _into(target, fn(alpha, x, beta=beta, c=target, trans=tx, lower=int(low), overwrite_c=1))
    return c


def _scipy_potrf(a, lower) -> np.ndarray:
    from scipy.linalg.lapack import get_lapack_funcs

    (fn,) = get_lapack_funcs(("potrf",), (a,))
    target, low = (a, lower) if a.flags.f_contiguous else (a.T, not lower)
    factor, info = fn(target, lower=int(low), clean=0, overwrite_a=1)
    _potrf_info(int(info))
    _into(target, factor)
    return a


def potrf(a: np.ndarray, *, lower: bool = True, lib: Library | None = None) -> np.ndarray:
    """Cholesky factor of symmetric positive definite ``a`` in place (its ``lower`` or upper triangle).

    Only that triangle is read and written; zero the other one for a clean factor. ``LapackError``
    if ``a`` is not positive definite.
    """
    lib = lib or library()
    dtype = _check_dtype(a)
    lib = _for(lib, dtype, "potrf")
    n = a.shape[0]
    if a.shape != (n, n):
        raise ValueError(f"potrf needs a square matrix, got {a.shape}")
    if lib is None and n and _scipy_ready(a, dtype):
        return _scipy_potrf(a, lower)
    if lib is None or n == 0:
        import scipy.linalg

        try:
            factor = scipy.linalg.cholesky(a, lower=lower, check_finite=False)
        except np.linalg.LinAlgError as e:
            raise LapackError(f"potrf: {e}") from None
        mask = np.tril(np.ones((n, n), bool)) if lower else np.triu(np.ones((n, n), bool))
        a[mask] = factor[mask]
        return a
    at, lda = _writable(a, a.shape, dtype)
    uplo = "L" if lower else "U"
    if at == "T":  # row-major: column-major sees A^T = A with triangles swapped; U^T U read row-major is L L^T
        uplo = _other(uplo)
    info = _i(0)
    chars, lens = _chars(uplo)
    lib.routine(dtype, "potrf")(*chars, _int(n), _ptr(a), _int(lda), ctypes.byref(info), *lens)
    _potrf_info(info.value)
    return a


def _potrf_info(info: int) -> None:
    """LapackError for potrf's info != 0; ``.order`` is the leading minor that is not positive."""
    if info > 0:
        error = LapackError(f"potrf: the leading minor of order {info} is not positive definite")
        error.order = info
        raise error
    if info < 0:
        raise LapackError(f"potrf: argument {-info} had an illegal value")


def getrf(a: np.ndarray, *, lib: Library | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """LU with partial pivoting (LAPACK ``getrf``) of an m x n matrix: ``(lu, ipiv, info)``.

    ``lu`` holds L (unit lower, below the diagonal) and U (upper), in place when ``a`` is a writable
    Fortran-ordered float array, otherwise on a Fortran copy (the LU of a transpose is not a
    transpose of the LU). ``ipiv`` is 0-based: row r was interchanged with row ``ipiv[r]``, in order.
    ``info`` > 0 means ``U[info-1, info-1]`` is exactly zero (the factorization is complete; a solve
    with it would divide by zero), as LAPACK reports it; nothing is raised.
    """
    lib = lib or _default("getrf")
    dtype = _check_dtype(a)
    lib = _for(lib, dtype, "getrf")
    m, n = a.shape
    if lib is None or a.size == 0:
        import scipy.linalg

        lu, ipiv, info = scipy.linalg.lapack.get_lapack_funcs("getrf", dtype=dtype)(a)
        if info < 0:
            raise LapackError(f"getrf: argument {-info} had an illegal value")
        return lu, np.asarray(ipiv, np.int64), int(info)
    a = _fortran(a, dtype)
    ipiv = np.zeros(min(m, n), np.int32)
    info = _i(0)
    lib.routine(dtype, "getrf")(_int(m), _int(n), _ptr(a), _int(max(1, m)), _ptr(ipiv), ctypes.byref(info))
    if info.value < 0:
        raise LapackError(f"getrf: argument {-info.value} had an illegal value")
    return a, ipiv.astype(np.int64) - 1, int(info.value)


def _fortran(a: np.ndarray, dtype) -> np.ndarray:
    if a.dtype == dtype and a.flags.f_contiguous and a.flags.writeable and a.flags.aligned:
        return a
    return np.asfortranarray(a, dtype=dtype)


def _lapack_qr(lib: Library, dtype, name: str, a: np.ndarray, extra: list, tau: np.ndarray) -> None:
    """Call ?geqrf / ?orgqr with a workspace query first."""
    fn = lib.routine(dtype, name)
    m, n = a.shape
    work = np.zeros(1, dtype)
    info = _i(0)
    for lwork in (-1, None):
        if lwork is None:
            lwork = max(1, int(work[0].real))   # a complex workspace reports its size as a complex
            work = np.empty(lwork, dtype)
        fn(_int(m), _int(n), *extra, _ptr(a), _int(max(1, m)), _ptr(tau), _ptr(work), ctypes.byref(_i(lwork)),
           ctypes.byref(info))
        if info.value:
            raise LapackError(f"{name}: argument {-info.value} had an illegal value")


def geqrf(a: np.ndarray, *, lib: Library | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Householder QR: return ``(qr, tau)`` in LAPACK's compact form (R in the upper triangle).

    In place when ``a`` is a writable Fortran-ordered float array; otherwise on a Fortran copy.
    """
    lib = lib or library()
    dtype = _check_dtype(a)
    lib = _for(lib, dtype, "geqrf")
    if lib is None:
        import scipy.linalg

        qr, tau, _work, _info = scipy.linalg.lapack.get_lapack_funcs("geqrf", dtype=dtype)(a)
        return qr, tau
    a = _fortran(a, dtype)
    tau = np.zeros(min(a.shape), dtype)
    if a.size:
        _lapack_qr(lib, dtype, "geqrf", a, [], tau)
    return a, tau


def orgqr(qr: np.ndarray, tau: np.ndarray, *, lib: Library | None = None) -> np.ndarray:
    """The explicit Q (m x n, orthonormal columns) from ``geqrf``'s output, in place on a Fortran array."""
    lib = lib or library()
    dtype = _check_dtype(qr)
    lib = _for(lib, dtype, "orgqr")
    m, n = qr.shape
    if m < n:
        raise ValueError(f"orgqr: Q of a {m} x {n} matrix needs m >= n; take qr[:, :{m}]")
    if lib is None:
        import scipy.linalg

        q, _work, info = scipy.linalg.lapack.get_lapack_funcs("orgqr", dtype=dtype)(qr, tau)
        if info:
            raise LapackError(f"orgqr: argument {-info} had an illegal value")
        return q
    qr = _fortran(qr, dtype)
    tau = np.ascontiguousarray(tau, dtype=dtype)
    if qr.size:
        _lapack_qr(lib, dtype, "orgqr", qr, [_int(min(m, n, tau.size))], tau)
    return qr
