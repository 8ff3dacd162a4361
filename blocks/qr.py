"""TSQR tile kernels: Householder QR of a row block or of stacked R factors, and Q reconstruction.

A TSQR *node* factors a stacked matrix S (a row block of the data, or the R
factors of its children stacked) with LAPACK ``geqrf``. Its result is kept in
one of two tile forms:

- an **R tile**: the ``r x c`` upper-trapezoidal R (``r = min(rows of S, c)``),
  enough when only R is wanted;
- a **factor tile**: ``geqrf``'s compact output (R on and above the diagonal,
  the Householder vectors below it) with one extra last row holding the ``tau``
  scalars, so ``(rows + 1) x c``. Q is never formed: :func:`apply_q` applies it
  with ``ormqr`` (cheaper than ``orgqr`` + GEMM, same storage as an explicit Q).

Everything here is a pure function on numpy arrays (float32, float64, complex64 or complex128; for complex
data the reflectors have complex ``tau`` and "transposed" means the conjugate transpose ``Q^H``).
scipy (for its LAPACK wrappers) is imported on first use, so that importing
numpywren (e.g. in a Lambda layer without scipy) does not need it.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def hstack_block(tiles: Sequence[np.ndarray], dtype) -> np.ndarray:
    """The tiles of one row block side by side, as a Fortran-ordered copy LAPACK can factor in place."""
    cols = sum(t.shape[1] for t in tiles)
    out = np.empty((tiles[0].shape[0], cols), dtype=dtype, order="F")
    start = 0
    for t in tiles:
        out[:, start:start + t.shape[1]] = t
        start += t.shape[1]
    return out


def row_block(tiles: Sequence[np.ndarray], dtype) -> np.ndarray:
    """The tiles of one row block side by side as they are: the tile itself when there is one (read-only maps
    stay maps), else one C-ordered copy (:func:`r_factor_blas3` takes either order)."""
    if len(tiles) == 1:
        return np.asarray(tiles[0], dtype=dtype)
    return np.hstack([np.asarray(t, dtype=dtype) for t in tiles])


def stack_r(r_tiles: Sequence[np.ndarray], dtype) -> np.ndarray:
    """Child R factors one above the other (Fortran-ordered copy): the matrix a tree node factors."""
    return np.asfortranarray(np.vstack([np.asarray(r, dtype=dtype) for r in r_tiles]))


def _lapack(name: str, array: np.ndarray):
    try:
        from scipy.linalg import get_lapack_funcs
    except ImportError:
        raise ImportError("QR tile kernels need scipy (pip install scipy)") from None
    return get_lapack_funcs((name,), (array,))


def _geqrf(S: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Compact QR of S (Fortran-ordered, overwritten); raise on a LAPACK error."""
    (geqrf,) = _lapack("geqrf", S)
    work = geqrf(S, lwork=-1)[2]
    qr, tau, _, info = geqrf(S, lwork=max(int(work[0].real), 1), overwrite_a=True)
    if info != 0:
        raise ValueError(f"LAPACK geqrf failed (info={info})")
    return qr, tau


def r_factor(S: np.ndarray) -> np.ndarray:
    """R of S = Q R (``min(rows, cols) x cols``, upper trapezoidal); S is overwritten."""
    qr, _ = _geqrf(S)
    k = min(S.shape)
    return np.triu(qr[:k])


def factor(S: np.ndarray) -> np.ndarray:
    """The factor tile of S: compact QR with tau as an extra last row (``(rows + 1) x cols``); S is overwritten."""
    rows, cols = S.shape
    qr, tau = _geqrf(S)
    out = np.zeros((rows + 1, cols), dtype=S.dtype, order="F")
    out[:rows] = qr
    out[rows, :tau.size] = tau
    return out


def r_of_factor(F: np.ndarray, rows: int | None = None) -> np.ndarray:
    """The R held by a factor tile: its top ``rows`` rows (default ``min(rows, cols)`` of a :func:`factor`
    tile), upper triangle."""
    if rows is None:
        rows = min(F.shape[0] - 1, F.shape[1])
    return triu(F[:rows])


def triu(x: np.ndarray) -> np.ndarray:
    """``np.triu(x)`` in x's memory order, several times faster on a tile (numpy builds a full mask: 12 ms on
    a 1024 x 1024 tile, a third of a compact-WY applier's time): a copy, then each row's (C order) or
    column's (Fortran order) part across the diagonal set to zero."""
    out = np.array(x, order="F" if x.flags.f_contiguous and not x.flags.c_contiguous else "C")
    _zero_below_diagonal(out)
    return out


