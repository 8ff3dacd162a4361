"""qr_multiply: Q @ c and c @ Q (so Q.T @ B) from CAQR's Householder trees, Q never formed; against numpy."""
import numpy as np
import pytest

import numpywren
from numpywren import BigMatrix, LocalStore


def numpy_q(a, R):
    """numpy's reduced Q with its columns' signs matched to our R (A = QR is unique up to them)."""
    q, r = np.linalg.qr(a)
    return q * (np.sign(np.diag(R.to_numpy())) * np.sign(np.diag(r)))


@pytest.mark.parametrize("m,n,tile", [(47, 47, 10), (53, 31, 10), (31, 53, 10), (40, 7, 10)])
def test_qr_multiply_matches_numpy(inline, m, n, tile):
    """Square, tall and wide over ragged 10x10 tiles, and one tile column (the TSQR shape)."""
    rng = np.random.default_rng(m + n)
    a = rng.standard_normal((m, n))
    A = BigMatrix.from_numpy(a, (tile, min(tile, n)), inline.store)
    kdim = min(m, n)
    c = rng.standard_normal((kdim, 6))
    QC, R = numpywren.qr_multiply(A, BigMatrix.from_numpy(c, (tile, 4), inline.store), mode="left",
                                  executor=inline)
    q = numpy_q(a, R)
    assert QC.shape == (m, 6)
    np.testing.assert_allclose(QC.to_numpy(), q @ c, rtol=0, atol=1e-13 * np.abs(q @ c).max())
    np.testing.assert_allclose(q @ R.to_numpy(), a, rtol=0, atol=1e-13 * np.abs(a).max())
    b = rng.standard_normal((m, 5))
    B = BigMatrix.from_numpy(b, (tile, 3), inline.store)
    CQ, R = numpywren.qr_multiply(A, B.T, executor=inline)          # mode "right": B^T Q, so CQ.T = Q^T B
    assert CQ.shape == (5, kdim)
    np.testing.assert_allclose(CQ.T.to_numpy(), q.T @ b, rtol=0, atol=1e-13 * np.abs(b).sum(0).max())


def test_qr_multiply_never_forms_q(inline):
    """The plan writes no M x K matrix: its outputs are R and the product, its scratch only tree tiles."""
    a = np.random.default_rng(1).standard_normal((60, 40))
    A = BigMatrix.from_numpy(a, (10, 10), inline.store)
    B = BigMatrix.from_numpy(np.ones((60, 2)), (10, 2), inline.store)
    plan = numpywren.qr_multiply(A, B.T, compute=False, executor=inline)
    assert [o.matrix.shape for o in plan.outputs] == [(40, 40), (40, 2)]
    assert all(m.shape[1] <= 40 and m.tile_shape[1] <= 10 for m in plan.scratch.values())
    assert {t.op for t in plan.dag} <= {"caqr_factor", "caqr_apply", "caqr_take", "zeros"}
    numpywren.run(plan, inline)
    q = numpy_q(a, plan.value[1])
    np.testing.assert_allclose(plan.value[0].T.to_numpy(), q.T @ np.ones((60, 2)), atol=1e-12)


def test_qr_multiply_float32(inline):
    rng = np.random.default_rng(2)
    a = rng.standard_normal((30, 30)).astype(np.float32)
    c = rng.standard_normal((30, 3)).astype(np.float32)
    QC, R = numpywren.qr_multiply(BigMatrix.from_numpy(a, (8, 8), inline.store),
                                  BigMatrix.from_numpy(c, (8, 3), inline.store), mode="left", executor=inline)
    assert QC.dtype == R.dtype == np.float32
    q = numpy_q(a.astype(np.float64), R)
    np.testing.assert_allclose(QC.to_numpy(), q @ c, rtol=0, atol=1e-5 * np.abs(q @ c).max())


def test_qr_multiply_refuses_bad_input(inline):
    store = inline.store
    A = BigMatrix.from_numpy(np.eye(20), (10, 10), store)
    with pytest.raises(ValueError, match="mode must be"):
        numpywren.qr_multiply(A, A, mode="up", executor=inline)
    with pytest.raises(ValueError, match="must number 20"):
        numpywren.qr_multiply(A, BigMatrix.from_numpy(np.ones((3, 12)), (3, 10), store), executor=inline)
    with pytest.raises(ValueError, match="A's row tiles"):
        numpywren.qr_multiply(A, BigMatrix.from_numpy(np.ones((20, 3)), (5, 3), store), mode="left",
                              executor=inline)
    with pytest.raises(TypeError, match="BigMatrix"):
        numpywren.qr_multiply(A, np.ones((20, 3)), mode="left", executor=inline)


@pytest.mark.parametrize("m,n", [(23, 13), (13, 23)])
def test_qr_multiply_of_a_complex_matrix_multiplies_by_q_not_its_conjugate(inline, m, n):
    """c @ Q with a complex A (and real c) is scipy's c @ Q; the trees apply Q^H to c^T, so c @ Q is that
    product's conjugate transpose, not its transpose (which would be c @ conj(Q))."""
    rng = np.random.default_rng(m)
    a = rng.standard_normal((m, n)) + 1j * rng.standard_normal((m, n))
    A = BigMatrix.from_numpy(a, (5, 5), inline.store)
    c = rng.standard_normal((3, m))
    CQ, R = numpywren.qr_multiply(A, BigMatrix.from_numpy(c, (3, 5), inline.store), executor=inline)
    q, r = np.linalg.qr(a)
    q = q * (np.diag(r) / np.diag(R.to_numpy()))           # A = QR is unique up to a unit phase per column
    assert CQ.dtype == np.complex128 and CQ.shape == (3, min(m, n))
    np.testing.assert_allclose(CQ.to_numpy(), c @ q, rtol=0, atol=1e-13 * np.abs(c).sum(1).max())
    k = rng.standard_normal((min(m, n), 2))
    QC, _ = numpywren.qr_multiply(A, BigMatrix.from_numpy(k, (5, 2), inline.store), mode="left", executor=inline)
    np.testing.assert_allclose(QC.to_numpy(), q @ k, rtol=0, atol=1e-13 * np.abs(k).sum(0).max())


def test_qr_multiply_refuses_a_c_more_precise_than_a(inline):
    """A float32 A factored in float32 would give a float64 c's product float32's accuracy under float64's
    name (scipy factors in float64): refused, naming both dtypes, before any task runs."""
    store = inline.store
    rng = np.random.default_rng(4)
    A = BigMatrix.from_numpy(rng.standard_normal((20, 10)).astype(np.float32), (10, 10), store)
    c = BigMatrix.from_numpy(rng.standard_normal((3, 20)), (3, 10), store)
    with pytest.raises(TypeError, match="float64.*float32"):
        numpywren.qr_multiply(A, c, executor=inline)
    A64 = BigMatrix.from_numpy(rng.standard_normal((20, 10)), (10, 10), store)
    c32 = BigMatrix.from_numpy(rng.standard_normal((3, 20)).astype(np.float32), (3, 10), store)
    CQ, R = numpywren.qr_multiply(A64, c32, executor=inline)    # float64 Q on float32 c: float64, exact
    assert CQ.dtype == R.dtype == np.float64
