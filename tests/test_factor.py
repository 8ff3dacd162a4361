"""Cholesky, triangular solves, cho_solve, solve and exact kernel ridge regression, against scipy/numpy/sklearn."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

import numpywren
from blocks import cholesky as bc
from numpywren import BigMatrix, LocalExecutor

EPS = {np.float32: np.finfo(np.float32).eps, np.float64: np.finfo(np.float64).eps}


def spd(n, seed=0, dtype=np.float64):
    """A well-conditioned symmetric positive definite matrix."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, n + 7))
    return (x @ x.T / n + np.eye(n)).astype(dtype)


def rel_err(got, want):
    return np.linalg.norm(got - want) / np.linalg.norm(want)


def tol(dtype, n):
    """Relative error bound of a backward-stable factorization or solve of a well-conditioned matrix."""
    return 50 * n * EPS[np.dtype(dtype).type]


def tiles_written(store, M_key):
    return {k.rsplit("/", 1)[1] for k in store.list(f"{M_key}/tiles/")}


# -- tile kernels --------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tile_kernels_match_numpy(dtype):
    rng = np.random.default_rng(1)
    a = spd(37, 1, dtype)
    a.setflags(write=False)   # tiles arrive as read-only maps
    panel = (0.1 * rng.standard_normal((37, 20))).astype(dtype)
    l_diag = bc.cholesky_diagonal(a, [panel[:, :10], panel[:, 10:]], dtype)
    s64 = a.astype(np.float64) - panel.astype(np.float64) @ panel.T.astype(np.float64)
    assert rel_err(l_diag, np.linalg.cholesky(s64)) < tol(dtype, 37) and l_diag.dtype == dtype
    b = rng.standard_normal((23, 37)).astype(dtype)
    l_ik, l_jk = rng.standard_normal((23, 5)).astype(dtype), rng.standard_normal((37, 5)).astype(dtype)
    l = np.linalg.cholesky(a.astype(np.float64)).astype(dtype)
    got = bc.cholesky_panel(b, [(l_ik, l_jk)], l, dtype)
    want = (b - l_ik @ l_jk.T).astype(np.float64) @ np.linalg.inv(l.astype(np.float64)).T
    assert rel_err(got, want) < tol(dtype, 37) and got.dtype == dtype
    # the early update of the lookahead: lower triangle of a diagonal tile, all of a panel tile
    early = bc.cholesky_update(a, [panel], True, dtype)
    assert rel_err(np.tril(early), np.tril(s64)) < tol(dtype, 37)
    early = bc.cholesky_update(b, [(l_ik, l_jk)], False, dtype)
    assert rel_err(early, b.astype(np.float64) - l_ik.astype(np.float64) @ l_jk.T) < tol(dtype, 37)


def test_potrf_names_the_failing_minor():
    a = np.eye(5)
    a[3, 3] = -1
    with pytest.raises(np.linalg.LinAlgError, match="order 4"):
        bc.potrf_lower(a.copy())


# -- cholesky ------------------------------------------------------------------------------------
@pytest.mark.parametrize("n,t", [(64, 16), (70, 16), (9, 16)])   # square grid, ragged edge, one tile
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("lower", [True, False])
def test_cholesky_matches_scipy(local_executor, n, t, dtype, lower):
    a = spd(n, n, dtype)
    A = BigMatrix.from_numpy(a, t, local_executor.store)
    C = numpywren.cholesky(A, lower=lower, executor=local_executor, progress=False)
    got = C.to_numpy()
    assert got.dtype == dtype
    assert rel_err(got, scipy.linalg.cholesky(a, lower=lower)) < tol(dtype, n)
    assert np.all(np.triu(got, 1) == 0) if lower else np.all(np.tril(got, -1) == 0)
    prod = got @ got.T if lower else got.T @ got
    assert rel_err(prod.astype(np.float64), a.astype(np.float64)) < tol(dtype, n)


