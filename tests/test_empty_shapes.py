"""Empty (0 x n, m x 0, 0 x 0) and edge (1 x 1, 1 x n) shapes: every operation returns what numpy/scipy return
(shapes, dtypes, values), and ``compute=False`` gives a Plan whose value, after ``numpywren.run``, is the same
answer (numpywren.empty_shapes). Checked against numpy and scipy, never against numpywren itself."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

import numpywren
from numpywren import BigMatrix
from numpywren.executors.inline import InlineExecutor

EMPTY = [(0, 0), (0, 3), (3, 0)]
DTYPES = [np.float32, np.float64, np.complex64, np.complex128]


@pytest.fixture
def ex(local_store):
    executor = InlineExecutor(2, local_store)
    yield executor
    executor.shutdown()


def _numpy(value):
    if isinstance(value, BigMatrix):
        return value.to_numpy()
    if isinstance(value, tuple):
        items = [_numpy(v) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else tuple(items)
    return value


def _same(got, want):
    """got (numpywren's, BigMatrix results read back) is numpy's/scipy's ``want``: types, shapes, dtypes, values."""
    got = _numpy(got)
    if isinstance(want, tuple):
        assert isinstance(got, tuple) and len(got) == len(want), (got, want)
        if hasattr(want, "_fields"):
            assert getattr(got, "_fields", None) == want._fields
        for g, w in zip(got, want):
            _same(g, w)
        return
    g, w = np.asarray(got), np.asarray(want)
    assert g.shape == w.shape and g.dtype == w.dtype, (g.shape, g.dtype, w.shape, w.dtype)
    np.testing.assert_array_equal(g, w)


def _both(ex, call, want):
    """``call(compute)`` gives ``want`` now, and as a Plan run later (compute=False)."""
    _same(call(True), want)
    plan = call(False)
    assert isinstance(plan, numpywren.Plan), type(plan)
    numpywren.run(plan, ex)
    _same(plan.value, want)


def _store(ex, a, tile=2):
    return BigMatrix.from_numpy(a, tile, ex.store)


# -- factorizations of empty matrices ---------------------------------------------------------------------------
@pytest.mark.parametrize("shape", EMPTY)
@pytest.mark.parametrize("dtype", DTYPES)
def test_qr_of_empty_matrices_in_every_mode_is_numpys(ex, shape, dtype):
    a = np.zeros(shape, dtype)
    A = _store(ex, a)
    for mode in ("reduced", "complete", "r"):
        _both(ex, lambda c: numpywren.qr(A, mode=mode, executor=ex, compute=c), np.linalg.qr(a, mode=mode))


@pytest.mark.parametrize("shape", EMPTY)
@pytest.mark.parametrize("dtype", DTYPES)
def test_svd_of_empty_matrices_is_numpys(ex, shape, dtype):
    a = np.zeros(shape, dtype)
    A = _store(ex, a)
    for full in (True, False):
        _both(ex, lambda c: numpywren.svd(A, full_matrices=full, executor=ex, compute=c),
              np.linalg.svd(a, full_matrices=full))
    _both(ex, lambda c: numpywren.svd(A, compute_uv=False, executor=ex, compute=c), np.linalg.svd(a, compute_uv=False))
    s = scipy.linalg.svd(a, compute_uv=False)
    assert numpywren.svd(A, compute_uv=False, executor=ex).dtype == s.dtype


@pytest.mark.parametrize("dtype", DTYPES)
def test_square_functions_of_a_zero_by_zero_matrix_are_numpys(ex, dtype):
    a = np.zeros((0, 0), dtype)
    A = _store(ex, a)
    _both(ex, lambda c: numpywren.inv(A, executor=ex, compute=c), np.linalg.inv(a))
    _both(ex, lambda c: numpywren.det(A, executor=ex, compute=c), np.linalg.det(a))   # 1.0: the empty product
    _both(ex, lambda c: numpywren.slogdet(A, executor=ex, compute=c), np.linalg.slogdet(a))
    _both(ex, lambda c: numpywren.eigh(A, executor=ex, compute=c), np.linalg.eigh(a))
    _both(ex, lambda c: numpywren.eigvalsh(A, executor=ex, compute=c), np.linalg.eigvalsh(a))
    _both(ex, lambda c: numpywren.cholesky(A, executor=ex, compute=c), np.linalg.cholesky(a))
    _both(ex, lambda c: numpywren.linalg.solve(A, np.zeros(0, dtype), executor=ex, compute=c),
          np.linalg.solve(a, np.zeros(0, dtype)))
    assert numpywren.det(A, executor=ex) == 1.0


@pytest.mark.parametrize("shape", EMPTY)
@pytest.mark.parametrize("dtype", [np.float64, np.complex64])
def test_lu_factor_and_lu_of_empty_matrices_are_scipys(ex, shape, dtype):
    a = np.zeros(shape, dtype)
    A = _store(ex, a)
    _both(ex, lambda c: numpywren.lu_factor(A, executor=ex, compute=c), scipy.linalg.lu_factor(a))
    _both(ex, lambda c: numpywren.lu(A, executor=ex, compute=c), scipy.linalg.lu(a))
    _both(ex, lambda c: numpywren.lu(A, permute_l=True, executor=ex, compute=c), scipy.linalg.lu(a, permute_l=True))
    p, L, U = numpywren.lu(A, p_indices=True, executor=ex)
    want = scipy.linalg.lu(a, p_indices=True)
    assert p.shape == want[0].shape == (0,) and p.dtype.kind == want[0].dtype.kind == "i"
    _same((L, U), want[1:])


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex128])
def test_lu_solve_of_the_empty_system_is_scipys(ex, dtype):
    """scipy's own test passes the pivots of a 0 x 0 factor as ``np.array([])`` (float64)."""
    LU = _store(ex, np.zeros((0, 0), dtype))
    for b in (np.zeros(0, dtype), np.zeros((0, 0), dtype), np.zeros((0, 2), np.float64)):
        want = scipy.linalg.lu_solve((np.zeros((0, 0), dtype), np.array([])), b)
        _both(ex, lambda c: numpywren.lu_solve((LU, np.array([])), b, executor=ex, compute=c), want)