def _zero_below_diagonal(x: np.ndarray) -> None:
    """Zero the strictly lower triangle of x in place, row by row (C order) or column by column (otherwise)."""
    rows, cols = x.shape
    if x.flags.c_contiguous:
        for i in range(1, rows):
            x[i, :min(i, cols)] = 0
    else:
        for j in range(min(rows - 1, cols)):
            x[j + 1:, j] = 0


def apply_q(F: np.ndarray, C: np.ndarray) -> np.ndarray:
    """``Q @ [C; 0]`` where Q (``rows x k``) is the orthogonal factor of a factor tile, k = min(rows, cols).

    C has k or fewer rows (missing rows are zero) and any number of columns;
    the result has Q's ``rows`` rows.
    """
    rows, cols = F.shape[0] - 1, F.shape[1]
    k = min(rows, cols)
    if C.shape[0] > k:
        raise ValueError(f"apply_q: C has {C.shape[0]} rows but Q has only {k} columns")
    a = np.asfortranarray(F[:rows, :k])
    tau = np.array(F[rows, :k])
    full = np.zeros((rows, C.shape[1]), dtype=F.dtype, order="F")
    full[:C.shape[0]] = C
    (ormqr,) = _lapack("ormqr", a)
    work = ormqr("L", "N", a, tau, full, -1)[1]
    out, _, info = ormqr("L", "N", a, tau, full, max(int(work[0].real), 1), overwrite_c=True)
    if info != 0:
        raise ValueError(f"LAPACK ormqr failed (info={info})")
    return out


def qr_flops(rows: int, cols: int) -> float:
    """Floating-point operations of a Householder QR (geqrf) of a rows x cols matrix (LAPACK's count:
    ``2 m n^2 - 2 n^3 / 3`` for m >= n, so ``4/3 n^3`` for a square one)."""
    k = min(rows, cols)
    return 4.0 * rows * cols * k - 2.0 * (rows + cols) * k * k + 4.0 * k ** 3 / 3


def apply_q_flops(rows: int, k: int, cols: int) -> float:
    """Floating-point operations of applying k Householder reflectors of length <= rows to a rows x cols matrix."""
    return 4.0 * rows * k * cols - 2.0 * k * k * cols


def apply_factor(F: np.ndarray, C: np.ndarray, transpose: bool) -> np.ndarray:
    """``Q^H @ C`` (``transpose``; ``Q^T`` for real data) or ``Q @ C``, Q the full ``rows x rows`` orthogonal
    (unitary) factor of a factor tile.

    C has the factor's ``rows`` rows and any number of columns. This is the
    trailing update of CAQR (``Q^T``) and the back-accumulation of its Q.
    """
    rows, cols = F.shape[0] - 1, F.shape[1]
    if C.shape[0] != rows:
        raise ValueError(f"apply_factor: C has {C.shape[0]} rows, the factor {rows}")
    k = min(rows, cols)
    out = np.array(C, dtype=F.dtype, order="F")
    if k == 0 or out.size == 0:
        return out
    a = np.asfortranarray(F[:rows, :k])
    tau = np.array(F[rows, :k])
    (ormqr,) = _lapack("ormqr", a)
    side_trans = ("C" if np.iscomplexobj(a) else "T") if transpose else "N"   # unmqr takes "C", ormqr "T"
    work = ormqr("L", side_trans, a, tau, out, -1)[1]
    out, _, info = ormqr("L", side_trans, a, tau, out, max(int(work[0].real), 1), overwrite_c=True)
    if info != 0:
        raise ValueError(f"LAPACK ormqr failed (info={info})")
    return out


# -- compact-WY tile kernels (PLASMA's tiled QR: geqrt / tpqrt and their appliers) ----------------------------------
#: inner block size ``nb`` of the compact-WY T factors of geqrt/tpqrt. Larger blocks make the appliers'
#: GEMMs fatter but add T flops. 1 thread, OpenBLAS 0.3.31, 1024 tiles, CPU time (GEMM: 75 GFLOPS), GFLOPS of
#: geqrt / gemqrt / tpqrt / tpmqrt (appliers from the right, as called): nb=32 37/50/31/53, 64 41/56/32/60,
#: 96 44/58/27/61, 128 42/61/29/65 (kept: the appliers do 90% of the flops), 256: tpqrt 19, tpmqrt no faster.
QRT_BLOCK = 128