@pytest.mark.parametrize("cond", [1e8, 1e12])
def test_cholesky_backward_error_is_scipys_on_ill_conditioned_matrices(local_executor, cond):
    """||A - L L^T|| / ||A|| within a small factor of scipy's at condition numbers 1e8 and 1e12 (the panel solves
    are triangular solves on the tiles as read: no inverse, whatever the BLAS)."""
    n = 96
    rng = np.random.default_rng(int(np.log10(cond)))
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    a = (q * np.logspace(0, -np.log10(cond), n)) @ q.T
    a = (a + a.T) / 2
    L = numpywren.cholesky(BigMatrix.from_numpy(a, 32, local_executor.store), executor=local_executor,
                           progress=False).to_numpy()
    ref = scipy.linalg.cholesky(a, lower=True)
    backward, backward_ref = (np.linalg.norm(a - x @ x.T) / np.linalg.norm(a) for x in (L, ref))
    assert backward < 10 * max(backward_ref, n * EPS[np.float64])


def test_cholesky_reads_only_its_triangle(local_executor):
    """Like LAPACK: garbage in the other triangle of a full-stored A is never read."""
    a = spd(48, 3)
    junk = a.copy()
    junk[np.triu_indices(48, 1)] = np.nan
    A = BigMatrix.from_numpy(junk, (16, 16), local_executor.store)
    L = numpywren.cholesky(A, executor=local_executor, progress=False)
    assert rel_err(L.to_numpy(), np.linalg.cholesky(a)) < tol(np.float64, 48)
    junk = a.copy()
    junk[np.tril_indices(48, -1)] = np.nan
    A = BigMatrix.from_numpy(junk, (16, 16), local_executor.store)
    U = numpywren.cholesky(A, lower=False, executor=local_executor, progress=False)
    assert rel_err(U.to_numpy(), scipy.linalg.cholesky(a)) < tol(np.float64, 48)


def test_cholesky_on_both_stores(executor, store):
    """LocalStore and the moto S3 server; the result is a BigMatrix with the job's report."""
    a = spd(50, 5)
    A = BigMatrix.from_numpy(a, (16, 16), store, "A")
    L = numpywren.cholesky(A, out="L", executor=executor, progress=False)
    assert rel_err(L.to_numpy(), np.linalg.cholesky(a)) < tol(np.float64, 50)
    assert L.key == "L" and L.report.tasks == 16 + 3 and L.report.flops > 50 ** 3 / 3 * 0.9
    assert not [k for k in store.list("jobs/") if "/scratch/" in k or "/leases/" in k]


