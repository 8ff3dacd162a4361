"""Kernel matrices K(X, Y) on tiles, checked against float64 numpy references and scikit-learn."""
import numpy as np
import pytest
from sklearn.metrics.pairwise import pairwise_kernels

import numpywren
from blocks import kernels as bk
from numpywren import BigMatrix
from numpywren.kernels import ridge_solve

KINDS = ["rbf", "linear", "polynomial", "laplacian"]


def reference(kind, x, y, gamma=None, degree=3, coef0=1):
    """The definitions, in float64 numpy, with scikit-learn's defaults (gamma = 1 / n_features)."""
    x, y = x.astype(np.float64), y.astype(np.float64)
    gamma = 1.0 / x.shape[1] if gamma is None else gamma
    if kind == "rbf":
        return np.exp(-gamma * ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1))
    if kind == "laplacian":
        return np.exp(-gamma * np.abs(x[:, None, :] - y[None, :, :]).sum(-1))
    if kind == "polynomial":
        return (gamma * x @ y.T + coef0) ** degree
    return x @ y.T


def rel_err(got, want):
    return np.linalg.norm(got - want) / np.linalg.norm(want)


def data(n, d, seed, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal((n, d)).astype(dtype)


PARAMS = {"rbf": {"gamma": 0.05}, "linear": {}, "polynomial": {"gamma": 0.1, "degree": 2, "coef0": 0.5},
          "laplacian": {"gamma": None}}


@pytest.mark.parametrize("kind", KINDS)
def test_rectangular_ragged_against_references(executor, kind):
    """n x m with ragged tiles in every dimension, on a local and an S3 (moto) store."""
    x, y = data(130, 37, 0), data(90, 37, 1)
    X = BigMatrix.from_numpy(x, (32, 16), executor.store)     # 5 x 3 blocks, last ones ragged
    Y = BigMatrix.from_numpy(y, (40, 16), executor.store)
    K = numpywren.kernel(X, Y, kind=kind, executor=executor, **PARAMS[kind])
    assert K.shape == (130, 90) and K.tile_shape == (32, 40) and K.dtype == np.float64 and not K.symmetric
    k = K.to_numpy()
    assert rel_err(k, reference(kind, x, y, **PARAMS[kind])) < 1e-13
    assert rel_err(k, pairwise_kernels(x, y, metric=kind, **PARAMS[kind])) < 1e-13
    norm_tasks = 5 + 3 if kind == "rbf" else 0                 # once per row block of X and of Y
    assert K.report.tasks == K.report.executed == 5 * 3 + norm_tasks
    assert not [key for key in executor.store.list("jobs/") if "/scratch/" in key]  # removed on success


@pytest.mark.parametrize("kind", KINDS)
def test_symmetric_is_identical_to_the_full_computation(local_executor, kind):
    x = data(150, 20, 2)
    X = BigMatrix.from_numpy(x, (40, 8), local_executor.store)
    S = numpywren.kernel(X, kind=kind, executor=local_executor, progress=False)
    F = numpywren.kernel(X, X, kind=kind, executor=local_executor, progress=False)
    g = 4
    assert S.symmetric and S.shape == (150, 150)
    assert S.report.tasks == g * (g + 1) // 2 + (g if kind == "rbf" else 0)  # norms of X once, not twice
    stored = [key.rsplit("/", 1)[1].split("_") for key in local_executor.store.list(f"{S.key}/tiles/")]
    assert sorted(stored) == sorted([str(i), str(j)] for i in range(g) for j in range(i + 1))
    for i in range(g):
        for j in range(i + 1):  # the computed triangle: the very same numbers
            np.testing.assert_array_equal(S.get_block(i, j), F.get_block(i, j))
    s, f = S.to_numpy(), F.to_numpy()
    np.testing.assert_allclose(s, f, rtol=1e-13, atol=1e-15)   # the mirrored triangle, to rounding
    np.testing.assert_array_equal(s, s.T)
    assert rel_err(s, pairwise_kernels(x, metric=kind)) < 1e-13
    if kind == "rbf":  # distance of a point to itself is exactly 0, as in scikit-learn
        np.testing.assert_array_equal(np.diag(s), 1.0)


@pytest.mark.parametrize("kind", KINDS)
def test_float32_against_a_float64_reference(local_executor, kind):
    x, y = data(100, 64, 3, np.float32), data(70, 64, 4, np.float32)
    X = BigMatrix.from_numpy(x, (48, 32), local_executor.store)
    Y = BigMatrix.from_numpy(y, (48, 32), local_executor.store)
    K = numpywren.kernel(X, Y, kind=kind, executor=local_executor, progress=False)
    assert K.dtype == np.float32
    want = reference(kind, x, y)
    assert rel_err(K.to_numpy().astype(np.float64), want) < 1e-5
    assert np.max(np.abs(K.to_numpy() - want)) < 1e-5 * np.max(np.abs(want)) * 10


def test_numpy_path_agrees_with_numexpr_path(local_executor):
    x = data(90, 30, 5)
    X = BigMatrix.from_numpy(x, (32, 16), local_executor.store)
    a = numpywren.kernel(X, executor=local_executor, progress=False).to_numpy()
    b = numpywren.kernel(X, executor=local_executor, progress=False, use_numexpr=False).to_numpy()
    np.testing.assert_allclose(a, b, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind,params", [("rbf", {"gamma": 0.02}), ("polynomial", {"degree": 3}),
                                         ("polynomial", {"degree": 2.5, "coef0": 2.0, "gamma": 0.01})])
