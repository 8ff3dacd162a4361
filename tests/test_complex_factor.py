"""Complex factorizations (complex64, complex128): the tile kernels on numpy arrays, then the tiled ops
(lu/solve/det, qr, lstsq, svd, eigh), each checked against numpy/scipy and by its own backward error."""
import numpy as np
import pytest

from blocks import eigen, lu as lu_kernels, qr as qr_kernels

#: relative tolerances of the two complex precisions (as scipy's tests use for float32/float64)
TOL = {np.complex64: 2e-5, np.complex128: 1e-12}
COMPLEX = [np.complex64, np.complex128]


def crandn(rng, *shape, dtype=np.complex128):
    """Random complex numbers with nonzero real and imaginary parts."""
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype)


def rel(got, want):
    return np.linalg.norm(got - want) / np.linalg.norm(want)


def hermitian(rng, n, dtype=np.complex128):
    x = crandn(rng, n, n, dtype=dtype)
    return ((x + x.conj().T) / 2).astype(dtype)


# -- tile kernels -------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", COMPLEX)
@pytest.mark.parametrize("rows,cols", [(12, 5), (5, 5), (3, 7)])
def test_qr_factor_tile_and_its_unitary_q(dtype, rows, cols):
    rng = np.random.default_rng(1)
    a = crandn(rng, rows, cols, dtype=dtype)
    F = qr_kernels.factor(np.asfortranarray(a.copy()))
    assert F.dtype == dtype and np.iscomplexobj(F[rows])   # complex tau
    k = min(rows, cols)
    r = qr_kernels.r_of_factor(F)
    q = qr_kernels.apply_q(F, np.eye(k, dtype=dtype))
    tol = 10 * TOL[dtype]
    assert np.abs(q.conj().T @ q - np.eye(k)).max() < tol
    assert rel(q @ r, a) < tol
    c = crandn(rng, rows, 3, dtype=dtype)
    qhc = qr_kernels.apply_factor(F, c, transpose=True)
    qfull = qr_kernels.apply_factor(F, np.eye(rows, dtype=dtype), transpose=False)
    assert rel(qhc, qfull.conj().T @ c) < tol                       # Q^H, not Q^T
    assert rel(qr_kernels.apply_factor(F, qhc, transpose=False), c) < tol
    assert np.abs(np.abs(np.diag(r)) - np.abs(np.diag(np.linalg.qr(a, mode="r")))).max() < tol * np.abs(a).max() * 4


def test_symmetrize_lower_is_hermitian_with_a_real_diagonal():
    rng = np.random.default_rng(2)
    t = crandn(rng, 6, 6)
    h = qr_kernels.symmetrize_lower(t)
    assert np.array_equal(h, h.conj().T) and np.array_equal(np.tril(h, -1), np.tril(t, -1))
    assert np.array_equal(h.diagonal(), t.diagonal().real)


@pytest.mark.parametrize("dtype", COMPLEX)
@pytest.mark.parametrize("vectors", [False, True])
def test_hermitian_band_eigensolver(dtype, vectors):
    rng = np.random.default_rng(3)
    n, b = 11, 3
    h = hermitian(rng, n, dtype)
    h[np.abs(np.subtract.outer(np.arange(n), np.arange(n))) > b] = 0
    ab = np.zeros((b + 1, n), dtype)
    for d in range(b + 1):
        ab[d, :n - d] = np.diagonal(h, -d)
    w, z = eigen.eigh_band(ab, vectors)
    want = np.linalg.eigvalsh(h)
    assert w.dtype == np.finfo(dtype).dtype and rel(w, want) < 10 * TOL[dtype]
    if vectors:
        assert rel(h @ z, z * w) < 10 * TOL[dtype] * n
        assert np.abs(z.conj().T @ z - np.eye(n)).max() < 10 * TOL[dtype] * n


@pytest.mark.parametrize("dtype", COMPLEX)
def test_complex_upper_band_and_its_singular_values(dtype):
    rng = np.random.default_rng(4)
    sizes = [4, 4, 3]
    diagonal = [crandn(rng, s, s, dtype=dtype) for s in sizes]
    super_r = [crandn(rng, sizes[k + 1], sizes[k], dtype=dtype) for k in range(2)]
    B = eigen.upper_band_dense(diagonal, super_r)
    assert np.array_equal(B[:4, 4:8], np.triu(super_r[0]).conj().T)          # L = R^H
    want = np.linalg.svd(B, compute_uv=False)
    s = eigen.singular_values_band(eigen.upper_band(diagonal, super_r, 4))   # a wide band: the dense path
    assert s.dtype == np.finfo(dtype).dtype and rel(s, want) < 10 * TOL[dtype]