def test_cholesky_of_symmetric_storage_from_syrk_and_kernel(local_executor):
    """syrk and kernel store only the i >= j tiles: both factor directly, lower and upper."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((60, 80))
    X = BigMatrix.from_numpy(x, (16, 40), local_executor.store)
    S = numpywren.syrk(X, executor=local_executor, progress=False)
    assert S.symmetric
    for lower in (True, False):
        C = numpywren.cholesky(S, lower=lower, executor=local_executor, progress=False)
        assert rel_err(C.to_numpy(), scipy.linalg.cholesky(x @ x.T, lower=lower)) < tol(np.float64, 60)
    from sklearn.metrics.pairwise import rbf_kernel

    K = numpywren.kernel(X, kind="rbf", gamma=0.01, executor=local_executor, progress=False)
    assert K.symmetric
    L = numpywren.cholesky(K, shift=0.5, executor=local_executor, progress=False)
    want = np.linalg.cholesky(rbf_kernel(x, gamma=0.01) + 0.5 * np.eye(60))
    assert rel_err(L.to_numpy(), want) < tol(np.float64, 60)


def test_not_positive_definite_names_the_block_and_is_not_retried(local_executor):
    a = spd(80, 6)
    a[45, 45] = -1.0      # row 45 is in diagonal block (2, 2) of 16-row tiles; leading minor of order 46
    A = BigMatrix.from_numpy(a, (16, 16), local_executor.store)
    with pytest.raises(np.linalg.LinAlgError, match=r"not positive definite: diagonal block \(2, 2\) "
                                                    r"\(rows 32..47\).*order 46") as info:
        numpywren.cholesky(A, out="L", executor=local_executor, progress=False, retries=3)
    assert info.value.attempts == 1   # permanent: never retried
    assert "L2_2" in info.value.task_id
    # nothing past the failing diagonal tile was computed: every later lower tile depends on it
    written = tiles_written(local_executor.store, "L")
    assert not {f"{i}_{j}" for i in range(5) for j in range(2, 5) if i >= j} & written
    # the same through solve (the factor in scratch): LinAlgError, scratch cleaned up
    with pytest.raises(np.linalg.LinAlgError, match=r"diagonal block \(2, 2\)"):
        numpywren.solve(A, np.ones(80), assume_a="pos", lower=True, executor=local_executor, progress=False)
    assert not [k for k in local_executor.store.list("jobs/") if "/scratch/" in k or "/rhs" in k]


def test_bad_inputs_raise_before_any_task(local_executor):
    store = local_executor.store
    R = BigMatrix.from_numpy(np.ones((6, 4)), (2, 2), store)
    with pytest.raises(ValueError, match="must be square"):
        numpywren.cholesky(R, executor=local_executor)
    S = BigMatrix.from_numpy(np.eye(6), (3, 2), store)
    with pytest.raises(ValueError, match="square tiles"):
        numpywren.cholesky(S, executor=local_executor)
    with pytest.raises(TypeError, match="BigMatrix"):
        numpywren.cholesky(np.eye(3), executor=local_executor)
    A = BigMatrix.from_numpy(np.eye(6), (2, 2), store)
    with pytest.raises(ValueError, match="rows"):
        numpywren.solve(A, np.ones(5), executor=local_executor)
    B = BigMatrix.from_numpy(np.ones((6, 3)), (3, 3), store)
    with pytest.raises(ValueError, match="row tiles"):
        numpywren.cho_solve((A, True), B, executor=local_executor)
    with pytest.raises(ValueError, match="not a recognized matrix structure"):
        numpywren.solve(A, np.ones(6), assume_a="banded", executor=local_executor)


def test_plan_without_computing(local_store):
    A = BigMatrix.from_numpy(spd(40), (16, 16), local_store)
    plan = numpywren.cholesky(A, compute=False)
    ops = sorted(t.op for t in plan.dag)
    assert ops.count("potrf") == 3 and ops.count("chol_panel") == 3 and ops.count("zeros") == 3
    assert ops.count("chol_update") == 1 and list(plan.scratch) == ["partial"]   # only L[2, 2] looks ahead
    assert abs(plan.dag.flops - 40 ** 3 / 3) / (40 ** 3 / 3) < 0.2
    assert set(local_store.list("")) == set(local_store.list(A.key + "/"))   # nothing written


# -- triangular solves ---------------------------------------------------------------------------
@pytest.mark.parametrize("lower,trans", [(True, False), (True, True), (False, False), (False, True)])
def test_solve_triangular_many_columns(local_executor, lower, trans):
    rng = np.random.default_rng(7)
    n = 70
    c = scipy.linalg.cholesky(spd(n, 7), lower=lower)
    C = BigMatrix.from_numpy(c, (16, 16), local_executor.store)
    b = rng.standard_normal((n, 45))
    want = scipy.linalg.solve_triangular(c, b, lower=lower, trans=trans)
    got = numpywren.solve_triangular(C, b, lower=lower, trans=trans, executor=local_executor, progress=False)
    assert isinstance(got, np.ndarray) and got.shape == (n, 45)
    assert rel_err(got, want) < tol(np.float64, n)
    B = BigMatrix.from_numpy(b, (16, 20), local_executor.store)   # column tiles 20, 20, 5
    X = numpywren.solve_triangular(C, B, lower=lower, trans=trans, out="X", executor=local_executor,
                                   progress=False)
    assert isinstance(X, BigMatrix) and X.key == "X" and X.tile_shape == (16, 20)
    assert rel_err(X.to_numpy(), want) < tol(np.float64, n)
    # the numpy right-hand side was stored for the job only
    assert not [k for k in local_executor.store.list("jobs/") if "rhs" in k]


def test_singular_triangular_is_named(local_executor):
    t = np.tril(spd(32, 8))
    t[20, 20] = 0.0
    T = BigMatrix.from_numpy(t, (16, 16), local_executor.store)
    with pytest.raises(np.linalg.LinAlgError, match=r"singular triangular matrix: diagonal block \(1, 1\)"):
        numpywren.solve_triangular(T, np.ones(32), executor=local_executor, progress=False)


@pytest.mark.parametrize("lower", [True, False])
def test_cho_solve_and_solve_numpy_and_bigmatrix(local_executor, lower):
    rng = np.random.default_rng(9)
    n = 66
    a = spd(n, 9)
    A = BigMatrix.from_numpy(a, (16, 16), local_executor.store)
    b = rng.standard_normal((n, 33))
    want = np.linalg.solve(a, b)
    C = numpywren.cholesky(A, lower=lower, executor=local_executor, progress=False)
    got = numpywren.cho_solve((C, lower), b, executor=local_executor, progress=False)
    assert rel_err(got, want) < tol(np.float64, n)
    got1 = numpywren.cho_solve((C, lower), b[:, 0], executor=local_executor, progress=False)
    assert got1.shape == (n,) and rel_err(got1, want[:, 0]) < tol(np.float64, n)
    B = BigMatrix.from_numpy(b, (16, 16), local_executor.store)
    X = numpywren.solve(A, B, out="X", executor=local_executor, progress=False)
    assert isinstance(X, BigMatrix) and rel_err(X.to_numpy(), want) < tol(np.float64, n)
    x = numpywren.solve(A, b, executor=local_executor, progress=False)
    assert rel_err(x, want) < tol(np.float64, n)
    assert not [k for k in local_executor.store.list("jobs/") if "/scratch/" in k or "rhs" in k]


def test_solve_float32_and_s3(executor, store):
    a = spd(40, 10, np.float32)
    b = np.random.default_rng(10).standard_normal((40, 3)).astype(np.float32)
    A = BigMatrix.from_numpy(a, (16, 16), store)
    x = numpywren.solve(A, b, executor=executor, progress=False)
    assert x.dtype == np.float32
    assert rel_err(x.astype(np.float64), np.linalg.solve(a.astype(np.float64), b)) < tol(np.float32, 40)


# -- faults and resume ---------------------------------------------------------------------------
def test_worker_crashes_mid_cholesky_exact_result(local_store):
    """A worker dies in a panel task, and another after writing a diagonal tile: retried, exact."""
    a = spd(64, 11)
    A = BigMatrix.from_numpy(a, (16, 16), local_store, "A")
    faults = "crash:task=*/L2_1:attempt=1; crash:task=*/L1_1:attempt=1:at=written"
    with LocalExecutor(workers=2, store=local_store, faults=faults) as ex:
        L = numpywren.cholesky(A, out="L", executor=ex, progress=False, backoff=0.05)
    r = L.report
    assert rel_err(L.to_numpy(), np.linalg.cholesky(a)) < tol(np.float64, 64)
    assert sum("WorkerDiedError" in f[2] for f in r.failures) == 2 and r.retried == 2
    assert r.skipped == 1   # L1_1 was written before its worker died: the retry found it


def test_resume_recomputes_only_missing_tiles(local_executor):
    a = spd(64, 12)
    A = BigMatrix.from_numpy(a, (16, 16), local_executor.store, "A")
    L = numpywren.cholesky(A, out="L", executor=local_executor, progress=False)
    for key in (L.tile_key(3, 1), L.tile_key(3, 3)):
        local_executor.store.delete(key)
    L = numpywren.cholesky(A, out="L", executor=local_executor, progress=False, resume=True)
    # L[3, 1], L[3, 3], and the early update of L[3, 3] (its scratch tile went with the first job)
    assert (L.report.executed, L.report.skipped) == (3, L.report.tasks - 3)
    assert rel_err(L.to_numpy(), np.linalg.cholesky(a)) < tol(np.float64, 64)
    with pytest.raises(ValueError, match="computed by another job"):
        numpywren.cholesky(A, lower=False, out="L", executor=local_executor, progress=False, resume=True)


def test_the_zero_triangle_of_a_factor_is_stored_as_constant_tiles(store, executor):
    a = spd(48, 23)
    A = BigMatrix.from_numpy(a, 16, store, "A")
    L = numpywren.cholesky(A, out="L", executor=executor, progress=False)
    sizes = {ij: len(store.get(L.tile_key(*ij))) for ij in L.block_indices()}
    assert all(sizes[(i, j)] < 1024 < sizes[(j, i)] for i, j in sizes if i < j), sizes
    assert L.report.bytes_written < len(sizes) * 16 * 16 * 8  # less than L itself: zeros cost no bytes
    U = L.T.to_numpy()
    assert not np.triu(L.to_numpy(), 1).any() and not np.tril(U, -1).any()
    assert rel_err(L.to_numpy(), np.linalg.cholesky(a)) < tol(np.float64, 48)


def test_resume_rewrites_a_missing_final_tile_even_when_its_dependents_are_done(local_executor):
    """Only scratch tiles may be skipped because everything that reads them is done: a final tile of L
    that is gone is recomputed (it used to be skipped, and the job then failed its own verification)."""
    a = spd(48, 21)
    A = BigMatrix.from_numpy(a, (16, 16), local_executor.store, "A")
    L = numpywren.cholesky(A, out="L", executor=local_executor, progress=False)
    local_executor.store.delete(L.tile_key(1, 0))   # read by L[1, 1], L[2, 1]: both still there
    L = numpywren.cholesky(A, out="L", executor=local_executor, progress=False, resume=True)
    assert L.report.executed == 1
    assert rel_err(L.to_numpy(), np.linalg.cholesky(a)) < tol(np.float64, 48)


def test_solve_with_a_float32_matrix_and_float64_rhs_factors_in_float64(local_executor):
    """As scipy: the factor is computed in the result's precision (it was float32, off by 3e-4 here)."""
    rng = np.random.default_rng(16)
    q, _ = np.linalg.qr(rng.standard_normal((12, 12)))
    a32 = ((q * np.logspace(0, -5, 12)) @ q.T).astype(np.float32)
    a32 = (a32 + a32.T) / 2
    b = rng.standard_normal(12)
    A = BigMatrix.from_numpy(a32, 4, local_executor.store, "A32")
    x = numpywren.solve(A, b, executor=local_executor, progress=False)
    want = scipy.linalg.solve(a32, b, assume_a="pos")
    assert x.dtype == want.dtype == np.float64
    assert rel_err(x, want) < 1e-9


