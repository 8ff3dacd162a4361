"""Truncated SVD of a large tiled matrix by a randomized range finder (Halko, Martinsson & Tropp 2011).

Like ``dask.array.linalg.svd_compressed``: Y = A @ Omega for a random
``n x (k + oversamples)`` Omega, optionally ``n_power_iter`` power iterations
(Y = A @ (A^T @ Y), re-orthonormalized by TSQR in between, for spectra that
decay slowly), Q = orth(Y) by TSQR, then the small B = Q^T A is factored in
memory and U = Q @ U_B. Every product is a distributed ``numpywren.matmul``;
only ``(k + oversamples) x n`` matrices are held on the driver.
"""
from __future__ import annotations

import operator

import numpy as np

from numpywren import gemm, protocol
from numpywren.api import get_executor
from numpywren.matrix import BigMatrix
from numpywren.decomp_qr import qr


def svd_compressed(A: BigMatrix, k: int, n_power_iter: int = 0, n_oversamples: int = 10, seed=None,
                   executor=None, *, out: "BigMatrix | str | None" = None, **options):
    """Approximate top-``k`` SVD of A: ``(U, s, Vt)`` with U a BigMatrix (m x k, A's row tiles, at ``out``),
    s (k,) and Vt (k x n) numpy arrays, s in descending order.

    U stays in the store because it has as many rows as A; s and Vt are small. A complex A gives complex U
    and Vt (``Vt`` is V^H) and real s, as numpy's svd; its test matrix stays real Gaussian.
    ``seed`` makes the random test matrix reproducible. Run options
    (``retries``, ``backoff``, ``lease_seconds``, ``progress``) go to every job.

    Parameters
    ----------
    A : BigMatrix
        The matrix.
    k : int
        Number of singular triplets, at most min(A.shape).
    n_power_iter : int, default 0
        Power iterations (sharper for slowly decaying spectra).
    n_oversamples : int, default 10
        Extra random columns beyond k.
    seed : int or numpy.random.Generator, optional
        Seed of the random test matrix.
    executor : Executor, optional
        Where the tasks run; default :func:`numpywren.get_executor`.
    out : BigMatrix or str, optional
        Key of Q (or U); default a new key.
    **options
        Run options: ``retries``, ``backoff``, ``lease_seconds``, ``progress``.

    Returns
    -------
    U : BigMatrix
        m x k, A's row tiles.
    s : numpy.ndarray
        k singular values, descending.
    Vt : numpy.ndarray
        k x n.

    Raises
    ------
    ValueError
        k larger than min(A.shape).
    """
    if not isinstance(A, BigMatrix):
        raise TypeError(f"svd_compressed takes a BigMatrix, got {type(A).__name__}")
    m, n = A.shape
    k = _positive_int(k, "k")
    if k > min(m, n):
        raise ValueError(f"svd_compressed: k={k} exceeds min(A.shape)={min(m, n)}")
    n_power_iter = _positive_int(n_power_iter, "n_power_iter", minimum=0)
    if options.get("compute") is False:
        raise ValueError("svd_compressed runs several dependent plans with an in-memory SVD between them: it "
                         "has no single plan (compute=False); plan its products with numpywren.matmul instead")
    options.pop("compute", None)
    width = min(k + _positive_int(n_oversamples, "n_oversamples", minimum=0), n, m)
    executor = get_executor(executor)
    store = A.store
    prefix = protocol.scratch_key(protocol.new_id("svd"), "rangefinder")
    run = dict(executor=executor, **options)
    try:
        omega = np.random.default_rng(seed).standard_normal((n, width)).astype(A.dtype)
        Omega = BigMatrix.from_numpy(omega, (A.tile_shape[1], width), store, f"{prefix}/omega")
        Y = gemm.matmul(A, Omega, f"{prefix}/Y0", **run)
        for it in range(n_power_iter):
            Q, _ = qr(Y, out=f"{prefix}/Q{it}", **run)
            Z = gemm.matmul(_adjoint(A), Q, f"{prefix}/Z{it}", **run)
            Qz, _ = qr(Z, out=f"{prefix}/Qz{it}", **run)
            Y = gemm.matmul(A, Qz, f"{prefix}/Y{it + 1}", **run)
        Q, _ = qr(Y, out=f"{prefix}/Q", **run)
        b = gemm.matmul(_adjoint(Q), A, f"{prefix}/B", **run).to_numpy()
        u_b, s, vt = np.linalg.svd(b, full_matrices=False)
        Ub = BigMatrix.from_numpy(np.ascontiguousarray(u_b[:, :k]), (width, k), store, f"{prefix}/Ub")
        U = gemm.matmul(Q, Ub, out, **run)
    finally:
        store.delete_prefix(f"{prefix}/")
    return U, s[:k], vt[:k]


def _adjoint(M: BigMatrix) -> BigMatrix:
    """M^H as a view (M^T for real M)."""
    return M.H if M.dtype.kind == "c" else M.T


def _positive_int(value, name: str, minimum: int = 1) -> int:
    try:
        number = operator.index(value)
    except TypeError:
        number = None
    if number is None or isinstance(value, bool) or number < minimum:
        raise ValueError(f"svd_compressed: {name} must be an int >= {minimum}, got {value!r}")
    return number