@pytest.mark.parametrize("dtype", COMPLEX)
def test_singular_values_band_narrow_complex_band_storage(dtype):
    """A band narrow for its order (blocks.band.prefer_dense false): zgbbrd/cgbbrd to a real bidiagonal, then
    dbdsqr/sbdsqr, in band storage."""
    from blocks import band

    rng = np.random.default_rng(5)
    n, b = 120, 2
    assert not band.prefer_dense(n, b)
    sizes = [b] * (n // b)
    diagonal = [crandn(rng, b, b, dtype=dtype) for _ in sizes]
    super_r = [crandn(rng, b, b, dtype=dtype) for _ in sizes[1:]]
    B = eigen.upper_band_dense(diagonal, super_r)
    s = eigen.singular_values_band(eigen.upper_band(diagonal, super_r, b))
    assert s.dtype == np.finfo(dtype).dtype and rel(s, np.linalg.svd(B, compute_uv=False)) < 10 * TOL[dtype]


def test_lu_record_holds_a_complex_diagonal_block_exactly():
    rng = np.random.default_rng(6)
    lu = crandn(rng, 3, 3)
    order = np.array([2, 0, 1, -1, -1])
    record = lu_kernels.pack_record(order, 4, lu, 5, 4)
    assert record.dtype == np.complex128
    got_order, info, got = lu_kernels.unpack_record(record, 5, 4, 3)
    assert np.array_equal(got_order, order) and info == 4 and np.array_equal(got, lu)
    assert lu_kernels.pack_record(order, 0, lu.real, 5, 4).dtype == np.float64


# -- tiled operations ----------------------------------------------------------------------------------
import numpywren  # noqa: E402
import scipy.linalg  # noqa: E402
from numpywren import BigMatrix  # noqa: E402
from numpywren.storage import LocalStore  # noqa: E402


def _np(x):
    return x.to_numpy() if isinstance(x, BigMatrix) else np.asarray(x)


def _unitary(q, tol):
    q = _np(q)
    assert np.abs(q.conj().T @ q - np.eye(q.shape[1])).max() < tol * max(q.shape)


@pytest.mark.parametrize("dtype", COMPLEX)
@pytest.mark.parametrize("n,t", [(12, 4), (11, 4)])   # even and ragged tiles
def test_lu_solve_inv_det_slogdet(inline, dtype, n, t):
    rng = np.random.default_rng(n)
    a = crandn(rng, n, n, dtype=dtype)
    b = crandn(rng, n, 3, dtype=dtype)
    A = BigMatrix.from_numpy(a, (t, t), inline.store)
    tol = 10 * TOL[dtype] * n
    x = numpywren.solve(A, b, executor=inline)
    assert x.dtype == dtype and rel(a @ x, b) < tol
    lu, piv = numpywren.lu_factor(A, executor=inline)
    ref_lu, ref_piv = scipy.linalg.lu_factor(a)
    assert lu.dtype == dtype and np.array_equal(piv, ref_piv) and rel(lu.to_numpy(), ref_lu) < tol
    for trans, op in ((0, a), (1, a.T), (2, a.conj().T)):
        x = numpywren.lu_solve((lu, piv), b, trans=trans, executor=inline)
        assert rel(op @ x, b) < tol, trans
    p, l, u = numpywren.lu(A, executor=inline)
    assert _np(p).dtype == np.finfo(dtype).dtype and _np(l).dtype == dtype     # scipy's P is real
    assert rel(_np(p) @ _np(l) @ _np(u), a) < tol
    ai = numpywren.inv(A, executor=inline).to_numpy()
    assert ai.dtype == dtype and np.abs(a @ ai - np.eye(n)).max() < tol * np.linalg.cond(a)
    sign, logdet = numpywren.slogdet(A, executor=inline)
    ref_sign, ref_logdet = np.linalg.slogdet(a)
    assert np.asarray(sign).dtype == dtype and np.asarray(logdet).dtype == np.finfo(dtype).dtype
    assert abs(sign - ref_sign) < tol and abs(logdet - ref_logdet) < tol * abs(ref_logdet)
    d = numpywren.det(A, executor=inline)
    assert np.iscomplexobj(d) and abs(d - np.linalg.det(a)) < tol * abs(np.linalg.det(a))


@pytest.mark.parametrize("assume_a", ["her", "sym", "pos"])
@pytest.mark.parametrize("lower", [True, False])
def test_solve_structures_read_one_triangle_as_scipy(inline, assume_a, lower):
    rng = np.random.default_rng(7)
    n = 10
    h = hermitian(rng, n) + (n * np.eye(n) if assume_a == "pos" else 0)
    full = h if assume_a != "sym" else (lambda x: x + x.T)(crandn(rng, n, n))
    # the triangle that must not be read ("pos" checks a few blocks of it against the other: a full matrix)
    junk = full if assume_a == "pos" else crandn(rng, n, n)
    a = np.tril(full) + np.triu(junk, 1) if lower else np.triu(full) + np.tril(junk, -1)
    b = crandn(rng, n, 2)
    A = BigMatrix.from_numpy(a, (4, 4), inline.store)
    x = numpywren.solve(A, b, assume_a=assume_a, lower=lower, executor=inline)
    want = scipy.linalg.solve(a, b, assume_a=assume_a, lower=lower)
    assert rel(x, want) < 1e-10 and rel(full @ x, b) < 1e-10


def test_complex_transposed_solve_is_refused_as_scipy(inline):
    A = BigMatrix.from_numpy(np.eye(4, dtype=np.complex128), (2, 2), inline.store)
    with pytest.raises(NotImplementedError, match="complex"):
        numpywren.solve(A, np.ones(4), transposed=True, executor=inline)


@pytest.mark.parametrize("dtype", COMPLEX)
@pytest.mark.parametrize("m,n,tiles,mode", [
    (30, 6, (7, 6), "reduced"),      # TSQR, ragged row blocks
    (20, 12, (4, 4), "reduced"),     # CAQR, 5x3 tiles
    (18, 13, (4, 4), "complete"),    # CAQR, ragged both ways, complete Q
    (9, 14, (4, 4), "reduced"),      # wide
])
def test_qr(inline, dtype, m, n, tiles, mode):
    rng = np.random.default_rng(m + n)
    a = crandn(rng, m, n, dtype=dtype)
    A = BigMatrix.from_numpy(a, tiles, inline.store)
    q, r = (_np(x) for x in numpywren.qr(A, mode=mode, executor=inline))
    tol = 10 * TOL[dtype]
    assert q.dtype == dtype and r.dtype == dtype
    assert np.array_equal(r, np.triu(r)) and rel(q @ r, a) < tol * m
    _unitary(q, tol)
    r_only = _np(numpywren.qr(A, mode="r", executor=inline))
    ref = np.linalg.qr(a, mode="r")
    k = min(m, n)
    assert np.abs(np.abs(np.diag(r_only)[:k]) - np.abs(np.diag(ref))).max() < tol * m * np.abs(a).max()


@pytest.mark.parametrize("dtype", COMPLEX)
@pytest.mark.parametrize("m,n,tiles,b_complex", [
    (30, 5, (7, 5), True),       # TSQR of [A | b]
    (30, 5, (7, 5), False),      # complex A, real b
    (14, 10, (4, 4), True),      # through the SVD
    (8, 13, (4, 4), True),       # wide: numpy's minimum-norm solution
])
def test_lstsq(inline, dtype, m, n, tiles, b_complex):
    rng = np.random.default_rng(m * n)
    a = crandn(rng, m, n, dtype=dtype)
    b = crandn(rng, m, 2, dtype=dtype) if b_complex else rng.standard_normal((m, 2))
    A = BigMatrix.from_numpy(a, tiles, inline.store)
    x, res, rank, s = numpywren.lstsq(A, b, executor=inline)
    rx, rres, rrank, rs = np.linalg.lstsq(a, b)
    tol = 10 * TOL[dtype] * m
    assert x.dtype == rx.dtype and s.dtype == rs.dtype and np.asarray(res).dtype == rres.dtype
    assert rank == rrank and rel(s, rs) < tol and rel(x, rx) < tol * 10
    assert np.shape(res) == np.shape(rres) and (res.size == 0 or rel(res, rres) < tol * 10)


@pytest.mark.parametrize("dtype", COMPLEX)
@pytest.mark.parametrize("m,n,tiles,full", [
    (16, 16, (4, 4), True),      # square, 4x4 tiles
    (19, 13, (4, 4), True),      # tall, ragged
    (13, 19, (4, 4), False),     # wide (factored as A^H)
    (30, 6, (8, 6), False),      # one tile column: TSQR, then the SVD of R
])
def test_svd(inline, dtype, m, n, tiles, full):
    rng = np.random.default_rng(m * n + 1)
    a = crandn(rng, m, n, dtype=dtype)
    A = BigMatrix.from_numpy(a, tiles, inline.store)
    tol = 10 * TOL[dtype] * max(m, n)
    ref = np.linalg.svd(a, compute_uv=False)
    s = numpywren.svd(A, compute_uv=False, executor=inline)
    assert s.dtype == np.finfo(dtype).dtype and rel(s, ref) < tol
    u, s, vh = numpywren.svd(A, full_matrices=full, executor=inline)
    u, vh = _np(u), _np(vh)
    assert s.dtype == np.finfo(dtype).dtype and u.dtype == dtype and vh.dtype == dtype
    k = min(m, n)
    assert u.shape == ((m, m) if full else (m, k)) and vh.shape == ((n, n) if full else (k, n))
    assert rel(s, ref) < tol
    _unitary(u, tol)
    _unitary(vh.conj().T, tol)
    assert rel((u[:, :k] * s) @ vh[:k], a) < tol


@pytest.mark.parametrize("dtype", COMPLEX)
@pytest.mark.parametrize("n,t,UPLO", [(16, 4, "L"), (14, 4, "U"), (5, 5, "L")])
def test_eigh(inline, dtype, n, t, UPLO):
    rng = np.random.default_rng(n)
    h = hermitian(rng, n, dtype)
    junk = crandn(rng, n, n, dtype=dtype)   # the other triangle is not read
    a = np.tril(h) + np.triu(junk, 1) if UPLO == "L" else np.triu(h) + np.tril(junk, -1)
    A = BigMatrix.from_numpy(a, (t, t), inline.store)
    tol = 10 * TOL[dtype] * n
    ref = np.linalg.eigvalsh(h)
    w = numpywren.eigvalsh(A, UPLO, executor=inline)
    assert w.dtype == np.finfo(dtype).dtype and rel(w, ref) < tol
    w, v = numpywren.eigh(A, UPLO, executor=inline)
    v = _np(v)
    assert w.dtype == np.finfo(dtype).dtype and v.dtype == dtype and rel(w, ref) < tol
    _unitary(v, tol)
    assert rel(h @ v, v * w) < tol


@pytest.mark.parametrize("n_power_iter", [0, 1])
def test_svd_compressed(inline, n_power_iter):
    rng = np.random.default_rng(11)
    m, n, k = 120, 30, 3
    u, _ = np.linalg.qr(crandn(rng, m, k))
    v, _ = np.linalg.qr(crandn(rng, n, k))
    a = (u * [40.0, 20.0, 10.0]) @ v.conj().T + 1e-4 * crandn(rng, m, n)
    A = BigMatrix.from_numpy(a, (32, 8), inline.store)
    U, s, Vt = numpywren.svd_compressed(A, k, n_power_iter=n_power_iter, seed=0, executor=inline)
    s0 = np.linalg.svd(a, compute_uv=False)[:k]
    assert s.dtype == np.float64 and rel(s, s0) < 1e-6
    u_ = U.to_numpy()
    assert u_.dtype == np.complex128 and Vt.dtype == np.complex128
    _unitary(u_, 1e-12)
    u0, _, vt0 = np.linalg.svd(a, full_matrices=False)
    best = (u0[:, :k] * s0) @ vt0[:k]
    assert np.linalg.norm((u_ * s) @ Vt - a) <= 1.25 * np.linalg.norm(best - a)


def test_svd_accepts_numpys_hermitian_hint(inline):
    rng = np.random.default_rng(12)
    h = hermitian(rng, 10)
    A = BigMatrix.from_numpy(h, (4, 4), inline.store)
    u, s, vh = numpywren.svd(A, hermitian=True, executor=inline)
    ref = np.linalg.svd(h, hermitian=True, compute_uv=False)
    assert s.dtype == np.float64 and rel(s, ref) < 1e-12
    assert rel((_np(u) * s) @ _np(vh), h) < 1e-12