def _call(name: str, like: np.ndarray, *args, **kwargs):
    """A scipy LAPACK wrapper for ``like``'s dtype, raising on info != 0 (the last value returned)."""
    (fn,) = _lapack(name, like)
    *out, info = fn(*args, **kwargs)
    if info != 0:
        raise ValueError(f"LAPACK {fn.typecode}{name} failed (info={info})")
    return out


def _trans(a: np.ndarray, transpose: bool) -> str:
    return ("C" if np.iscomplexobj(a) else "T") if transpose else "N"


def factor_wy(S: np.ndarray, block: int = QRT_BLOCK) -> np.ndarray:
    """The compact-WY factor tile of S (``geqrt``): R and the Householder vectors as geqrf leaves them,
    then the ``nb x k`` T factor (k = min(S.shape), nb = min(block, k)) as ``nb`` extra rows:
    ``(rows + nb) x cols``. S (Fortran-ordered) is overwritten. Apply with :func:`apply_wy`."""
    rows, cols = S.shape
    k = min(rows, cols)
    nb = max(1, min(block, k))
    out = np.empty((rows + nb, cols), dtype=S.dtype, order="F")
    if k == 0:
        out[:rows] = S
        out[rows:] = 0
        return out
    a, t = _call("geqrt", S, nb, S, overwrite_a=True)
    out[:rows] = a
    out[rows:, :k] = t
    out[rows:, k:] = 0
    return out


def apply_wy(F: np.ndarray, C: np.ndarray, transpose: bool, overwrite: bool = False) -> np.ndarray:
    """``Q^H C`` (``transpose``) or ``Q C`` for the factor tile F of :func:`factor_wy` (``gemqrt``); C has the
    factored block's rows. The result is C-ordered; ``overwrite`` lets a C-ordered C be updated in place."""
    rows, cols = C.shape[0], F.shape[1]
    k = min(rows, cols)
    out = _c_ordered(C, F.dtype, overwrite)
    if k == 0 or out.size == 0:
        return out
    v, t = F[:rows, :k], F[rows:, :k]
    if t.shape[0] < 1 or v.shape[0] != rows:
        raise ValueError(f"apply_wy: a {F.shape} factor tile cannot hold the factor of {rows} rows")
    v, t, trans = _right_side(v, t, transpose)
    (got,) = _call("gemqrt", v, v, t, out.T, side="R", trans=trans, overwrite_c=True)
    _into(out.T, got)
    return out


def _c_ordered(C: np.ndarray, dtype, overwrite: bool) -> np.ndarray:
    """C itself (``overwrite`` and already a C-ordered array of ``dtype``) or a C-ordered copy: the buffer the
    appliers update in place."""
    if overwrite and C.flags.c_contiguous and C.flags.writeable and C.dtype == dtype:
        return C
    return np.array(C, dtype=dtype, order="C")


def _right_side(v: np.ndarray, t: np.ndarray, transpose: bool) -> tuple[np.ndarray, np.ndarray, str]:
    """The reflectors and ``trans`` flag that apply ``Q^H`` (``transpose``) or ``Q`` to a C-ordered C from the
    right of its transpose (``C^T``: a Fortran-ordered view, no copy): ``(Q^H C)^T = C^T conj(Q)`` and
    ``(Q C)^T = C^T conj(Q)^H``, conj(Q) being the product of the conjugated reflectors (the same for real data).
    LAPACK's appliers also run ~10% faster from the right here (tpmqrt, 1 thread, 1024 tiles: 61 vs 55 GFLOPS)."""
    if np.iscomplexobj(v):
        v, t = v.conj(), t.conj()
    return np.asfortranarray(v), np.asfortranarray(t), "N" if transpose else _trans(v, True)


def _into(target: np.ndarray, got: np.ndarray) -> None:
    """Make sure LAPACK's result is in ``target`` (f2py updates a Fortran-ordered array in place; if it ever
    copied, copy back)."""
    if not np.shares_memory(target, got):
        target[...] = got


