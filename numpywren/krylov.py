"""A few eigenpairs of a symmetric (complex: Hermitian) tiled matrix too big to reduce: ``eigsh``, by a restarted
block Krylov method.

``eigh`` reduces the whole matrix (about ``4/3 n^3`` flops and many passes over its tiles); ``eigsh`` touches A
only through products ``A @ V`` with thin blocks V (``n x b``), each one numpywren matmul job (a plan run through
``jobs.run``: one pass over A's tiles on the workers). Everything else is small dense algebra on the driver,
which holds the basis Q (``n x ncv``) and its product W = A Q, never A.

The method (block Lanczos with thick restart and Rayleigh-Ritz; Golub & Underwood 1977, Zhou & Saad 2008):

1. Q_0 is an orthonormal start block (``v0``'s columns, then random ones), W_0 = A Q_0 (a job).
2. The basis grows: the next block is the part of the last product A Q_j orthogonal to every block so far
   (classical Gram-Schmidt, twice), and its product is a job; until the basis has ``ncv`` columns.
3. Rayleigh-Ritz: eigenpairs (theta, y) of H = Q^H W (Q^T W for real A). A Ritz vector x = Q y has A x = W y, so its residual
   ``||A x - theta x|| = ||W y - theta Q y||`` is measured from the products themselves, at no further pass.
4. When the k wanted residuals are at most ``tol * ||A||_2`` (``||A||_2`` estimated by the largest |theta|)
   the pairs are returned; otherwise the b best Ritz vectors are the next Q_0 (their product W y is known, so
   a restart costs no pass) and the method goes on from 2.

A run that has not converged after ``maxiter`` passes raises scipy's ``ArpackNoConvergence`` carrying the pairs
that did: an approximate answer is never returned silently.
"""
from __future__ import annotations

import logging
import operator

import numpy as np

from numpywren import gemm, jobs, protocol
from numpywren.matrix import BigMatrix

log = logging.getLogger(__name__)

WHICH = ("LM", "LA", "SA")
#: tol=0 means "machine precision" (scipy's convention): residuals within this many units of roundoff of
#: ||A||_2 (times sqrt(n), the typical growth of the products' rounding errors)
ROUNDOFF_UNITS = 64