def test_tile_paths_agree(kind, params, dtype):
    x, y = data(200, 50, 6, dtype), data(150, 50, 7, dtype)
    fn = bk.rbf if kind == "rbf" else bk.polynomial
    fast, plain = fn(x, y, use_numexpr=True, **params), fn(x, y, use_numexpr=False, **params)
    assert fast.dtype == plain.dtype == dtype
    tol = 1e-13 if dtype == np.float64 else 2e-6
    assert rel_err(fast, plain) < tol
    assert rel_err(fast.astype(np.float64), reference(kind, x, y, **params)) < tol * 10


def test_rbf_uses_the_norms_it_is_given_and_clamps_rounding():
    x = data(60, 8, 8)
    sq = bk.row_norms_sq(x)
    k = bk.rbf(x, x, gamma=0.3, x_sq=sq, y_sq=sq)
    shifted = bk.rbf(x, x, gamma=0.3, x_sq=sq + 1.0, y_sq=sq)   # norms are taken, not recomputed
    np.testing.assert_allclose(shifted, k * np.exp(-0.3), rtol=1e-13)
    # Far from the origin, |x|^2 + |y|^2 - 2 x.y of equal points rounds to tiny negatives.
    far = 1e4 + data(50, 8, 9)
    far = np.vstack([far, far])
    sq = bk.row_norms_sq(far)
    raw = sq[:, None] + sq[None, :] - 2 * far @ far.T
    assert (raw < 0).any()                          # the data does provoke rounding below zero
    for use_numexpr in (True, False):
        k = bk.rbf(far, far, gamma=0.5, use_numexpr=use_numexpr)
        assert np.isfinite(k).all() and k.max() <= 1.0
        np.testing.assert_allclose(np.diag(k[:50, 50:]), 1.0, atol=1e-6)


@pytest.mark.parametrize("chunk", [bk.L1_CHUNK_ELEMENTS, 100])  # 100: chunks of rows and of columns
def test_laplacian_tile_matches_a_direct_sum_across_column_blocks(monkeypatch, chunk):
    monkeypatch.setattr(bk, "L1_CHUNK_ELEMENTS", chunk)
    x, y = data(300, 40, 10), data(37, 40, 11)
    pairs = [(x[:, k:k + 16], y[:, k:k + 16]) for k in range(0, 40, 16)]
    want = np.abs(x[:, None, :] - y[None, :, :]).sum(-1)
    np.testing.assert_allclose(bk.l1_distances(pairs), want, rtol=1e-13)


def test_bad_input_is_caught_before_any_task(local_executor):
    store = local_executor.store
    X = BigMatrix.from_numpy(np.ones((10, 6)), (4, 3), store)
    before = set(store.list("jobs/"))
    cases = [
        (dict(Y=BigMatrix.from_numpy(np.ones((5, 7)), (4, 3), store)), ValueError, "X has 6 features .* Y has 7"),
        (dict(Y=BigMatrix.from_numpy(np.ones((5, 6)), (4, 2), store)), ValueError, "tile their columns alike"),
        (dict(Y=np.ones((5, 6))), TypeError, "Y must be a BigMatrix, got ndarray"),
        (dict(kind="sigmoid"), ValueError, "unknown kernel kind 'sigmoid'"),
        (dict(gamma=-1.0), ValueError, "gamma must be a finite number >= 0 for rbf, got -1.0"),
        (dict(kind="laplacian", gamma=0), ValueError, "gamma must be a finite number > 0 for laplacian"),
        (dict(kind="poly", degree=0.5), ValueError, "degree must be a finite number >= 1, got 0.5"),
        (dict(kind="poly", coef0=float("nan")), ValueError, "coef0 must be a finite number"),
        (dict(Y=BigMatrix.create((5, 6), (4, 3), "float64", store)), ValueError, "missing 4 of its tiles"),
    ]
    for kwargs, error, message in cases:
        with pytest.raises(error, match=message):
            numpywren.kernel(X, executor=local_executor, **kwargs)
    assert set(store.list("jobs/")) == before  # nothing was submitted


def test_resume_computes_only_missing_tiles(local_executor):
    x = data(64, 10, 12)
    X = BigMatrix.from_numpy(x, (16, 10), local_executor.store)
    K = numpywren.kernel(X, kind="laplacian", out="K", executor=local_executor, progress=False)
    local_executor.store.delete(K.tile_key(3, 1))
    K = numpywren.kernel(X, kind="laplacian", out="K", executor=local_executor, progress=False, resume=True)
    assert (K.report.skipped, K.report.executed) == (9, 1)
    assert rel_err(K.to_numpy(), reference("laplacian", x, x)) < 1e-13