# -- no right-hand sides: numpy in, numpy out, and a Plan with compute=False --------------------------------------
def test_solves_with_no_right_hand_sides_give_plans_with_compute_false(ex):
    """solve / lu_solve / solve_triangular / cho_solve with an n x 0 numpy right-hand side returned an array for
    compute=False (numpywren.run then failed: IndexError at plan.outputs[0])."""
    n = 5
    a = np.random.default_rng(0).standard_normal((n, n)) + n * np.eye(n)
    spd = a @ a.T
    A, S = _store(ex, a), _store(ex, spd)
    b = np.zeros((n, 0))
    for assume_a in (None, "gen", "pos", "lower triangular"):
        matrix = spd if assume_a == "pos" else np.tril(a) if assume_a == "lower triangular" else a
        M = S if assume_a == "pos" else A
        _both(ex, lambda c: numpywren.solve(M, b, assume_a=assume_a, executor=ex, compute=c),
              scipy.linalg.solve(matrix, b, assume_a=assume_a))
    lu_and_piv = numpywren.lu_factor(A, executor=ex)
    _both(ex, lambda c: numpywren.lu_solve(lu_and_piv, b, executor=ex, compute=c),
          scipy.linalg.lu_solve(scipy.linalg.lu_factor(a), b))
    _both(ex, lambda c: numpywren.solve_triangular(A, b, lower=True, executor=ex, compute=c),
          scipy.linalg.solve_triangular(a, b, lower=True))
    L = numpywren.cholesky(S, lower=True, executor=ex)
    _both(ex, lambda c: numpywren.cho_solve((L, True), b, executor=ex, compute=c),
          scipy.linalg.cho_solve((np.linalg.cholesky(spd), True), b))


