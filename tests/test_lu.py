"""LU with partial pivoting (numpywren.decomp_lu) and solve for general matrices, against numpy/scipy.

Accuracy bounds are the textbook ones for a backward-stable factorization: ||P A - L U||_F / ||A||_F
within 10 N eps, and residuals within 10x scipy's on the same input. That |L| <= 1 everywhere shows
the pivots were chosen over the whole panel, across tile rows (tile-local pivoting breaks it).
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.linalg

import numpywren
from blocks import blas
from blocks.lu import copy_into, panel_pivots
from numpywren import BigMatrix
from numpywren.executors.inline import InlineExecutor
from numpywren.decomp_lu import LinAlgWarning, SlogdetResult

EPS = {np.float32: np.finfo(np.float32).eps, np.float64: np.finfo(np.float64).eps}


@pytest.fixture
def ex(local_store):
    executor = InlineExecutor(2, local_store)
    yield executor
    executor.shutdown()


def store(ex, a, t, key=None):
    return BigMatrix.from_numpy(a, (t, t), ex.store, key)


# -- matrices that need pivots from another tile row ----------------------------------------------
def random(n, seed=0):
    return np.random.default_rng(seed).standard_normal((n, n))


def diagonally_dominant(n, seed=1):
    a = random(n, seed)
    return a + np.diag(np.abs(a).sum(axis=1) + 1)


def zero_diagonal_tiles(n, t=8, seed=2):
    """Every diagonal tile is zero: no pivot can come from the tile row being factored."""
    a = random(n, seed)
    for k in range(0, n, t):
        a[k:k + t, k:k + t] = 0
    return a


def tiny_diagonal_tiles(n, t=8, seed=3):
    """Diagonal tiles of size 1e-13: tile-local pivoting divides by them (growth ~1e13); partial pivoting does not."""
    a = zero_diagonal_tiles(n, t, seed)
    for k in range(0, n, t):
        a[k:k + t, k:k + t] = 1e-13 * random(min(t, n - k), seed + k)
    return a


def permutation_like(n, seed=4):
    """A scaled permutation (rows reversed) plus small noise: each pivot is in another tile row."""
    rng = np.random.default_rng(seed)
    return np.eye(n)[::-1] * rng.uniform(1, 2, n) + 1e-6 * rng.standard_normal((n, n))


def conditioned(n, cond, seed=5):
    rng = np.random.default_rng(seed)
    q1, _ = np.linalg.qr(rng.standard_normal((n, n)))
    q2, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return (q1 * np.logspace(0, -np.log10(cond), n)) @ q2


CASES = {"random": random, "diagonally_dominant": diagonally_dominant, "zero_diagonal_tiles": zero_diagonal_tiles,
         "tiny_diagonal_tiles": tiny_diagonal_tiles, "permutation_like": permutation_like,
         "cond_1e10": lambda n: conditioned(n, 1e10)}


def backward_error(a, P, L, U):
    a = a.astype(np.float64)
    return np.linalg.norm(P.T @ a - L.astype(np.float64) @ U.astype(np.float64)) / np.linalg.norm(a)


def residual(a, x, b):
    a, x, b = (np.asarray(v, np.float64) for v in (a, x, b))
    return np.linalg.norm(a @ x - b) / (np.linalg.norm(a) * np.linalg.norm(x) + np.linalg.norm(b))


@pytest.mark.parametrize("case", sorted(CASES))
def test_lu_is_backward_stable_with_pivots_across_tile_rows(ex, case):
    n, t = 37, 8                                    # 5 x 5 tiles, the last one ragged (5 rows)
    a = CASES[case](n)
    A = store(ex, a, t)
    with warnings.catch_warnings():
        warnings.simplefilter("error")              # no singular warning on any of these
        P, L, U = numpywren.lu(A, executor=ex)
    P, L, U = P.to_numpy(), L.to_numpy(), U.to_numpy()
    assert backward_error(a, P, L, U) < 10 * n * EPS[np.float64]
    assert np.abs(L).max() <= 1 + 1e-12 and np.allclose(np.diag(L), 1) and np.allclose(L, np.tril(L))
    assert np.allclose(U, np.triu(U)) and sorted(np.argmax(P, axis=0)) == list(range(n))
    if case != "permutation_like":                  # (pivots tie there only up to noise)
        p, l, u = scipy.linalg.lu(a)
        assert np.array_equal(P, p)                 # the same pivots as LAPACK's partial pivoting


@pytest.mark.parametrize("case", sorted(CASES))
def test_lu_factor_and_solve_residuals_within_10x_scipy(ex, case):
    n, t = 37, 8
    a = CASES[case](n)
    b = np.random.default_rng(7).standard_normal((n, 3))
    A = store(ex, a, t)
    LU, piv = numpywren.lu_factor(A, executor=ex)
    lu0, piv0 = scipy.linalg.lu_factor(a)
    assert piv.dtype == piv0.dtype == np.int32 and LU.dtype == np.float64
    floor = EPS[np.float64]
    want = residual(a, scipy.linalg.lu_solve((lu0, piv0), b), b)
    assert residual(a, numpywren.lu_solve((LU, piv), b, executor=ex), b) <= 10 * max(want, floor)
    want_t = residual(a.T, scipy.linalg.lu_solve((lu0, piv0), b, trans=1), b)
    assert residual(a.T, numpywren.lu_solve((LU, piv), b, trans=1, executor=ex), b) <= 10 * max(want_t, floor)
    want_s = residual(a, scipy.linalg.solve(a, b), b)
    assert residual(a, numpywren.solve(A, b, executor=ex), b) <= 10 * max(want_s, floor)


def test_solve_a_general_matrix_by_default(ex):
    """The issue's case, smaller: 2000 I + noise, non-symmetric. solve used Cholesky of one triangle (1.5e-2)."""
    rng = np.random.default_rng(0)
    n = 200
    a = 2000 * np.eye(n) + rng.standard_normal((n, n)) * 100
    b = rng.standard_normal(n)
    A = store(ex, a, 50)
    x = numpywren.solve(A, b, executor=ex)
    assert x.shape == (n,) and np.linalg.norm(a @ x - b) / np.linalg.norm(b) < 1e-13
    with pytest.raises(ValueError, match="not symmetric"):
        numpywren.solve(A, b, assume_a="pos", executor=ex)
    # transposed=True solves A^T x = b; "lower triangular" substitutes
    xt = numpywren.solve(A, b, transposed=True, executor=ex)
    assert np.linalg.norm(a.T @ xt - b) / np.linalg.norm(b) < 1e-13
    xl = numpywren.solve(A, b, assume_a="lower triangular", executor=ex)
    assert np.allclose(xl, scipy.linalg.solve_triangular(a, b, lower=True), rtol=1e-12)