def eigsh(A: BigMatrix, k: int = 6, which: str = "LM", v0=None, ncv: int | None = None, maxiter: int | None = None,
          tol: float = 0, return_eigenvectors: bool = True, *, block_size: int | None = None, seed=None,
          return_info: bool = False, executor=None, check_finite: bool = False, **options):
    """k eigenvalues (and eigenvectors) of a symmetric or complex Hermitian BigMatrix, as
    ``scipy.sparse.linalg.eigsh``.

    A is used as the symmetric (complex: Hermitian) operator it stores: a matrix stored as one triangle
    (``kernel``, ``syrk``, ``herk``) reads its other triangle as the (conjugated) mirror. For a complex A the
    eigenvalues are real (float32/float64, as scipy's) and the eigenvectors complex; A is not checked to be
    Hermitian (as scipy does not check). Each product ``A @ V`` is one matmul job on the workers; the
    driver holds ``n x 2 ncv`` numbers (the basis and its product), never A.

    Parameters
    ----------
    A : BigMatrix
        Square; symmetric float32/float64 or Hermitian complex64/complex128.
    k : int, default 6
        How many eigenpairs, ``1 <= k < n`` (all of them: :func:`numpywren.eigh`).
    which : {"LM", "LA", "SA"}, default "LM"
        Largest magnitude, largest algebraic or smallest algebraic eigenvalues. ("SM" and shift-invert need a
        solve per product: use :func:`numpywren.eigh`.)
    v0 : array_like, optional
        Starting vector (n,), or block (n, m) with m <= block_size; the rest of the start block is random.
    ncv : int, optional
        Columns of the basis before a restart, ``k < ncv <= n``; default ``min(n, max(4 * block_size, 20))``.
    maxiter : int, optional
        Most passes over A (products ``A @ V``, one job each); default 100.
    tol : float, default 0
        Converged when ``||A x - lambda x|| <= tol * ||A||_2`` for every returned pair; 0 means machine
        precision (``64 * sqrt(n) * eps`` of A's dtype).
    return_eigenvectors : bool, default True
        Also return the eigenvectors.
    block_size : int, optional
        Columns of each product, ``k <= block_size``; default ``min(n, max(2 * k, 8))``. A cluster of more
        equal eigenvalues than this may be found only in part.
    seed : int or numpy.random.Generator, optional
        Seed of the random start block (reproducible runs).
    return_info : bool, default False
        Also return a dict: ``residuals`` (``||A x - lambda x||`` per pair, in the order of the eigenvalues),
        ``tolerance`` (the absolute bound they met), ``norm_estimate``, ``passes``, ``restarts``.
    executor : Executor, optional
        Where the products run; default :func:`numpywren.get_executor`.
    check_finite : bool, default False
        Scan A for NaN/inf on the workers first.
    **options
        Run options of every product (``retries``, ``backoff``, ``lease_seconds``, ``progress``, ...).

    Returns
    -------
    w : numpy.ndarray
        k eigenvalues in ascending order (also without eigenvectors, where scipy returns ARPACK's order).
    v : numpy.ndarray
        n x k, column i a unit eigenvector of w[i] (with ``return_eigenvectors``).
    info : dict
        With ``return_info``.

    Raises
    ------
    scipy.sparse.linalg.ArpackNoConvergence
        Not converged after ``maxiter`` passes; its ``eigenvalues`` and ``eigenvectors`` are the pairs that did.
    """
    n, k, which, b, ncv, maxiter, tol = _check(A, k, which, ncv, maxiter, tol, block_size)
    if options.get("compute") is False:
        raise ValueError("eigsh runs one plan per product with dense algebra on the driver between them: it has "
                         "no single plan (compute=False); plan its products with numpywren.matmul instead")
    options.pop("compute", None)
    opts = jobs.run_options(executor, **options)
    if opts.run.pop("resume", False):
        raise ValueError("resume=True is not supported by eigsh (rerun instead)")
    rng = np.random.default_rng(seed)
    start = _start_block(v0, n, b, rng, _work(A.dtype))
    jobs.check_complete(A)
    if check_finite:
        jobs.check_finite_values([A], opts.executor)
    prefix = protocol.scratch_key(protocol.new_id("eigsh"), "krylov")
    try:
        product = _Product(A, prefix, dict(executor=opts.executor, **opts.run))
        solver = BlockKrylov(product, n, k, which, b, ncv, A.dtype, rng)
        w, x, info = solver.solve(start, maxiter, tol)
    finally:
        A.store.delete_prefix(f"{prefix}/")
    w, x = w.astype(np.finfo(A.dtype).dtype), x.astype(A.dtype)
    result = (w, x) if return_eigenvectors else (w,)
    if return_info:
        result += (info,)
    return result[0] if len(result) == 1 else result


class _Product:
    """``A @ V`` for an in-memory block V: V stored beside A's column tiles, one matmul job, read back."""

    def __init__(self, A: BigMatrix, prefix: str, run: dict):
        self.A, self.prefix, self.run, self.passes = A, prefix, run, 0

    def __call__(self, V: np.ndarray) -> np.ndarray:
        A, i = self.A, self.passes
        self.passes += 1
        Vm = BigMatrix.from_numpy(np.ascontiguousarray(V, dtype=A.dtype), (A.tile_shape[1], V.shape[1]), A.store,
                                  f"{self.prefix}/v{i}")
        try:
            Y = gemm.matmul(A, Vm, f"{self.prefix}/w{i}", **self.run)
            try:
                return Y.to_numpy().astype(_work(A.dtype))
            finally:
                Y.delete()
        finally:
            Vm.delete()