def factor_ts(top: np.ndarray, below: np.ndarray, block: int = QRT_BLOCK) -> np.ndarray:
    """QR of an ``n x n`` upper triangle stacked on an ``h x n`` block (``tpqrt`` with l=0, PLASMA's TS
    kernel): the flops of the triangle's zeros are skipped. The factor tile is the new R (n rows), the
    Householder vectors' lower part V (h rows) and T (``nb`` rows): ``(n + h + nb) x n``. Apply with
    :func:`apply_ts`."""
    n, h = top.shape[1], below.shape[0]
    if top.shape != (n, n) or below.shape[1] != n:
        raise ValueError(f"factor_ts: needs an n x n triangle on an h x n block, got {top.shape} and {below.shape}")
    nb = max(1, min(block, n))
    out = np.empty((n + h + nb, n), dtype=top.dtype, order="F")
    a = np.array(top, dtype=top.dtype, order="F")   # tpqrt reads only its upper triangle
    b = np.array(below, dtype=top.dtype, order="F")
    a, b, t = _call("tpqrt", a, 0, nb, a, b, overwrite_a=True, overwrite_b=True)
    out[:n], out[n:n + h], out[n + h:] = a, b, t
    _zero_below_diagonal(out[:n])
    return out


def apply_ts(F: np.ndarray, C: np.ndarray, transpose: bool, overwrite: bool = False) -> np.ndarray:
    """``Q^H C`` (``transpose``) or ``Q C`` for the factor tile F of :func:`factor_ts` (``tpmqrt``, l=0); C is
    the ``n + h`` rows the factor's stack had (the triangle's rows, then the block's). The result is C-ordered
    (both parts are row ranges of one buffer: no copy in or out of LAPACK); ``overwrite`` lets a C-ordered C
    be updated in place."""
    n = F.shape[1]
    h = C.shape[0] - n
    if h < 0 or F.shape[0] - n - h < 1:
        raise ValueError(f"apply_ts: a {F.shape} factor tile cannot apply to {C.shape[0]} rows")
    out = _c_ordered(C, F.dtype, overwrite)
    if C.shape[1] == 0 or h == 0:
        return out
    v, t, trans = _right_side(F[n:n + h], F[n + h:], transpose)
    top, below = out[:n].T, out[n:].T
    a, b = _call("tpmqrt", v, 0, v, t, top, below, side="R", trans=trans, overwrite_a=True, overwrite_b=True)
    _into(top, a)
    _into(below, b)
    return out


def ts_flops(n: int, h: int) -> float:
    """Floating-point operations of :func:`factor_ts` (n reflectors of length 1 + h over n columns)."""
    return 2.0 * h * n * n


def apply_ts_flops(n: int, h: int, cols: int) -> float:
    """Floating-point operations of :func:`apply_ts` on ``cols`` columns."""
    return 4.0 * h * n * cols


def stack_segments(segments: Sequence[np.ndarray], dtype, order: str = "F") -> np.ndarray:
    """Row segments one above the other, as a copy in ``order`` (the matrix a CAQR node factors (Fortran order,
    for LAPACK) or updates (C order: the appliers work on its transpose, and the copy of C-ordered tiles is a
    plain memory copy, not a transposition))."""
    rows = sum(s.shape[0] for s in segments)
    out = np.empty((rows, segments[0].shape[1]), dtype=dtype, order=order)
    start = 0
    for s in segments:
        out[start:start + s.shape[0]] = s
        start += s.shape[0]
    return out


def symmetrize_lower(T: np.ndarray) -> np.ndarray:
    """The symmetric (complex: Hermitian) matrix whose lower triangle is T's (a diagonal tile of a matrix given
    by its lower triangle). A complex diagonal is taken as real, as LAPACK's Hermitian routines (and numpy's
    eigh) read it."""
    low = np.tril(T)
    if np.iscomplexobj(T):
        low[np.diag_indices_from(low)] = low.diagonal().real
        return low + np.tril(T, -1).conj().T
    return low + np.tril(T, -1).T


#: CholeskyQR2 is used for a float64 block when the Cholesky factor of its Gram matrix has a 2-norm condition
#: number (= A's) at most this. CholeskyQR2's R is backward stable while kappa(A) is below about u^(-1/2) =
#: 6.7e7 (Yamamoto et al. 2015); the margin of 100 below that keeps the error near Householder's.
CHOLQR2_MAX_COND = 1e6
#: blocks shorter than this many times their width use Householder QR (geqrf is compute-bound there)
CHOLQR2_MIN_ASPECT = 4
#: rows of Q1 solved and accumulated at a time in CholeskyQR2's second round (a chunk stays in L2/L3 cache)
CHOLQR2_CHUNK_BYTES = 2 << 20