def test_a_bigmatrix_right_hand_side_with_no_columns_gives_an_empty_bigmatrix(ex):
    n = 4
    a = np.random.default_rng(1).standard_normal((n, n)) + n * np.eye(n)
    A = _store(ex, a)
    B = _store(ex, np.zeros((n, 0)))
    _both(ex, lambda c: numpywren.solve(A, B, executor=ex, compute=c), np.linalg.solve(a, np.zeros((n, 0))))
    A0, B0 = _store(ex, np.zeros((0, 0))), _store(ex, np.zeros((0, 3)))
    _both(ex, lambda c: numpywren.solve(A0, B0, executor=ex, compute=c), np.linalg.solve(np.zeros((0, 0)),
                                                                                         np.zeros((0, 3))))


@pytest.mark.parametrize("shape", [(0, 3), (3, 0)])
def test_non_square_empty_matrices_raise_numpys_linalg_error(ex, shape):
    """numpy raises LinAlgError (a ValueError, which scipy raises) for a non-square matrix, empty or not."""
    a = np.zeros(shape)
    A = _store(ex, a)
    for fn, ref in ((numpywren.inv, np.linalg.inv), (numpywren.det, np.linalg.det),
                    (numpywren.cholesky, np.linalg.cholesky), (numpywren.eigh, np.linalg.eigh)):
        with pytest.raises(np.linalg.LinAlgError):
            ref(a)
        with pytest.raises(np.linalg.LinAlgError, match="must be square"):
            fn(A, executor=ex)


# -- edge shapes: 1 x 1 and 1 x n ---------------------------------------------------------------------------------
@pytest.mark.parametrize("shape,tile", [((1, 3), 2), ((1, 7), (1, 3)), ((3, 1), 2)])
def test_qr_and_svd_of_one_row_or_column_match_numpy(ex, shape, tile):
    """A 1 x n matrix stored with tile 2 has tiles clipped to 1 x 2: CAQR of one tile row needs no square tiles."""
    a = np.random.default_rng(2).standard_normal(shape)
    A = _store(ex, a, tile)
    for mode in ("reduced", "complete"):
        Q, R = _numpy(numpywren.qr(A, mode=mode, executor=ex))
        q, r = np.linalg.qr(a, mode=mode)
        assert Q.shape == q.shape and R.shape == r.shape
        np.testing.assert_allclose(Q @ R, a, rtol=0, atol=1e-14)
        np.testing.assert_allclose(np.abs(R), np.abs(r), rtol=1e-13, atol=1e-14)
    s = numpywren.svd(A, compute_uv=False, executor=ex)
    np.testing.assert_allclose(s, np.linalg.svd(a, compute_uv=False), rtol=1e-13)


def test_one_by_one_matrices_through_every_factorization(ex):
    a = np.array([[4.0]])
    A = _store(ex, a)
    assert numpywren.inv(A, executor=ex).to_numpy().ravel() == pytest.approx([0.25], rel=1e-15)
    assert numpywren.det(A, executor=ex) == pytest.approx(4.0, rel=1e-15)
    w, V = numpywren.eigh(A, executor=ex)
    assert w == pytest.approx([4.0], rel=1e-15) and abs(V.to_numpy()[0, 0]) == pytest.approx(1.0, rel=1e-15)
    lu, piv = numpywren.lu_factor(A, executor=ex)
    assert lu.to_numpy().ravel() == pytest.approx([4.0]) and piv.tolist() == [0]
    U, s, Vh = numpywren.svd(A, executor=ex)
    assert s == pytest.approx([4.0], rel=1e-15) and abs((U.to_numpy() @ Vh.to_numpy())[0, 0]) == pytest.approx(1.0)


@pytest.mark.parametrize("shape", EMPTY)
def test_lstsq_matmul_and_reductions_of_empty_matrices_are_numpys(ex, shape):
    a = np.zeros(shape)
    A = _store(ex, a)
    b = np.arange(1.0, shape[0] + 1)
    _both(ex, lambda c: numpywren.lstsq(A, b, executor=ex, compute=c), np.linalg.lstsq(a, b))
    _both(ex, lambda c: numpywren.matmul(A.T, A, executor=ex, compute=c), a.T @ a)
    _both(ex, lambda c: numpywren.matmul(A, A.T, executor=ex, compute=c), a @ a.T)
    for kind in ("sum", "norm"):
        call = (lambda c: A.sum(executor=ex, compute=c)) if kind == "sum" else (
            lambda c: numpywren.linalg.norm(A, executor=ex, compute=c))
        _both(ex, call, a.sum() if kind == "sum" else np.linalg.norm(a))
    with pytest.raises(ValueError, match="zero-size array"):
        A.max(executor=ex, compute=False)   # numpy's error, when the call is made