def test_kernel_ridge_by_conjugate_gradients(local_executor):
    """The README example at toy size: K by numpywren, then (K + alpha I) c = y with distributed K @ p."""
    rng = np.random.default_rng(13)
    x = rng.uniform(-3, 3, (120, 2))
    y = np.sin(x[:, 0]) + 0.1 * rng.standard_normal(120)
    X = BigMatrix.from_numpy(x, (32, 2), local_executor.store)
    K = numpywren.kernel(X, kind="rbf", gamma=0.5, executor=local_executor, progress=False)
    coef = ridge_solve(K, y, alpha=1.0, steps=60, tol=1e-10, executor=local_executor)
    want = np.linalg.solve(reference("rbf", x, x, gamma=0.5) + np.eye(120), y)
    assert rel_err(coef, want) < 1e-8
    assert not list(local_executor.store.list("jobs/ridge-"))  # its vectors were removed


def test_float32_rbf_keeps_its_precision_far_from_the_origin(local_executor):
    """|x|^2 + |y|^2 - 2 x.y cancels in float32 for uncentered data; like scikit-learn, it is done in float64."""
    x = (100 + 0.05 * np.random.default_rng(20).standard_normal((150, 64))).astype(np.float32)
    X = BigMatrix.from_numpy(x, (64, 64), local_executor.store)
    for use_numexpr in (True, False):
        K = numpywren.kernel(X, gamma=1.0, executor=local_executor, progress=False, use_numexpr=use_numexpr)
        assert K.dtype == np.float32
        assert rel_err(K.to_numpy().astype(np.float64), reference("rbf", x, x, gamma=1.0)) < 1e-6


@pytest.mark.parametrize("use_numexpr", [True, False])
def test_rbf_non_finite_rows_give_nan_not_ones(local_executor, use_numexpr):
    """A NaN row's kernel values are NaN (not exp(0) = 1); an inf row's are NaN or, where the
    distance is infinite, 0; every other entry is exact. check_finite=True refuses such input."""
    x = data(6, 3, 21)
    x[1, 0], x[2, 0] = np.nan, np.inf
    X = BigMatrix.from_numpy(x, 3, local_executor.store)
    for Y in (X, None):  # full and symmetric (diagonal tiles)
        k = numpywren.kernel(X, Y, gamma=0.5, executor=local_executor, progress=False,
                             use_numexpr=use_numexpr).to_numpy()
        with np.errstate(invalid="ignore"):
            want = reference("rbf", x, x, gamma=0.5)
        assert np.isnan(k[1]).all() and np.isnan(k[:, 1]).all()
        assert np.all(np.isnan(k[2]) | (k[2] == want[2])) and np.isnan(k[2, 2])
        good = [0, 3, 4, 5]
        assert rel_err(k[np.ix_(good, good)], want[np.ix_(good, good)]) < 1e-13
    with pytest.raises(ValueError, match="holds 2 NaN or inf values"):
        numpywren.kernel(X, executor=local_executor, progress=False, check_finite=True)


def test_out_may_not_be_an_input(local_executor):
    x = data(40, 8, 22)
    X = BigMatrix.from_numpy(x, (16, 8), local_executor.store, key="X")
    Y = BigMatrix.from_numpy(x[:20], (16, 8), local_executor.store, key="Y")
    for out in ("X", "Y", "/Y/"):
        with pytest.raises(ValueError, match="is also an input"):
            numpywren.kernel(X, Y, out=out, executor=local_executor)
    np.testing.assert_array_equal(BigMatrix.open(local_executor.store, "X").to_numpy(), x)  # untouched


def test_resume_refuses_another_computation_and_reruns_missing_norms(local_executor):
    x = data(100, 5, 23)
    X = BigMatrix.from_numpy(x, (50, 5), local_executor.store)
    K = numpywren.kernel(X, out="K", executor=local_executor, progress=False)
    with pytest.raises(ValueError, match="was computed by another job"):
        numpywren.kernel(X, gamma=5.0, out="K", executor=local_executor, progress=False, resume=True)
    local_executor.store.delete(K.tile_key(1, 0))
    K = numpywren.kernel(X, out="K", executor=local_executor, progress=False, resume=True)
    # the missing tile needs both row blocks' norms again (deleted after the first run); the two
    # diagonal tiles are kept
    assert (K.report.skipped, K.report.executed) == (2, 3)
    assert rel_err(K.to_numpy(), reference("rbf", x, x)) < 1e-13
    K = numpywren.kernel(X, gamma=5.0, out="K", executor=local_executor, progress=False)  # no resume: recompute
    assert rel_err(K.to_numpy(), reference("rbf", x, x, gamma=5.0)) < 1e-13
