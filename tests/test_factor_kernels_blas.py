"""The factorization tile kernels (blocks.cholesky, blocks.lu) on every BLAS ``blocks.blas`` can load here:
numpy/scipy's wrappers (the fallback), scipy's bundled OpenBLAS through the ctypes binding, and the layer's MKL
library when the mkl-static wheel is cached. Each kernel is checked against numpy/scipy on C-ordered, read-only
tiles (as tiles arrive from the store), float64 and float32, and the libraries must agree with each other.
"""
from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from blocks import blas
from blocks import cholesky as bc
from blocks import lu as bl
from tests.test_blas import _scipy_openblas, mkl_path  # noqa: F401 - mkl_path is a fixture

DTYPES = [(np.float64, 1e-12), (np.float32, 2e-4)]


@pytest.fixture(params=["numpy", "scipy-openblas", "mkl"])
def library(request, monkeypatch):
    """Select the BLAS the kernels use (``$NUMPYWREN_BLAS_LIB``); returns its description."""
    path = {"numpy": "numpy", "scipy-openblas": _scipy_openblas()}.get(request.param)
    if request.param == "mkl":
        path = request.getfixturevalue("mkl_path")
    if path is None:
        pytest.skip("this scipy wheel bundles no libscipy_openblas*.so")
    monkeypatch.setenv(blas.ENV, path)
    return blas.describe()


def _tile(shape, dtype, seed):
    x = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    x.setflags(write=False)   # tiles arrive as read-only maps
    return x


def _spd(n, dtype, seed=0):
    x = np.random.default_rng(seed).standard_normal((n, n))
    a = (x @ x.T + n * np.eye(n)).astype(dtype)
    a.setflags(write=False)
    return a


def _rel(got, want):
    want = np.asarray(want, np.float64)
    return np.linalg.norm(np.asarray(got, np.float64) - want) / np.linalg.norm(want)


@pytest.mark.parametrize("dtype,tol", DTYPES)
def test_cholesky_kernels(library, dtype, tol):
    a = _spd(37, dtype)
    panel = 0.1 * _tile((37, 20), dtype, 1)
    l_diag = bc.cholesky_diagonal(a, [panel[:, :10], panel[:, 10:]], dtype)
    s64 = a.astype(np.float64) - panel.astype(np.float64) @ panel.T.astype(np.float64)
    assert l_diag.dtype == dtype and not np.triu(l_diag, 1).any()
    assert _rel(l_diag, np.linalg.cholesky(s64)) < tol
    b, l_ik, l_jk = _tile((23, 37), dtype, 2), _tile((23, 5), dtype, 3), _tile((37, 5), dtype, 4)
    got = bc.cholesky_panel(b, [(l_ik, l_jk)], l_diag, dtype)
    want = scipy.linalg.solve_triangular(l_diag.astype(np.float64), (b.astype(np.float64) - l_ik @ l_jk.T.astype(
        np.float64)).T, lower=True).T
    assert got.dtype == dtype and _rel(got, want) < tol * 10
    x_k, t_ik = _tile((37, 3), dtype, 5), _tile((37, 37), dtype, 6)
    rhs = _tile((37, 3), dtype, 7)
    got = bc.triangular_block(rhs, [(t_ik, x_k)], l_diag, True, dtype)
    want = scipy.linalg.solve_triangular(l_diag.astype(np.float64), rhs.astype(np.float64) - t_ik.astype(
        np.float64) @ x_k, lower=True)
    assert _rel(got, want) < tol * 10


def test_cholesky_kernel_errors(library):
    a = np.eye(5)
    a[3, 3] = -1
    with pytest.raises(np.linalg.LinAlgError, match="order 4"):
        bc.potrf_lower(a)
    singular = np.tril(np.ones((4, 4)))
    singular[2, 2] = 0
    with pytest.raises(np.linalg.LinAlgError, match="singular matrix"):
        bc.triangular_block(np.ones((4, 2)), [], singular, True, np.float64)


@pytest.mark.parametrize("dtype,tol", DTYPES)
def test_lu_kernels(library, dtype, tol):
    rows = _tile((60, 16), dtype, 8)
    order, lu, info = bl.panel_pivots(rows)
    want_lu, want_piv = scipy.linalg.lu_factor(rows.astype(np.float64), check_finite=False)
    want_order = np.arange(60)
    for r, q in enumerate(want_piv):
        want_order[[r, q]] = want_order[[q, r]]
    assert info == 0 and np.array_equal(order, want_order[:16])   # partial pivoting's rows, in its order
    assert _rel(lu, want_lu[:16]) < tol * 10
    perm, factored, info = bl.panel_factor(np.array(rows, order="F"))
    assert info == 0 and np.array_equal(perm, want_order)
    low = np.tril(factored.astype(np.float64), -1) + np.eye(60, 16)   # L (unit) of all 60 rows, U on top
    assert _rel(low @ np.triu(factored[:16]).astype(np.float64), rows[perm].astype(np.float64)) < tol * 10
    acc, a, b = np.array(_tile((20, 12), dtype, 9)), _tile((20, 16), dtype, 10), _tile((16, 12), dtype, 11)
    want = acc.astype(np.float64) - a.astype(np.float64) @ b
    assert _rel(bl.subtract_products(acc, [(a, b)]), want) < tol


def test_libraries_agree(monkeypatch):
    """The same Cholesky tile through every library loadable here: equal up to rounding."""
    a = _spd(64, np.float64, seed=5)
    results = {}
    for choice in ("numpy", _scipy_openblas()):
        if choice is not None:
            monkeypatch.setenv(blas.ENV, choice)
            results[blas.describe()] = bc.cholesky_diagonal(a, [], np.float64)
    values = list(results.values())
    assert len(values) >= 1 and all(_rel(v, values[0]) < 1e-14 for v in values[1:])


def test_mkl_by_default_leaves_getrf_to_openblas(mkl_path, monkeypatch):
    """The per-kernel choice: with MKL found by default, getrf (LU's tall panels, slower on MKL) runs on
    scipy's LAPACK, bit for bit scipy's LU, while the other routines run on MKL; ``lib=`` still selects MKL's."""
    monkeypatch.setenv(blas.ENV, mkl_path)
    mkl = blas.library()
    assert mkl.is_mkl and blas._default("getrf") is None and blas._default("potrf") is mkl
    assert "getrf: numpy" in blas.describe()
    panel = np.asfortranarray(np.random.default_rng(3).standard_normal((96, 24)))
    lu, ipiv, info = blas.getrf(panel.copy(order="F"))
    want_lu, want_piv = scipy.linalg.lu_factor(panel, check_finite=False)
    assert info == 0 and np.array_equal(lu, want_lu) and np.array_equal(ipiv, want_piv)
    lu_mkl, ipiv_mkl, _ = blas.getrf(panel.copy(order="F"), lib=mkl)
    assert np.array_equal(ipiv_mkl, want_piv) and _rel(lu_mkl, want_lu) < 1e-13


def test_openblas_library_runs_getrf_itself(monkeypatch):
    """The per-kernel choice is MKL's only: another library found by default keeps every routine."""
    path = _scipy_openblas()
    if path is None:
        pytest.skip("this scipy wheel bundles no libscipy_openblas*.so")
    monkeypatch.setenv(blas.ENV, path)
    assert not blas.library().is_mkl and blas._default("getrf") is blas.library()
    assert "getrf" not in blas.describe()