def test_solve_symmetric_reads_the_triangle_scipy_reads(ex):
    rng = np.random.default_rng(1)
    n = 30
    s = random(n, 1)
    s = s + s.T + n * np.eye(n)                 # symmetric, indefinite-ish, well conditioned
    garbage = s.copy()
    garbage[np.triu_indices(n, 1)] = rng.standard_normal(n * (n - 1) // 2)   # upper triangle is noise
    b = rng.standard_normal((n, 2))
    A = store(ex, garbage, 8)
    want = scipy.linalg.solve(garbage, b, assume_a="sym", lower=True)
    assert np.allclose(numpywren.solve(A, b, assume_a="sym", lower=True, executor=ex), want, rtol=1e-10, atol=1e-12)
    garbage_low = s.copy()
    garbage_low[np.tril_indices(n, -1)] = 0.0   # only the upper triangle (scipy's default lower=False)
    U = store(ex, garbage_low, 8)
    assert np.allclose(numpywren.solve(U, b, assume_a="sym", executor=ex),
                       scipy.linalg.solve(garbage_low, b, assume_a="sym"), rtol=1e-10)


def test_solve_pos_reads_the_triangle_lower_names(ex):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((30, 40))
    spd = x @ x.T / 40 + np.eye(30)
    b = rng.standard_normal(30)
    A = store(ex, spd, 8)
    want = scipy.linalg.solve(spd, b, assume_a="pos")
    for lower in (False, True):             # scipy's default reads the upper triangle
        assert np.allclose(numpywren.solve(A, b, assume_a="pos", lower=lower, executor=ex), want, rtol=1e-11)


def test_solve_on_a_matrix_stored_as_one_triangle(ex):
    """syrk writes the lower triangle only: assume_a=None treats it as symmetric (LU of the full matrix)."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((24, 30))
    X = BigMatrix.from_numpy(x, (8, 8), ex.store)
    K = numpywren.syrk(X, executor=ex)
    assert K.symmetric
    k = x @ x.T
    b = rng.standard_normal(24)
    for kind in (None, "pos", "sym", "gen"):
        got = numpywren.solve(K, b, assume_a=kind, executor=ex)
        assert residual(k, got, b) < 100 * EPS[np.float64], kind


def test_singular_matrices_as_numpy_and_scipy(ex):
    n, t = 29, 8
    a = random(n, 8)
    a[:, 13] = 0.0                                 # exactly singular: U[13, 13] = 0, in diagonal block (1, 1)
    A = store(ex, a, t)
    with pytest.warns(LinAlgWarning, match="Diagonal number 14 is exactly zero"):
        scipy.linalg.lu_factor(a)
    with pytest.warns(LinAlgWarning, match="Diagonal number 14 is exactly zero"):
        LU, piv = numpywren.lu_factor(A, executor=ex)
    with pytest.warns(LinAlgWarning, match="exactly zero"):
        P, L, U = numpywren.lu(A, executor=ex)
    assert backward_error(a, P.to_numpy(), L.to_numpy(), U.to_numpy()) < 10 * n * EPS[np.float64]
    with pytest.raises(np.linalg.LinAlgError, match=r"Singular matrix.*diagonal block \(1, 1\)"):
        numpywren.solve(A, np.ones(n), executor=ex)
    with pytest.raises(np.linalg.LinAlgError, match=r"Singular matrix.*diagonal block \(1, 1\)"):
        numpywren.inv(A, executor=ex)
    with pytest.raises(np.linalg.LinAlgError, match=r"Singular matrix.*diagonal block \(1, 1\)"):
        numpywren.lu_solve((LU, piv), np.ones(n), executor=ex)
    assert numpywren.det(A, executor=ex) == np.linalg.det(a) == 0.0
    sign, logdet = numpywren.slogdet(A, executor=ex)
    assert (sign, logdet) == tuple(np.linalg.slogdet(a)) == (0.0, -np.inf)
    assert not [k for k in ex.store.list("jobs/") if "/scratch/" in k]


def _rcond_warnings(call) -> list[float]:
    """The rcond values of the ill-conditioning LinAlgWarnings ``call()`` emits (scipy's and numpywren's)."""
    import re

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call()
    found = [re.search(r"rcond\s*=\s*([0-9.]+(?:e[-+]?[0-9]+)?)", str(w.message)) for w in caught
             if issubclass(w.category, LinAlgWarning) and "ill-conditioned" in str(w.message)]
    return [float(m.group(1)) for m in found if m]


@pytest.mark.parametrize("case", ["graded", "rotated", "unit_triangular", "complex", "symmetric", "well"])
def test_ill_conditioned_solve_warns_like_scipy(ex, case):
    """solve warns (LinAlgWarning) exactly when scipy's does, with LAPACK gecon's rcond (the same Hager
    estimate on the same LU, up to rounding). "rotated" (cond 1e17 of a rotated diagonal) and
    "unit_triangular" (diag(U) all 1, cond ~1e19) were missed by the min/max |diag(U)| stand-in it replaces."""
    n, t = 60, 16                                  # 4 x 4 tiles, ragged
    rng = np.random.default_rng(3)
    kwargs = {}
    if case == "graded":      # rows graded to 1e-20 in a shuffled order (row exchanges across tiles)
        a = (np.diag(np.logspace(0, -20, n)) + np.triu(rng.uniform(-0.1, 0.1, (n, n)) * 1e-21, 1))[rng.permutation(n)]
    elif case == "rotated":
        a = conditioned(n, 1e17)
    elif case == "unit_triangular":
        a = (np.eye(n) - np.triu(np.ones((n, n)), 1))[rng.permutation(n)]
    elif case == "complex":
        a = conditioned(n, 1e17) * (1 + 1j)
    elif case == "symmetric":
        q = np.linalg.qr(rng.standard_normal((n, n)))[0]
        a = q @ np.diag(np.logspace(0, -17, n) * (-1) ** np.arange(n)) @ q.T
        a = np.tril(a) + np.triu(rng.standard_normal((n, n)), 1)      # scipy and numpywren read the lower one
        kwargs = {"assume_a": "sym", "lower": True}
    else:
        a = conditioned(n, 1e10)
    b = np.ones(n)
    want = _rcond_warnings(lambda: scipy.linalg.solve(a, b, **kwargs))
    got = _rcond_warnings(lambda: numpywren.solve(store(ex, a, t), b, executor=ex, **kwargs))
    assert len(got) == len(want) == (case != "well")
    if want:
        assert got[0] == pytest.approx(want[0], rel=0.5)     # an estimate of an estimate: same order


def test_float32_is_factored_in_float32(ex):
    n, t = 33, 8
    a = random(n, 9).astype(np.float32)
    A = store(ex, a, t)
    LU, piv = numpywren.lu_factor(A, executor=ex)
    assert LU.dtype == np.float32
    P, L, U = numpywren.lu(A, executor=ex)
    assert L.dtype == U.dtype == np.float32
    assert backward_error(a, P.to_numpy(), L.to_numpy(), U.to_numpy()) < 10 * n * EPS[np.float32]
    b = np.random.default_rng(9).standard_normal(n).astype(np.float32)
    x = numpywren.solve(A, b, executor=ex)
    assert x.dtype == np.float32
    assert residual(a, x, b) <= 10 * max(residual(a, scipy.linalg.solve(a, b), b), EPS[np.float32])
    d = numpywren.det(A, executor=ex)
    assert d.dtype == np.float32 and abs(d - np.linalg.det(a.astype(np.float64))) < 1e-4 * abs(d)


@pytest.mark.parametrize("n,t", [(1, 1), (1, 4), (9, 4), (16, 16)])
def test_small_and_ragged(ex, n, t):
    a = random(n, 10) + 3 * np.eye(n)
    A = store(ex, a, t)
    b = np.random.default_rng(10).standard_normal(n)
    assert np.allclose(numpywren.solve(A, b, executor=ex), np.linalg.solve(a, b), rtol=1e-12)
    assert np.allclose(numpywren.inv(A, executor=ex).to_numpy(), np.linalg.inv(a), rtol=1e-12)
    assert np.isclose(numpywren.det(A, executor=ex), np.linalg.det(a), rtol=1e-12)
    lu_, piv = numpywren.lu_factor(A, executor=ex)
    lu0, piv0 = scipy.linalg.lu_factor(a)
    assert np.allclose(lu_.to_numpy(), lu0, rtol=1e-12, atol=1e-14) and np.array_equal(piv, piv0)


def test_right_hand_sides_many_none_bigmatrix(ex):
    n, t = 26, 8
    a = random(n, 11)
    A = store(ex, a, t)
    b = np.random.default_rng(11).standard_normal((n, 40))
    assert residual(a, numpywren.solve(A, b, executor=ex), b) < 100 * EPS[np.float64]
    B = BigMatrix.from_numpy(b, (8, 16), ex.store)
    X = numpywren.solve(A, B, out="X", executor=ex)
    assert isinstance(X, BigMatrix) and residual(a, X.to_numpy(), b) < 100 * EPS[np.float64]
    for empty in (np.zeros((n, 0)), np.zeros((n, 0), np.float32)):
        want = np.linalg.solve(a, empty)
        got = numpywren.solve(A, empty, executor=ex)
        assert got.shape == want.shape == (n, 0) and got.dtype == np.float64
        assert numpywren.lu_solve(numpywren.lu_factor(A, executor=ex), empty, executor=ex).shape == (n, 0)


def test_nan_and_inf_refused_or_propagated(ex):
    n = 20
    a = random(n, 12)
    a[3, 17] = np.nan
    A = store(ex, a, 8)
    with pytest.raises(ValueError, match="NaN or inf"):
        numpywren.lu_factor(A, executor=ex)
    with pytest.raises(ValueError, match="NaN or inf"):
        numpywren.solve(A, np.ones(n), check_finite=True, executor=ex)
    x = numpywren.solve(A, np.ones(n), executor=ex)        # check_finite=False: propagates, as numpy does
    assert np.isnan(x).any()
    a[3, 17] = np.inf
    with pytest.raises(ValueError, match="NaN or inf"):
        numpywren.lu(store(ex, a, 8), executor=ex)


def test_inv_det_slogdet_match_numpy(ex):
    n, t = 35, 8
    a = random(n, 13)
    A = store(ex, a, t)
    assert np.allclose(numpywren.inv(A, executor=ex).to_numpy(), np.linalg.inv(a), rtol=1e-10, atol=1e-12)
    res = numpywren.slogdet(A, executor=ex)
    want = np.linalg.slogdet(a)
    assert isinstance(res, SlogdetResult) and res.sign == want.sign
    assert abs(res.logabsdet - want.logabsdet) < 1e-12 * abs(want.logabsdet) + 1e-12
    assert np.isclose(numpywren.det(A, executor=ex), np.linalg.det(a), rtol=1e-11)
    swapped = a[[1, 0] + list(range(2, n))]                # one row exchange flips the sign
    assert numpywren.slogdet(store(ex, swapped, t), executor=ex).sign == -want.sign


def test_lu_p_indices_and_permute_l_as_scipy(ex):
    n, t = 21, 8
    a = random(n, 14)
    A = store(ex, a, t)
    p, L, U = numpywren.lu(A, p_indices=True, executor=ex)
    p0, l0, u0 = scipy.linalg.lu(a, p_indices=True)
    assert p.dtype == p0.dtype and np.array_equal(p, p0) and np.allclose(L.to_numpy()[p] @ U.to_numpy(), a, rtol=1e-12, atol=1e-13)
    PL, U2 = numpywren.lu(A, permute_l=True, executor=ex)
    pl0, u20 = scipy.linalg.lu(a, permute_l=True)
    assert np.allclose(PL.to_numpy(), pl0, rtol=1e-12, atol=1e-14) and np.allclose(U2.to_numpy(), u20, atol=1e-13)


def test_public_names():
    import numpywren.linalg

    assert callable(numpywren.lu) and numpywren.linalg.lu_factor is numpywren.lu_factor
    assert numpywren.solve is numpywren.decomp_lu.solve and numpywren.linalg.slogdet is numpywren.slogdet


def test_bad_inputs_are_named_before_any_task(ex):
    A = store(ex, random(12, 15), 4)
    with pytest.raises(ValueError, match="piv must be 12 integers"):
        numpywren.lu_solve((A, np.arange(5)), np.ones(12), executor=ex)
    with pytest.raises(ValueError, match="rows"):
        numpywren.lu_solve((A, np.arange(12)), np.ones(11), executor=ex)
    with pytest.raises(ValueError, match="trans"):
        numpywren.lu_solve((A, np.arange(12)), np.ones(12), trans=3, executor=ex)
    with pytest.raises(ValueError, match="square"):
        numpywren.lu_factor(BigMatrix.from_numpy(np.ones((6, 4)), (2, 2), ex.store), executor=ex)
    with pytest.raises(TypeError, match="^det: the matrix must be a BigMatrix"):
        numpywren.det(np.eye(3), executor=ex)
    with pytest.raises(ValueError, match="^det: the matrix must be square"):
        numpywren.det(BigMatrix.from_numpy(np.ones((6, 4)), (2, 2), ex.store), executor=ex)
    with pytest.raises(ValueError, match="shift"):
        numpywren.solve(A, np.ones(12), assume_a="gen", shift=1.0, executor=ex)


# -- the plan: tasks, and no task holding more than a panel ----------------------------------------
def test_plan_tasks_and_no_task_holds_more_than_a_panel(local_store):
    n, t = 45, 8                                   # 6 x 6 tiles, ragged
    g = 6
    A = BigMatrix.from_numpy(random(n, 16), (t, t), local_store)
    plan = numpywren.lu_factor(A, compute=False)
    ops = [task.op for task in plan.dag]
    count = {op: ops.count(op) for op in set(ops)}
    assert count["lu_panel"] == g and count["lu_diagonal"] == g
    # L[k, k-1] and U[k-1, k] come from panel k (written beside its record, copied into the factor)
    assert count["lu_upper"] == count["lu_gather_lower"] == g * (g - 1) // 2 - (g - 1)
    assert count["lu_split"] == 2 * (g - 1)
    blocks = {t.params["k"]: t.params.get("panel_blocks") for t in plan.dag if t.op == "lu_panel"}
    assert blocks[0] is None and all(blocks[k] == ((plan.scratch["Lnext"], k, 0), (plan.scratch["Unext"], 0, k))
                                     for k in range(1, g))
    assert "lu_lower" not in count   # the panel task writes its multipliers (Lt[:, k]) with its record
    writes = {t.params["k"]: t.params.get("multipliers") for t in plan.dag if t.op == "lu_panel"}
    assert all(writes[k] == (plan.scratch["Lt"], 0, k) for k in range(g - 1)) and writes[g - 1] is None
    # only the early (lookahead) part: the panel task applies the last update to its own rows (no C tiles)
    assert count["lu_update"] == g * (g - 2)
    orders = {t.params["k"]: t.params.get("pivot_order") for t in plan.dag if t.op == "lu_panel"}
    assert all(orders[k] == (plan.scratch["orders"], k, 0) for k in range(g))
    for task in plan.dag:   # the tasks that need only the pivot order read its small tile, not the record
        if task.op in ("lu_update", "lu_gather_lower"):
            assert all(ref[0] is not plan.outputs[0].matrix for ref in numpywren.memory.read_refs(task)), task
    for task in plan.dag:
        held, streamed = _tile_refs(task)
        # gathered tiles come from one tile column (a panel); pairs are streamed two tiles at a time
        assert len({(m.key, m.transposed, j) for m, _, j in held if m.shape == A.shape}) <= 1, task
        assert len([r for r in held if r[0].shape == A.shape]) <= g, task
        assert all(len(pair) == 2 for pair in streamed)
        out = task.output[0]
        assert out.tile_shape[0] * out.tile_shape[1] <= n + 1 + t * t     # one tile, or one panel record
    # critical path: about 4 tasks a panel (update, panel, gather or lower, upper), not the task count
    stats = plan.stats()
    assert stats["critical_path_tasks"] <= 5 * g and stats["tasks"] > 10 * g
    assert set(local_store.list("")) == set(local_store.list(A.key + "/"))   # nothing written


def _tile_refs(task):
    """(tiles a task holds at once, pairs it streams) from its inputs' structure."""
    held, streamed = [], []

    def walk(value, in_pairs=False):
        if isinstance(value, tuple) and len(value) == 3 and isinstance(value[0], BigMatrix):
            held.append(value)
        elif isinstance(value, tuple):
            if value and all(isinstance(v, tuple) and len(v) == 2 and isinstance(v[0], tuple)
                             and len(v[0]) == 3 and isinstance(v[0][0], BigMatrix) for v in value):
                streamed.extend(value)
            else:
                for v in value:
                    walk(v)
    walk(task.inputs)
    return held, streamed


def test_runs_on_worker_processes_and_s3(executor, store):
    n, t = 30, 8
    a = tiny_diagonal_tiles(n)
    A = BigMatrix.from_numpy(a, (t, t), store)
    b = np.random.default_rng(17).standard_normal((n, 2))
    x = numpywren.solve(A, b, executor=executor, progress=False)
    assert residual(a, x, b) <= 10 * max(residual(a, scipy.linalg.solve(a, b), b), EPS[np.float64])
    LU, piv = numpywren.lu_factor(A, executor=executor, progress=False)
    assert np.array_equal(piv, scipy.linalg.lu_factor(a)[1])


# -- kernels and blas ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_getrf_and_panel_pivots_match_lapack(dtype):
    a = np.random.default_rng(18).standard_normal((40, 9)).astype(dtype)
    lu_, ipiv, info = blas.getrf(np.array(a, order="F"))
    want, piv0, info0 = scipy.linalg.lapack.get_lapack_funcs("getrf", dtype=dtype)(a)
    assert info == info0 == 0 and np.array_equal(ipiv, piv0)
    assert np.allclose(lu_, want, rtol=10 * EPS[dtype], atol=10 * EPS[dtype])
    order, diag, _ = panel_pivots(a)
    p, _, _ = scipy.linalg.lu(a.astype(np.float64))
    assert np.array_equal(order, np.argmax(p, axis=0)[:9]) and diag.dtype == dtype


@pytest.mark.parametrize("src_order,dst_order", [("C", "F"), ("F", "C"), ("C", "C"), ("F", "F")])
def test_copy_into_copies_across_layouts_in_blocks(src_order, dst_order):
    """The panel's gather (row-major tiles into getrf's column-major panel) and its scatter back copy every
    element, ragged edges (shapes not a multiple of the block) and a dtype cast included."""
    src = np.asarray(np.random.default_rng(19).standard_normal((203, 77)), order=src_order)
    dst = np.zeros((203, 77), order=dst_order)
    assert copy_into(dst, src, block=16) is dst and np.array_equal(dst, src)
    narrow = np.empty((5, 77), np.float32, order=dst_order)
    assert np.array_equal(copy_into(narrow, src[100:105]), src[100:105].astype(np.float32))
    with pytest.raises(ValueError, match="into"):
        copy_into(np.empty((3, 3)), src[:3, :4])


def test_plan_runs_later_and_gives_lu_and_piv(ex):
    a = random(20, 19)
    plan = numpywren.lu_factor(store(ex, a, 8), compute=False)
    numpywren.run(plan, ex)
    LU, piv = plan.value
    lu0, piv0 = scipy.linalg.lu_factor(a)
    assert np.array_equal(piv, piv0) and np.allclose(LU.to_numpy(), lu0, rtol=1e-12, atol=1e-13)
    assert not [k for k in ex.store.list("") if k.endswith(".records/meta.json")]   # records deleted


def test_every_lu_operation_is_a_plan_that_runs_later(ex):
    """compute=False returns a Plan for lu_solve, lu, slogdet, det and solve too; numpywren.run gives plan.value as
    the immediate call would (lu_solve's plan used to lose its pivot order before it ran; lu/det/slogdet read
    records that were never written, and solve refused)."""
    n, t = 14, 4
    a = zero_diagonal_tiles(n, t, 20)
    b = np.random.default_rng(21).standard_normal((n, 2))
    A = store(ex, a, t)
    lu0, piv0 = scipy.linalg.lu_factor(a)
    LU, piv = numpywren.lu_factor(A, executor=ex)
    plans = {"lu_solve": numpywren.lu_solve((LU, piv), b, executor=ex, compute=False),
             "lu_solve_t": numpywren.lu_solve((LU, piv), b, trans=1, executor=ex, compute=False),
             "lu": numpywren.lu(A, p_indices=True, executor=ex, compute=False),
             "slogdet": numpywren.slogdet(A, executor=ex, compute=False),
             "det": numpywren.det(A, executor=ex, compute=False),
             "solve": numpywren.solve(A, b, executor=ex, compute=False)}
    assert all(isinstance(p, numpywren.Plan) for p in plans.values())
    for p in plans.values():
        numpywren.run(p, ex)
    x, xt = plans["lu_solve"].value, plans["lu_solve_t"].value
    assert residual(a, x, b) <= 10 * max(residual(a, scipy.linalg.lu_solve((lu0, piv0), b), b), EPS[np.float64])
    assert residual(a.T, xt, b) <= 10 * max(residual(a.T, scipy.linalg.solve(a.T, b), b), EPS[np.float64])
    p, L, U = plans["lu"].value
    assert np.array_equal(p, scipy.linalg.lu(a, p_indices=True)[0])
    assert np.allclose(L.to_numpy()[p] @ U.to_numpy(), a, rtol=1e-12, atol=1e-13)
    sign, logdet = plans["slogdet"].value
    sign0, logdet0 = np.linalg.slogdet(a)
    assert sign == sign0 and abs(logdet - logdet0) <= 1e-12 * abs(logdet0)
    assert abs(plans["det"].value - np.linalg.det(a)) <= 1e-12 * abs(np.linalg.det(a))
    assert residual(a, plans["solve"].value, b) <= 10 * max(residual(a, scipy.linalg.solve(a, b), b), EPS[np.float64])
    leftover = [k for k in ex.store.list("") if "/scratch/" in k or k.endswith(".records/meta.json")]
    assert not leftover, leftover[:5]


@pytest.mark.parametrize("assume_a", ["lower triangular", "upper triangular", "pos", "gen"])
def test_no_right_hand_sides_give_the_empty_result_for_every_structure(ex, assume_a):
    """A (n, 0) right-hand side is scipy's empty result whatever the structure (solve_triangular, cho_solve and
    the triangular branches of solve raised 'matrix shape must be positive ... (n, 0)', naming no argument)."""
    n = 10
    m = random(n, 22)
    spd = m @ m.T + n * np.eye(n)
    A = store(ex, spd, 4)
    for empty in (np.zeros((n, 0)), np.zeros((n, 0), np.float32)):
        want = scipy.linalg.solve(np.triu(spd) if assume_a == "upper triangular" else spd, empty, assume_a=assume_a)
        got = numpywren.solve(A, empty, assume_a=assume_a, executor=ex)
        assert got.shape == want.shape == (n, 0) and got.dtype == np.float64
    assert numpywren.solve_triangular(A, np.zeros((n, 0)), lower=True, executor=ex).shape == (n, 0)
    L = numpywren.cholesky(A, lower=True, executor=ex)
    assert numpywren.cho_solve((L, True), np.zeros((n, 0)), executor=ex).shape == (n, 0)


def test_check_finite_of_a_plan_built_with_compute_false_runs_when_it_runs(ex):
    """lu_factor's default check_finite=True refuses NaN; the same call with compute=False, run later, must too
    (it returned a factor full of NaN without a word), and so must a numpy right-hand side's check."""
    a = random(10, 23)
    a[3, 4] = np.nan
    A = store(ex, a, 4)
    for plan in (numpywren.lu_factor(A, executor=ex, compute=False),
                 numpywren.solve(A, np.ones(10), check_finite=True, executor=ex, compute=False)):
        with pytest.raises(ValueError, match=r"NaN or inf.*\(0, 1\): 1"):
            numpywren.run(plan, ex)
    good = store(ex, random(10, 24), 4)
    plan = numpywren.solve(good, np.r_[np.nan, np.ones(9)], check_finite=True, executor=ex, compute=False)
    with pytest.raises(ValueError, match="NaN or inf"):
        numpywren.run(plan, ex)


# -- the call's scratch outside its runs: heartbeat, deleted on success and failure -------------------------
def test_lu_call_scratch_is_kept_by_gc_while_alive_and_removed_after(ex, monkeypatch):
    """The records a solve reads after its run live under jobs/lu-*/ with that owner's heartbeat: a
    ``store gc`` while the call is alive keeps them even when they are old (without the heartbeat it
    deleted them); they and the heartbeat are gone after success and after failure."""
    import os
    import time

    from numpywren import decomp_lu, gc, protocol

    n, t = 20, 8
    a, b = random(n, 30), np.ones(n)
    A = store(ex, a, t)
    seen = {}
    warn = decomp_lu._warn_conditioning
    owners = {}
    call_scratch = decomp_lu._CallScratch

    def remembered(store):
        held = owners["held"] = call_scratch(store)
        return held
    monkeypatch.setattr(decomp_lu, "_CallScratch", remembered)

    def gc_during_the_call(rcond, dtype):   # runs after the job, before the call's scratch is deleted
        owner = owners["held"].owner
        seen["heartbeat"] = ex.store.exists(protocol.heartbeat_key(owner))
        old = time.time() - 7200
        for key in ex.store.list(protocol.owner_prefix(owner)):
            if not key.endswith("/heartbeat"):
                os.utime(ex.store._path(key), (old, old))
        seen["collected"] = gc.collect(ex.store, older_than=3600)
        seen["left"] = list(ex.store.list(protocol.owner_prefix(owner)))
        return warn(rcond, dtype)
    monkeypatch.setattr(decomp_lu, "_warn_conditioning", gc_during_the_call)
    x = numpywren.solve(A, b, executor=ex)
    assert seen["heartbeat"] and not seen["collected"].removed
    assert any("/records/" in k for k in seen["left"]) and any("/rcond/" in k for k in seen["left"])
    assert residual(a, x, b) <= 10 * max(residual(a, scipy.linalg.solve(a, b), b), EPS[np.float64])
    assert not _lu_owned(ex.store), _lu_owned(ex.store)       # success: nothing left
    a[:, 3] = 0.0
    for call in (lambda M: numpywren.solve(M, b, executor=ex),
                 lambda M: numpywren.lu_solve(numpywren.lu_factor(M, executor=ex), b, executor=ex)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LinAlgWarning)
            with pytest.raises(np.linalg.LinAlgError):
                call(store(ex, a, t))
        assert not _lu_owned(ex.store), _lu_owned(ex.store)   # failure: nothing left either


def _lu_owned(store):
    """Objects left under an LU call's owner or a run's scratch (the executor's own session objects aside)."""
    return [k for k in store.list("jobs/") if k.split("/")[1].startswith("lu-") or "/scratch/" in k]


def test_panel_retries_with_its_multipliers(local_store):
    """The panel task writes its multipliers before its record: a worker that dies after the record (the
    retry finds it and skips the task) or a panel that fails before writing anything (the retry rewrites
    them) gives the same factor as scipy's."""
    from numpywren.executors.local import LocalExecutor

    n, t = 40, 8
    a = zero_diagonal_tiles(n, t, 41)
    A = BigMatrix.from_numpy(a, (t, t), local_store)
    spec = "crash:task=*/R1:attempt=1:at=written; error:task=*/R2:attempt=1"
    with LocalExecutor(workers=2, store=local_store, faults=spec) as ex:
        LU, piv = numpywren.lu_factor(A, executor=ex, backoff=0.05)
    report = LU.report
    kinds = sorted(f[2].split("(")[0] for f in report.failures)
    assert kinds == ["InjectedFault", "WorkerDiedError"] and report.skipped == 1
    lu0, piv0 = scipy.linalg.lu_factor(a)
    assert np.array_equal(piv, piv0) and np.allclose(LU.to_numpy(), lu0, rtol=1e-12, atol=1e-13)