def test_composed_upper_factor_and_solve_wait_for_the_factor(local_executor):
    """cholesky(lower=False) writes through a view (R.T): a composed solve must still wait for its tiles."""
    a = spd(36, 22)
    b = np.random.default_rng(22).standard_normal((36, 3))
    A = BigMatrix.from_numpy(a, 12, local_executor.store, "A")
    B = BigMatrix.from_numpy(b, (12, 3), local_executor.store, "B")
    factor = numpywren.cholesky(A, lower=False, out="U", compute=False)
    solve = numpywren.solve_triangular(factor.result, B, lower=False, trans=True, out="Y", compute=False)
    plan = numpywren.compose(factor, solve)
    waits = {d for t in plan.dag if t.id.startswith("Y/") for d in t.deps if d.startswith("U/")}
    assert waits, "the solve's tasks do not wait for any task of the factor"
    numpywren.jobs.run(plan, local_executor, progress=False, retries=0)
    want = scipy.linalg.solve_triangular(np.linalg.cholesky(a), b, lower=True)
    assert rel_err(plan.result.to_numpy(), want) < 1e-10


# -- exact kernel ridge regression ---------------------------------------------------------------
def krr_data(n=150, seed=13):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-3, 3, (n, 3))
    y = np.sin(x[:, 0]) + 0.5 * x[:, 1] + 0.1 * rng.standard_normal(n)
    return x, y


