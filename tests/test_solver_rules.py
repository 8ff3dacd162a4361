"""numpy's rules for the existing solvers (issue 27, item 4): an unconverged CG says so, lstsq's rcond, empty
right-hand sides and NaN as numpy has them, 1 x 1 systems."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import numpywren
from numpywren import BigMatrix
from numpywren.executors.inline import InlineExecutor
from numpywren.kernels import ConvergenceWarning, KernelRidge, ridge_solve


@pytest.fixture
def ex(local_store):
    executor = InlineExecutor(2, local_store)
    yield executor
    executor.shutdown()


def test_unconverged_cg_warns_and_reports_n_iter(ex):
    """The issue's case, smaller: gamma 0.05, alpha 1e-6 is far from converged after a few steps."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((96, 5))
    y = np.sin(x[:, 0]) + 0.1 * rng.standard_normal(96)
    with pytest.warns(ConvergenceWarning, match="did not converge in 3 steps"):
        model = KernelRidge(alpha=1e-6, gamma=0.05, solver="cg", max_iter=3, tile_size=32).fit(x, y, executor=ex)
    assert np.array_equal(model.n_iter_, [3])
    # a well-posed one converges silently, in fewer steps than allowed
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = KernelRidge(alpha=10.0, gamma=0.05, solver="cg", max_iter=60, tol=1e-8, tile_size=32).fit(
            x, np.stack([y, 2 * y], axis=1), executor=ex)
    assert model.n_iter_.shape == (2,) and 0 < model.n_iter_.max() < 60
    K = numpywren.kernel(BigMatrix.from_numpy(x, (32, 5), ex.store), None, "rbf", 0.05, executor=ex)
    with pytest.warns(ConvergenceWarning):
        coef, n_iter = ridge_solve(K, y, alpha=1e-6, steps=2, executor=ex, return_n_iter=True)
    assert n_iter == 2 and coef.shape == (96,)
    assert KernelRidge(alpha=1.0, gamma=0.05, tile_size=32).fit(x, y, executor=ex).n_iter_ is None


def test_float32_lstsq_rank_follows_numpys_rcond(ex):
    """s_min / s_max = 9e-5 with 1000 rows: float32 eps x 1000 = 1.2e-4 called it rank deficient; numpy does not."""
    rng = np.random.default_rng(1)
    m, n = 1000, 8
    u, _ = np.linalg.qr(rng.standard_normal((m, n)))
    v, _ = np.linalg.qr(rng.standard_normal((n, n)))
    a = ((u * np.geomspace(1, 9e-5, n)) @ v.T).astype(np.float32)
    b = rng.standard_normal(m).astype(np.float32)
    x0, _, rank0, s0 = np.linalg.lstsq(a, b, rcond=None)
    x, _, rank, s = numpywren.lstsq(BigMatrix.from_numpy(a, (250, n), ex.store), b, executor=ex)
    assert rank == rank0 == n and x.dtype == x0.dtype == np.float32
    assert np.linalg.norm(x - x0) / np.linalg.norm(x0) < 1e-2     # cond 1.1e4 in float32
    assert np.allclose(s, s0, rtol=1e-3)


def test_lstsq_empty_and_nan_right_hand_sides_as_numpy(ex):
    rng = np.random.default_rng(2)
    a = rng.standard_normal((40, 6))
    A = BigMatrix.from_numpy(a, (10, 6), ex.store)
    empty = np.zeros((40, 0))
    x, residuals, rank, s = numpywren.lstsq(A, empty, executor=ex)
    x0, residuals0, rank0, s0 = np.linalg.lstsq(a, empty, rcond=None)
    assert x.shape == x0.shape == (6, 0) and residuals.shape == residuals0.shape and rank == rank0 == 6
    assert np.allclose(s, s0, rtol=1e-12)
    b = rng.standard_normal((40, 2))
    b[3, 1] = np.nan
    x, residuals, _, _ = numpywren.lstsq(A, b, executor=ex)
    x0, residuals0, _, _ = np.linalg.lstsq(a, b, rcond=None)
    assert np.isnan(x[:, 1]).all() and np.isnan(x0[:, 1]).all()
    assert np.allclose(x[:, 0], x0[:, 0], rtol=1e-12)


def test_one_by_one_systems(ex):
    A = BigMatrix.from_numpy(np.array([[4.0]]), (1, 1), ex.store)
    assert np.allclose(numpywren.solve(A, np.array([2.0]), executor=ex), [0.5])
    assert np.allclose(numpywren.solve(A, np.array([2.0]), assume_a="pos", executor=ex), [0.5])
    x, residuals, rank, s = numpywren.lstsq(A, np.array([2.0]), executor=ex)
    assert np.allclose(x, [0.5]) and rank == 1 and np.allclose(s, [4.0]) and residuals.shape == (0,)
    assert numpywren.det(A, executor=ex) == pytest.approx(4.0)
    assert numpywren.inv(A, executor=ex).to_numpy()[0, 0] == pytest.approx(0.25)
    Z = BigMatrix.from_numpy(np.array([[0.0]]), (1, 1), ex.store)
    with pytest.raises(np.linalg.LinAlgError, match="Singular matrix"):
        numpywren.solve(Z, np.array([1.0]), executor=ex)
    assert numpywren.slogdet(Z, executor=ex) == (0.0, -np.inf)