class BlockKrylov:
    """The restarted block Krylov iteration of the module docstring, over any ``product(V) -> A @ V``.

    The driver's dense algebra is in float64 (complex128 for a complex A); blocks handed to ``product`` are
    first rounded to A's dtype, so that W = A Q holds for the Q kept here and the measured residuals are those
    of the returned vectors.
    """

    def __init__(self, product, n: int, k: int, which: str, block: int, ncv: int, dtype, rng):
        self.product, self.n, self.k, self.which = product, n, k, which
        self.block, self.ncv, self.dtype, self.rng = block, ncv, np.dtype(dtype), rng
        self.work = _work(self.dtype)

    def solve(self, start: np.ndarray, maxiter: int, tol: float):
        """(eigenvalues ascending, vectors, info) of the k wanted pairs; ArpackNoConvergence if not reached."""
        Q = self._orthonormal(start.astype(self.work), np.empty((self.n, 0), self.work))
        W = self.product(Q)
        passes, restarts = 1, 0
        while True:
            while Q.shape[1] < self.ncv and passes < maxiter:
                width = min(self.block, self.ncv - Q.shape[1])
                P = self._next_block(Q, W[:, -self.block:], width)
                Q, W = np.hstack([Q, P]), np.hstack([W, self.product(P)])
                passes += 1
            theta, X, AX, norm = self._ritz(Q, W)  # the best Ritz pairs first, block_size of them
            residuals = np.linalg.norm(AX[:, :self.k] - X[:, :self.k] * theta[:self.k], axis=0)
            bound = tol * norm
            done = residuals <= bound
            log.info("eigsh: %d passes, %d restarts, %d of %d pairs converged, largest residual %.3e (bound %.3e)",
                     passes, restarts, done.sum(), self.k, residuals.max(), bound)
            if done.all() or passes >= maxiter:
                break
            Q, W = X, AX  # thick restart: the best Ritz vectors, whose products are known
            restarts += 1
        up = np.argsort(theta[:self.k])
        w, x, residuals, done = theta[up], X[:, up], residuals[up], done[up]
        info = {"residuals": residuals, "tolerance": bound, "norm_estimate": norm, "passes": passes,
                "restarts": restarts}
        if not done.all():
            from scipy.sparse.linalg import ArpackNoConvergence

            error = ArpackNoConvergence(
                f"eigsh: {int((~done).sum())} of {self.k} eigenpairs ({self.which}) not converged after {passes} "
                f"passes over A: largest residual ||Ax - wx|| = {residuals.max():.3e} > tol * ||A||_2 = "
                f"{bound:.3e} (raise maxiter, ncv or block_size, or tol)",
                w[done].astype(np.finfo(self.dtype).dtype), x[:, done].astype(self.dtype))
            error.info = info
            raise error
        return w, x, info

    def _ritz(self, Q, W):
        """The ``block_size`` best Ritz values (``which``), their vectors X = Q y, products A X = W y, and the
        estimate of ||A||_2 (at least every |Ritz value|)."""
        H = _h(Q) @ W
        theta, Y = np.linalg.eigh((H + _h(H)) / 2)
        key = {"LA": -theta, "SA": theta, "LM": -np.abs(theta)}[self.which]
        best = np.argsort(key, kind="stable")[:self.block]
        norm = max(np.abs(theta).max(), np.finfo(np.float64).tiny)
        return theta[best], Q @ Y[:, best], W @ Y[:, best], norm

    def _next_block(self, Q, last, width: int) -> np.ndarray:
        """``width`` orthonormal columns spanning the dominant part of ``last`` orthogonal to Q (random columns
        where that part is exactly exhausted: an invariant subspace was found)."""
        P = last - Q @ (_h(Q) @ last)
        P -= Q @ (_h(Q) @ P)
        U, s, _ = np.linalg.svd(P, full_matrices=False)
        rank = int(np.sum(s[:width] > np.finfo(np.float64).eps * np.linalg.norm(last)))
        return self._orthonormal(np.hstack([U[:, :rank], self.rng.standard_normal((self.n, width - rank))]), Q)

    def _orthonormal(self, B: np.ndarray, Q: np.ndarray) -> np.ndarray:
        """B's columns made orthonormal and orthogonal to Q (Gram-Schmidt twice, then QR; a column that
        depends on the others is replaced by a random one), rounded to A's dtype (what the workers multiply)."""
        for _ in range(4):
            C = B - Q @ (_h(Q) @ B)
            C -= Q @ (_h(Q) @ C)
            C, R = np.linalg.qr(C)
            lost = np.abs(np.diag(R)) <= 1e-8 * np.linalg.norm(B, axis=0)
            if not lost.any():
                break
            B = B.copy()
            B[:, lost] = self.rng.standard_normal((self.n, int(lost.sum())))
        C -= Q @ (_h(Q) @ C)
        C, _ = np.linalg.qr(C)
        return C.astype(self.dtype).astype(self.work)