def leaf_solve() -> str:
    """How CholeskyQR2's second round applies R1^-1 (``"trsm"`` or ``"inverse"``), by the tile kernels' BLAS.

    The rule: ``"inverse"`` (LAPACK trtri once per leaf, then trmm by the explicit L1^-1 on each row chunk)
    unless the tile kernels run on MKL, whose sequential trsm is as fast as its GEMM; OpenBLAS's runs at a
    third of its trmm on the leaf's shape (1024-row chunks, a 256-wide triangle: ~19 vs ~55 GFLOPS on one
    core). Accuracy: within ``CHOLQR2_MAX_COND`` the inverse's error (~u kappa(L1)) is below the orthogonality
    CholeskyQR's first round loses anyway (~u kappa^2), which the second round repairs: the R and Q = S R^-1
    of both solves are at numpy's level there (tests/test_qr.py). Beyond the bound the leaf is Householder.
    """
    from blocks import blas

    lib = blas.library()
    return "trsm" if lib is not None and lib.is_mkl else "inverse"


def r_factor_blas3(S: np.ndarray, solve: str | None = None) -> tuple[np.ndarray, str]:
    """R of a tall block by CholeskyQR2 (two rounds of Gram matrix, Cholesky, triangular solve: all BLAS-3),
    falling back to Householder QR when the block is float32, not tall, or too ill-conditioned
    (``CHOLQR2_MAX_COND``). Returns ``(R, method)``, method ``"cholqr2"`` or ``"householder"``.

    S may be in either memory order and read-only (a mapped tile): it is not written. The second round
    runs on row chunks of ``CHOLQR2_CHUNK_BYTES``: each chunk of Q1 = S R1^-1 is solved in a small copy
    and added to the second Gram matrix while it is in cache, so Q1 is never stored whole and S is
    read twice, not copied (a Fortran-ordered copy of a C-ordered 125,000 x 256 block alone took longer
    than the whole CholeskyQR2). R has a positive diagonal (Householder's may not): TSQR's R is unique up
    to the signs of its rows. ``solve`` (``"trsm"`` or ``"inverse"``; default :func:`leaf_solve`) is how
    Q1 = S R1^-1 is applied.
    """
    rows, cols = S.shape
    if S.dtype != np.float64 or rows < CHOLQR2_MIN_ASPECT * cols or cols == 0:
        return r_factor(np.array(S, order="F")), "householder"
    from blocks import blas

    l1 = _gram_cholesky(S)
    if l1 is None or np.linalg.cond(l1) > CHOLQR2_MAX_COND:
        return r_factor(np.array(S, order="F")), "householder"
    solve = solve or leaf_solve()
    if solve not in ("trsm", "inverse"):
        raise ValueError(f"solve must be 'trsm' or 'inverse', got {solve!r}")
    l1_inv = blas.trtri(l1, lower=True) if solve == "inverse" else None
    gram = np.zeros((cols, cols), np.float64)
    step = max(1, CHOLQR2_CHUNK_BYTES // (8 * cols))
    for lo in range(0, rows, step):
        q = np.array(S[lo:lo + step], order="C")
        if l1_inv is None:
            blas.trsm(l1, q, left=False, lower=True, trans=True)     # this chunk of Q1 = S L1^-T
        else:
            blas.trmm(l1_inv, q, left=False, lower=True, trans=True)  # the same by the explicit inverse
        blas.syrk(q.T, gram, lower=True, beta=1.0)               # Q1^T Q1, chunk by chunk
    try:
        blas.potrf(gram, lower=True)
    except blas.LapackError:
        raise AssertionError("CholeskyQR2: the second Gram matrix is not positive definite") from None  # cannot happen
    return np.triu((l1 @ np.tril(gram)).T), "cholqr2"                 # R = R2 R1 = (L1 L2)^T


def _gram_cholesky(S: np.ndarray) -> np.ndarray | None:
    """Lower Cholesky factor of S^T S (None if that is not numerically positive definite)."""
    from blocks import blas

    gram = blas.syrk(S.T, lower=True)
    try:
        blas.potrf(gram, lower=True)
    except blas.LapackError:
        return None
    return np.tril(gram)