def test_bigmatrix_right_hand_sides_with_no_columns_through_every_solver(ex):
    n = 4
    a = np.random.default_rng(3).standard_normal((n, n))
    spd = a @ a.T + n * np.eye(n)
    S, B = _store(ex, spd), _store(ex, np.zeros((n, 0)))
    want = np.zeros((n, 0))
    _both(ex, lambda c: numpywren.solve_triangular(S, B, lower=True, executor=ex, compute=c), want)
    _both(ex, lambda c: numpywren.solve(S, B, assume_a="pos", executor=ex, compute=c), want)
    L = numpywren.cholesky(S, executor=ex)
    _both(ex, lambda c: numpywren.cho_solve((L, True), B, executor=ex, compute=c), want)
    lu_and_piv = numpywren.lu_factor(S, executor=ex)
    _both(ex, lambda c: numpywren.lu_solve(lu_and_piv, B, executor=ex, compute=c), want)


@pytest.mark.parametrize("shape", EMPTY)
def test_qr_multiply_of_an_empty_matrix(ex, shape):
    """Q of an empty m x n A is m x 0: ``Q @ c`` is m x p zeros, ``c @ Q`` is p x 0, R is 0 x n (scipy's answer
    for m = 0; for m > 0 scipy gives c's shape, or an error, instead of Q @ c)."""
    m, n = shape
    a = np.zeros(shape)
    A = _store(ex, a)
    q = np.zeros((m, 0))
    for mode, c in (("left", np.ones((0, 2))), ("right", np.ones((2, m)))):
        want = (q @ c if mode == "left" else c @ q, np.zeros((0, n)))
        if m == 0:
            _same(want, scipy.linalg.qr_multiply(a, c, mode=mode))
        C = _store(ex, c)
        _both(ex, lambda comp: numpywren.qr_multiply(A, C, mode=mode, executor=ex, compute=comp), want)


def test_kernel_of_points_with_no_features_is_refused_as_scikit_learn(ex):
    with pytest.raises(ValueError, match="0 features"):
        numpywren.kernel(_store(ex, np.zeros((3, 0))), executor=ex)


@pytest.mark.parametrize("shape,tile", [((5, 2), (1, 2)), ((2, 5), (2, 1)), ((7, 3), (2, 3))])
def test_full_q_and_u_with_tiles_shorter_than_the_panel_is_wide(ex, shape, tile):
    """A tall matrix in one tile column of 1 x 2 tiles: the tree's leaves hold fewer rows than its nodes' R, so a
    node's top rows span several leaves (the complete Q's accumulation failed in a task: 'C has 2 rows, the
    factor 3')."""
    a = np.random.default_rng(4).standard_normal(shape)
    A = _store(ex, a, tile)
    if shape[0] >= shape[1]:
        Q, R = _numpy(numpywren.qr(A, mode="complete", executor=ex))
        assert Q.shape == (shape[0],) * 2
        np.testing.assert_allclose(Q @ R, a, rtol=0, atol=1e-13)
        np.testing.assert_allclose(Q.T @ Q, np.eye(shape[0]), rtol=0, atol=1e-13)
    U, s, Vh = _numpy(numpywren.svd(A, executor=ex))
    u, s0, vh = np.linalg.svd(a)
    assert U.shape == u.shape and Vh.shape == vh.shape
    np.testing.assert_allclose(s, s0, rtol=1e-13)
    np.testing.assert_allclose(U.T @ U, np.eye(shape[0]), rtol=0, atol=1e-13)
    np.testing.assert_allclose(Vh @ Vh.T, np.eye(shape[1]), rtol=0, atol=1e-13)
    np.testing.assert_allclose((U[:, :s.size] * s) @ Vh[:s.size], a, rtol=0, atol=1e-13)