def _work(dtype) -> np.dtype:
    """The driver's dtype for A's: float64, or complex128 for a complex A."""
    return np.dtype(np.complex128 if np.dtype(dtype).kind == "c" else np.float64)


def _h(M: np.ndarray) -> np.ndarray:
    """M's conjugate transpose (its transpose, without a copy, for real M)."""
    return M.conj().T if np.iscomplexobj(M) else M.T


def _start_block(v0, n: int, b: int, rng, dtype=np.float64) -> np.ndarray:
    block = rng.standard_normal((n, b)).astype(dtype)
    if v0 is None:
        return block
    if np.iscomplexobj(v0) and np.dtype(dtype).kind != "c":
        raise ValueError("eigsh: v0 is complex but A is real")
    v = np.asarray(v0, dtype=dtype)
    v = v[:, None] if v.ndim == 1 else v
    if v.ndim != 2 or v.shape[0] != n or v.shape[1] > b:
        raise ValueError(f"eigsh: v0 must have shape ({n},) or ({n}, m) with m <= block_size={b}, got "
                         f"{np.shape(v0)}")
    if not np.isfinite(v).all() or np.linalg.matrix_rank(v) < v.shape[1]:
        raise ValueError("eigsh: v0 must be finite with linearly independent columns")
    block[:, :v.shape[1]] = v
    return block


def _int(value, name: str, low: int, high: int) -> int:
    try:
        number = operator.index(value)
    except TypeError:
        number = None
    if number is None or isinstance(value, bool) or not low <= number <= high:
        raise ValueError(f"eigsh: {name} must be an int in [{low}, {high}], got {value!r}")
    return number


def _check(A, k, which, ncv, maxiter, tol, block_size):
    if not isinstance(A, BigMatrix):
        raise TypeError(f"eigsh takes a BigMatrix, got {type(A).__name__} (store it with BigMatrix.from_numpy)")
    n, m = A.shape
    if n != m:
        raise ValueError(f"eigsh: A must be square, got shape {A.shape}")
    if not np.issubdtype(A.dtype, np.inexact):
        raise TypeError(f"eigsh: A must hold float32, float64, complex64 or complex128 values, got {A.dtype}")
    if n < 2:
        raise ValueError(f"eigsh: A is {n}x{n}; k < n leaves no eigenpair to find (use numpywren.eigh)")
    k = _int(k, "k", 1, n - 1)
    if not isinstance(which, str) or which.upper() not in WHICH:
        hint = " (shift-invert is not supported: use numpywren.eigh)" if str(which).upper() in ("SM", "BE") else ""
        raise ValueError(f"eigsh: which must be one of {WHICH}, got {which!r}{hint}")
    b = _int(block_size, "block_size", k, n) if block_size is not None else min(n, max(2 * k, 8))
    ncv = _int(ncv, "ncv", k + 1, n) if ncv is not None else min(n, max(4 * b, 20))
    if ncv < min(b + 1, n):
        raise ValueError(f"eigsh: ncv={ncv} must exceed block_size={b} (the basis grows by blocks)")
    maxiter = _int(maxiter, "maxiter", 1, 2**31) if maxiter is not None else 100
    try:
        tol = float(tol)
    except (TypeError, ValueError):
        raise ValueError(f"eigsh: tol must be a number >= 0, got {tol!r}") from None
    if not tol >= 0 or not np.isfinite(tol):
        raise ValueError(f"eigsh: tol must be a finite number >= 0, got {tol!r}")
    if tol == 0:
        tol = ROUNDOFF_UNITS * np.sqrt(n) * np.finfo(A.dtype).eps
    return n, k, which.upper(), b, ncv, maxiter, tol