@pytest.mark.parametrize("kernel,params", [("rbf", {"gamma": 0.5}), ("polynomial", {"degree": 2}),
                                           ("laplacian", {})])
def test_kernel_ridge_matches_sklearn(local_executor, kernel, params):
    from sklearn.kernel_ridge import KernelRidge as SkKernelRidge

    from numpywren.kernels import KernelRidge

    x, y = krr_data()
    train, test = slice(0, 110), slice(110, None)
    ours = KernelRidge(alpha=0.3, kernel=kernel, tile_size=32, **params).fit(x[train], y[train],
                                                                            executor=local_executor)
    ref = SkKernelRidge(alpha=0.3, kernel=kernel, **params).fit(x[train], y[train])
    assert rel_err(ours.dual_coef_, ref.dual_coef_) < 1e-9
    assert rel_err(ours.predict(x[test]), ref.predict(x[test])) < 1e-10
    # the CG solver converges to the same answer; 2-D targets give 2-D predictions
    cg = KernelRidge(alpha=0.3, kernel=kernel, solver="cg", tile_size=32, **params).fit(
        x[train], y[train], executor=local_executor)
    assert rel_err(cg.predict(x[test]), ref.predict(x[test])) < 1e-6
    y2 = np.stack([y, -2 * y], axis=1)
    two = KernelRidge(alpha=0.3, kernel=kernel, tile_size=32, **params).fit(x[train], y2[train],
                                                                           executor=local_executor)
    assert rel_err(two.predict(x[test]), SkKernelRidge(alpha=0.3, kernel=kernel, **params)
                   .fit(x[train], y2[train]).predict(x[test])) < 1e-10


def test_kernel_ridge_bigmatrix_input_and_cleanup(local_executor):
    from sklearn.kernel_ridge import KernelRidge as SkKernelRidge

    from numpywren.kernels import KernelRidge

    x, y = krr_data(90, 14)
    store = local_executor.store
    X = BigMatrix.from_numpy(x[:60], (16, 3), store, "X")
    model = KernelRidge(alpha=1.0, gamma=0.2).fit(X, y[:60], executor=local_executor)
    Z = BigMatrix.from_numpy(x[60:], (16, 3), store, "Z")
    want = SkKernelRidge(alpha=1.0, kernel="rbf", gamma=0.2).fit(x[:60], y[:60]).predict(x[60:])
    assert rel_err(model.predict(Z), want) < 1e-10
    assert rel_err(model.predict(x[60:]), want) < 1e-10
    left = {k.split("/")[0] + "/" + k.split("/")[1] for k in store.list("matrices/")}
    assert not left, left   # K, Kz, coefficients, stored Z: all deleted; X is the user's


def test_kernel_ridge_clone_and_grid_search(local_executor):
    from sklearn.base import clone
    from sklearn.model_selection import GridSearchCV

    from numpywren.kernels import KernelRidge

    model = KernelRidge(alpha=2.0, gamma=0.1, tile_size=40)
    copy = clone(model)
    assert copy.get_params() == model.get_params() and copy is not model
    assert copy.set_params(alpha=0.5).alpha == 0.5
    with pytest.raises(ValueError):
        copy.set_params(bogus=1)
    x, y = krr_data(80, 15)
    search = GridSearchCV(KernelRidge(tile_size=40), {"alpha": [0.1, 10.0]}, cv=2)
    search.fit(x, y, executor=local_executor)
    assert search.best_params_["alpha"] in (0.1, 10.0)
    assert search.score(x, y) > 0.5


def test_kernel_ridge_without_sklearn(local_executor, monkeypatch):
    """Without scikit-learn the estimator keeps its conventions (own get_params/set_params/score)."""
    import pickle

    from numpywren import kernels

    monkeypatch.setitem(__import__("sys").modules, "sklearn.base", None)   # import fails
    Plain = kernels._make_kernel_ridge()
    assert Plain.__mro__[1] is kernels._Params
    model = Plain(alpha=0.5, gamma=0.3, tile_size=25)
    assert model.get_params()["alpha"] == 0.5 and model.set_params(alpha=0.2).alpha == 0.2
    with pytest.raises(ValueError, match="invalid parameter"):
        model.set_params(bogus=1)
    x, y = krr_data(70, 16)
    model.fit(x[:50], y[:50], executor=local_executor)
    k = np.exp(-0.3 * ((x[:50, None] - x[None, :50]) ** 2).sum(-1))
    coef = np.linalg.solve(k + 0.2 * np.eye(50), y[:50])
    kz = np.exp(-0.3 * ((x[50:, None] - x[None, :50]) ** 2).sum(-1))
    assert rel_err(model.predict(x[50:]), kz @ coef) < 1e-10
    from sklearn.metrics import r2_score

    assert abs(model.score(x[50:], y[50:]) - r2_score(y[50:], kz @ coef)) < 1e-10
    assert pickle.loads(pickle.dumps(kernels.KernelRidge(alpha=3.0))).alpha == 3.0
