"""Complex matrices (complex64, complex128) against numpy: storage and the tile codec, element-wise ops and
reductions, ``A.H``, matmul and HERK, Hermitian Cholesky and triangular solves, zarr (docs/guide/complex.md)."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import numpywren
from numpywren import BigMatrix
from numpywren.executors.inline import InlineExecutor
from numpywren.storage import LocalStore
from numpywren.tile import decode, encode

OLD_STORE = Path(__file__).parent / "data" / "store_1e50cdd"   # written by numpywren at commit 1e50cdd (real only)
COMPLEX = ["complex64", "complex128"]


def crandn(shape, dtype="complex128", seed=0) -> np.ndarray:
    """Complex normal numbers with nonzero real and imaginary parts."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype)


def rtol(dtype) -> float:
    return 2e-5 if np.dtype(dtype) in (np.complex64, np.float32) else 1e-12


def relerr(x, ref) -> float:
    return float(np.linalg.norm(np.asarray(x) - ref) / max(np.linalg.norm(ref), 1e-300))


@pytest.fixture
def ex(local_store):
    executor = InlineExecutor(2, local_store)
    with numpywren.using(executor):
        yield executor
    executor.shutdown()


# -- storage and the tile codec --------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", COMPLEX)
@pytest.mark.parametrize("order", ["C", "F"])
def test_tile_codec_round_trips_complex_exactly(dtype, order):
    a = np.asarray(crandn((7, 5), dtype), order=order)
    parts = encode(a)
    assert b'"dtype": "<c' in bytes(parts[0])
    b = decode(b"".join(bytes(p) for p in parts))
    assert b.dtype == a.dtype and b.shape == a.shape
    np.testing.assert_array_equal(b, a)


@pytest.mark.parametrize("value", [0j, 1.5 - 2.25j, complex(np.nan, 1), complex(-np.inf, 0)])
def test_constant_complex_tile_stores_real_and_imaginary_parts(value):
    a = np.broadcast_to(np.complex128(value), (4, 3))
    parts = encode(a)
    assert len(parts) == 1 and b'"fill": [' in bytes(parts[0])
    b = decode(bytes(parts[0]))
    assert b.dtype == np.complex128 and b.shape == (4, 3) and not any(b.strides)
    np.testing.assert_array_equal(b, a)


@pytest.mark.parametrize("dtype", COMPLEX)
def test_from_numpy_to_numpy_round_trip(local_store, dtype):
    a = crandn((11, 7), dtype)   # ragged tiles on both sides
    A = BigMatrix.from_numpy(a, (4, 3), local_store, key="Z")
    assert A.dtype == np.dtype(dtype) and A.grid == (3, 3)
    B = BigMatrix.open(local_store, "Z")
    assert B.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(B.to_numpy(), a)
    np.testing.assert_array_equal(B.T.to_numpy(), a.T)
    np.testing.assert_array_equal(B[2:9, 1:6], a[2:9, 1:6])
    assert B._layout()["dtype"] == dtype   # meta.json names it as numpy does; no new format version


def test_complex_matrix_create_and_put_block(local_store):
    C = BigMatrix.create((3, 3), 2, "complex64", local_store, key="C")
    with pytest.raises(TypeError, match="must have dtype complex64, got complex128"):
        C.put_block(0, 0, crandn((2, 2)))
    with pytest.raises(TypeError, match="dtype complex256 is not supported|dtype clongdouble"):
        BigMatrix.create((3, 3), 2, np.clongdouble, local_store)


def test_matrices_stored_by_older_versions_read_unchanged(tmp_path):
    """Real matrices written before complex support (commit 1e50cdd) read as they were: the format is the same."""
    shutil.copytree(OLD_STORE, tmp_path / "old")
    store = LocalStore(str(tmp_path / "old"))
    A = BigMatrix.open(store, "old_real")
    np.testing.assert_array_equal(A.to_numpy(), (np.arange(15.0).reshape(5, 3) - 7) / 4)
    F = BigMatrix.open(store, "old_f32")
    assert F.dtype == np.float32
    np.testing.assert_array_equal(F.to_numpy(), np.zeros((3, 3), np.float32))
    # and a real matrix written today is byte-for-byte what that version wrote (same generation and binding)
    fresh = LocalStore(str(tmp_path / "new"))
    tile_key = A.tile_key(2, 1)
    B = BigMatrix.create(A.shape, A.tile_shape, A.dtype, fresh, key="old_real")
    B.generation = A.generation
    B.put_block(2, 1, A.get_block(2, 1))
    assert fresh.get(tile_key) == store.get(tile_key)


# -- element-wise operations and reductions -------------------------------------------------------------------
@pytest.mark.parametrize("dtype", COMPLEX)
def test_elementwise_ops_and_reductions_of_complex(ex, local_store, dtype):
    a, b = crandn((11, 7), dtype, 1), crandn((11, 7), dtype, 2)
    A, B = (BigMatrix.from_numpy(x, (4, 3), local_store) for x in (a, b))
    tol = rtol(dtype)
    for got, ref in [(A + B, a + b), (A * B, a * b), (A / B, a / b), (A - 2.5, a - 2.5), (-A, -a),
                     (A.T * 2, a.T * 2), (np.exp(A), np.exp(a)), (np.sqrt(A), np.sqrt(a))]:
        assert got.dtype == ref.dtype
        assert relerr(got.to_numpy(), ref) < tol
    absolute = abs(A)
    assert absolute.dtype == np.abs(a).dtype   # real, as numpy
    assert relerr(absolute.to_numpy(), np.abs(a)) < tol
    for got, ref in [(A.sum(), a.sum()), (A.mean(), a.mean()), (A.sum(axis=0), a.sum(axis=0)),
                     (A.mean(axis=1), a.mean(axis=1))]:
        assert np.asarray(got).dtype == np.asarray(ref).dtype
        assert relerr(got, ref) < tol
    norm = A.norm()
    assert norm.dtype == np.linalg.norm(a).dtype and isinstance(norm, np.floating)
    assert abs(norm - np.linalg.norm(a)) < tol * np.linalg.norm(a)
    assert numpywren.linalg.norm(A) == norm
    # max and min order complex numbers lexicographically (real part, then imaginary), as numpy does
    c = np.round(a.real) + 1j * a.imag     # ties in the real part, so the imaginary part decides
    C = BigMatrix.from_numpy(c, (4, 3), local_store)
    assert C.max() == c.max() and C.min() == c.min()
    np.testing.assert_array_equal(C.max(axis=0), c.max(axis=0))


def test_complex_to_real_copies_refuse_to_drop_the_imaginary_part(ex, local_store):
    A = BigMatrix.from_numpy(crandn((4, 4)), 3, local_store)
    with pytest.raises(TypeError, match="would drop the imaginary part; take A.real"):
        A.astype("float64")
    assert A.astype("complex64").dtype == np.complex64


@pytest.mark.parametrize("dtype", COMPLEX)
def test_complex_scalars_operands_and_promotion_as_numpy(ex, local_store, dtype):
    a = crandn((9, 7), dtype, 3)
    r = np.random.default_rng(4).standard_normal((9, 7)).astype("float32" if dtype == "complex64" else "float64")
    A, R = BigMatrix.from_numpy(a, (4, 3), local_store), BigMatrix.from_numpy(r, (4, 3), local_store)
    tol = rtol(dtype)
    cases = [(A * (2 - 3j), a * (2 - 3j)), ((1 + 1j) - A, (1 + 1j) - a), (R * 1j, r * 1j), (R + A, r + a),
             (A - R, a - r), (A + a.conj(), a + a.conj()), (R * a, r * a), (np.maximum(A, R), np.maximum(a, r))]
    for got, ref in cases:
        assert got.dtype == ref.dtype, (got, ref.dtype)
        assert relerr(got.to_numpy(), ref) < tol
    float32 = BigMatrix.from_numpy(r.astype(np.float32), (4, 3), local_store)
    assert (float32 * 1j).dtype == (r.astype(np.float32) * 1j).dtype == np.complex64   # NEP 50, as numpy 2


@pytest.mark.parametrize("dtype", COMPLEX)
def test_conj_real_imag_angle(ex, local_store, dtype):
    a = crandn((10, 6), dtype, 5)
    A = BigMatrix.from_numpy(a, (4, 4), local_store)
    tol = rtol(dtype)
    conj = A.conj()
    assert conj.key == A.key   # a view: no job, the tiles are conjugated on read
    np.testing.assert_array_equal(conj.to_numpy(), a.conj())
    np.testing.assert_array_equal(np.conjugate(A).to_numpy(), a.conj())
    np.testing.assert_array_equal(conj.conj().to_numpy(), a)
    for got, ref in [(A.real, a.real), (A.imag, a.imag), (np.real(A), a.real), (np.imag(A), a.imag),
                     (np.angle(A), np.angle(a)), (conj.imag, -a.imag)]:
        assert got.dtype == ref.dtype
        assert relerr(got.to_numpy(), ref) < tol
    r = a.real.copy()
    R = BigMatrix.from_numpy(r, (4, 4), local_store)
    assert R.real is R and R.conj() is R and R.H == R.T
    np.testing.assert_array_equal(R.imag.to_numpy(), np.zeros_like(r))
    np.testing.assert_allclose(np.angle(R).to_numpy(), np.angle(r))


# -- A.H, matmul and HERK -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", COMPLEX)
def test_conjugate_transpose_view_and_products(ex, local_store, dtype):
    a, b = crandn((11, 7), dtype, 6), crandn((11, 5), dtype, 7)
    A, B = BigMatrix.from_numpy(a, (4, 3), local_store, "A"), BigMatrix.from_numpy(b, (4, 2), local_store, "B")
    tol = rtol(dtype)
    assert A.H.shape == (7, 11) and A.H.tile_shape == (3, 4) and "A'.H" in repr(A.H)
    np.testing.assert_array_equal(A.H.to_numpy(), a.conj().T)
    np.testing.assert_array_equal(A.H.H.to_numpy(), a)
    np.testing.assert_array_equal(A.H[2:5, 3:9], a.conj().T[2:5, 3:9])
    for got, ref in [(A.H @ B, a.conj().T @ b), (B.H @ A, b.conj().T @ a), (A.T @ B, a.T @ b),
                     (A @ A.H, a @ a.conj().T), (A.H @ A, a.conj().T @ a),
                     (numpywren.matmul(A.H, B, split_k=2), a.conj().T @ b)]:
        assert got.dtype == ref.dtype
        assert relerr(got.to_numpy(), ref) < tol
    assert relerr(A.H @ b, a.conj().T @ b) < tol    # a numpy operand on either side
    assert relerr(a.conj().T @ A, a.conj().T @ a) < tol


@pytest.mark.parametrize("real,cplx", [("float64", "complex128"), ("float32", "complex64"),
                                       ("float32", "complex128")])
def test_matmul_promotes_real_and_complex_as_numpy(ex, local_store, real, cplx):
    r = np.random.default_rng(8).standard_normal((10, 6)).astype(real)
    z = crandn((6, 9), cplx, 9)
    R, Z = BigMatrix.from_numpy(r, (3, 4), local_store), BigMatrix.from_numpy(z, (4, 5), local_store)
    for got, ref in [(R @ Z, r @ z), (Z.T @ R.T, z.T @ r.T)]:
        assert got.dtype == ref.dtype == np.result_type(real, cplx)
        assert relerr(got.to_numpy(), ref) < rtol(ref.dtype)


@pytest.mark.parametrize("dtype", COMPLEX)
def test_herk_stores_one_triangle_and_reads_the_other_conjugated(ex, local_store, dtype):
    x = crandn((10, 7), dtype, 10)
    X = BigMatrix.from_numpy(x, (4, 3), local_store, "X")
    C = numpywren.herk(X, out="C")
    ref = x @ x.conj().T
    assert C.hermitian and C.symmetric and C.dtype == np.dtype(dtype)
    assert sorted(C.stored_blocks()) == [(0, 0), (1, 0), (1, 1), (2, 0), (2, 1), (2, 2)]
    assert set(C.missing_blocks()) == set()
    stored = {k.rsplit("/", 1)[1] for k in local_store.list("C/tiles/")}
    assert stored == {"0_0", "1_0", "1_1", "2_0", "2_1", "2_2"}   # nothing above the diagonal is stored
    reopened = BigMatrix.open(local_store, "C")
    assert reopened.hermitian and "hermitian" in repr(reopened)
    full = reopened.to_numpy()
    assert relerr(full, ref) < rtol(dtype)
    np.testing.assert_array_equal(reopened.get_block(0, 2), reopened.get_block(2, 0).conj().T)
    assert relerr(reopened.H.to_numpy(), ref) < rtol(dtype)     # Hermitian: C.H is C
    assert relerr(reopened.T.to_numpy(), ref.T) < rtol(dtype)
    assert relerr(numpywren.herk(X.H).to_numpy(), x.conj().T @ x) < rtol(dtype)   # A.H @ A in one triangle
    S = numpywren.syrk(X)                  # syrk stays X @ X.T (complex symmetric, BLAS's zsyrk)
    assert not S.hermitian and relerr(S.to_numpy(), x @ x.T) < rtol(dtype)
    R = numpywren.herk(BigMatrix.from_numpy(x.real.copy(), (4, 3), local_store))
    assert not R.hermitian and R.symmetric and relerr(R.to_numpy(), x.real @ x.real.T) < 1e-5


# -- Hermitian Cholesky, triangular solves, cho_solve -----------------------------------------------------------
def hpd(n, dtype="complex128", seed=11) -> np.ndarray:
    """A Hermitian positive definite matrix with nonzero imaginary parts off the diagonal."""
    x = crandn((n, n), dtype, seed)
    return (x @ x.conj().T + n * np.eye(n)).astype(dtype)


@pytest.mark.parametrize("dtype", COMPLEX)
@pytest.mark.parametrize("lower", [True, False])
def test_hermitian_cholesky_as_scipy(ex, local_store, dtype, lower):
    import scipy.linalg

    a = hpd(11, dtype)
    A = BigMatrix.from_numpy(a, 4, local_store)   # 3 x 3 tiles, ragged
    C = numpywren.cholesky(A, lower=lower)
    ref = scipy.linalg.cholesky(a, lower=lower)
    c = C.to_numpy()
    assert C.dtype == ref.dtype == np.dtype(dtype)
    assert relerr(c, ref) < 10 * rtol(dtype)
    assert np.all(np.tril(c, -1) == 0) if not lower else np.all(np.triu(c, 1) == 0)
    recon = c @ c.conj().T if lower else c.conj().T @ c
    assert relerr(recon, a) < 10 * rtol(dtype)                    # backward error, independently of scipy
    L = numpywren.linalg.cholesky(A, upper=not lower)
    assert relerr(L.to_numpy(), np.linalg.cholesky(a, upper=not lower)) < 10 * rtol(dtype)


def test_cholesky_of_a_hermitian_stored_triangle(ex, local_store):
    x = crandn((12, 12), "complex128", 12)
    X = BigMatrix.from_numpy(x, 5, local_store)
    C = numpywren.herk(X)          # one triangle stored, the other read conjugated
    for lower in (True, False):
        F = numpywren.cholesky(C, lower=lower, shift=1.0)
        f = F.to_numpy()
        a = x @ x.conj().T + np.eye(12)
        assert relerr(f @ f.conj().T if lower else f.conj().T @ f, a) < 1e-12


def test_cholesky_reads_one_triangle_and_refuses_indefinite(ex, local_store):
    import scipy.linalg

    a = hpd(9)
    junk = np.triu(crandn((9, 9), seed=13), 1)   # the upper triangle is not read (lower=True), as LAPACK
    A = BigMatrix.from_numpy(np.tril(a) + junk, 4, local_store)
    assert relerr(numpywren.cholesky(A).to_numpy(), scipy.linalg.cholesky(a, lower=True)) < 1e-12
    bad = a - 40 * np.eye(9)
    with pytest.raises(np.linalg.LinAlgError, match="not positive definite"):
        numpywren.cholesky(BigMatrix.from_numpy(bad, 4, local_store))


@pytest.mark.parametrize("dtype", COMPLEX)
@pytest.mark.parametrize("trans", [0, 1, 2, "N", "T", "C"])
@pytest.mark.parametrize("lower", [True, False])
def test_solve_triangular_with_conjugate_transpose(ex, local_store, dtype, trans, lower):
    import scipy.linalg

    t = np.tril(crandn((10, 10), dtype, 14)) + 4 * np.eye(10, dtype=dtype)
    t = t if lower else t.conj().T
    b = crandn((10, 3), dtype, 15)
    T, B = BigMatrix.from_numpy(t, 4, local_store), BigMatrix.from_numpy(b, (4, 2), local_store)
    ref = scipy.linalg.solve_triangular(t, b, lower=lower, trans=trans)
    x = numpywren.solve_triangular(T, B, lower=lower, trans=trans).to_numpy()
    assert x.dtype == ref.dtype and relerr(x, ref) < 10 * rtol(dtype)
    xv = numpywren.solve_triangular(T, b[:, 0], lower=lower, trans=trans)   # a numpy right-hand side
    assert relerr(xv, ref[:, 0]) < 10 * rtol(dtype)


def test_solve_triangular_mixes_real_and_complex(ex, local_store):
    import scipy.linalg

    t = np.tril(np.random.default_rng(16).standard_normal((9, 9))) + 3 * np.eye(9)
    b = crandn((9, 2), seed=17)
    T = BigMatrix.from_numpy(t, 4, local_store)
    for trans in ("N", "C"):
        x = numpywren.solve_triangular(T, b, trans=trans)
        ref = scipy.linalg.solve_triangular(t, b, lower=True, trans=trans)
        assert x.dtype == ref.dtype == np.complex128 and relerr(x, ref) < 1e-12
    with pytest.raises(ValueError, match="trans must be"):
        numpywren.solve_triangular(T, b, trans=3)


@pytest.mark.parametrize("dtype", COMPLEX)
@pytest.mark.parametrize("lower", [True, False])
def test_cho_solve_hermitian(ex, local_store, dtype, lower):
    import scipy.linalg

    a, b = hpd(10, dtype, 18), crandn((10, 4), dtype, 19)
    A = BigMatrix.from_numpy(a, 4, local_store)
    C = numpywren.cholesky(A, lower=lower)
    x = numpywren.cho_solve((C, lower), b)
    ref = scipy.linalg.cho_solve((scipy.linalg.cholesky(a, lower=lower), lower), b)
    assert x.dtype == ref.dtype and relerr(x, ref) < 100 * rtol(dtype)
    assert relerr(a @ x, b) < 100 * rtol(dtype)               # backward error, independently of scipy
    X = numpywren.cho_solve((C, lower), BigMatrix.from_numpy(b, (4, 3), local_store))
    assert relerr(X.to_numpy(), ref) < 100 * rtol(dtype)


# -- zarr in and out ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", COMPLEX)
@pytest.mark.parametrize("zarr_format", [2, 3])
def test_zarr_complex_in_and_out(ex, local_store, tmp_path, dtype, zarr_format):
    zarr = pytest.importorskip("zarr")
    a = crandn((11, 7), dtype, 20)
    path = str(tmp_path / "in.zarr")
    z = zarr.create_array(store=path, shape=a.shape, chunks=(4, 3), dtype=a.dtype, zarr_format=zarr_format)
    z[:] = a
    Z = BigMatrix.from_zarr(path)
    assert Z.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(Z.to_numpy(), a)
    np.testing.assert_array_equal(Z.H.to_numpy(), a.conj().T)          # views of a zarr input
    assert relerr((Z.H @ BigMatrix.from_numpy(a, (4, 3), local_store)).to_numpy(), a.conj().T @ a) < rtol(dtype)
    out = str(tmp_path / "out.zarr")
    W = Z.H.to_zarr(out)                                                 # written conjugate transposed
    back = zarr.open_array(out, mode="r")
    assert back.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(back[:], a.conj().T)
    np.testing.assert_array_equal(W.to_numpy(), a.conj().T)
    filled = np.full((5, 5), 2 - 1j, dtype)     # chunks equal to a nonzero complex value are written, not dropped
    BigMatrix.from_numpy(filled, 2, local_store).to_zarr(str(tmp_path / "c.zarr"))
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "c.zarr"), mode="r")[:], filled)


def test_complex_kernels_on_a_fortran_blas_library(ex, local_store, monkeypatch):
    """The Cholesky and GEMM tiles through blocks.blas's ctypes binding (z routines of scipy's OpenBLAS, as
    of the layer's MKL), not only numpy/scipy's."""
    import glob

    import scipy
    import scipy.linalg

    libs = sorted(glob.glob(str(Path(scipy.__file__).parent.parent / "scipy.libs" / "libscipy_openblas*.so")))
    if not libs:
        pytest.skip("this scipy wheel bundles no libscipy_openblas*.so")
    monkeypatch.setenv("NUMPYWREN_BLAS_LIB", libs[0])
    from blocks import blas

    assert blas.library() is not None and blas.library().has(np.dtype(np.complex128), "herk")
    a, x = hpd(13, seed=21), crandn((13, 6), seed=22)
    A, X = BigMatrix.from_numpy(a, 5, local_store), BigMatrix.from_numpy(x, (5, 4), local_store)
    for lower in (True, False):
        assert relerr(numpywren.cholesky(A, lower=lower).to_numpy(), scipy.linalg.cholesky(a, lower=lower)) < 1e-12
    assert relerr((X.H @ A).to_numpy(), x.conj().T @ a) < 1e-12
    assert relerr(numpywren.herk(X).to_numpy(), x @ x.conj().T) < 1e-12


# -- what has no complex path yet: a clear error naming the function --------------------------------------------
NOT_COMPLEX_YET = {   # name -> call; each must refuse complex before any task runs (shrinks as paths land)
    "kernel": lambda A, b: numpywren.kernel(A, kind="rbf", gamma=1.0),
}


@pytest.mark.parametrize("name", sorted(NOT_COMPLEX_YET))
def test_factorizations_without_a_complex_path_refuse_it_by_name(ex, local_store, name):
    a = hpd(6)
    A = BigMatrix.from_numpy(a, (6, 6), local_store)
    with pytest.raises(TypeError, match=r"complex|float32 or float64|real float32/float64"):
        NOT_COMPLEX_YET[name](A, np.ones(6))


# -- the linear kernel and eigsh on complex data -----------------------------------------------------------------
@pytest.mark.parametrize("dtype", COMPLEX)
def test_linear_kernel_of_complex_data_is_the_hermitian_gram_matrix(ex, local_store, dtype):
    # K(X) = X X^H, stored as one triangle with a conjugated mirror; K(X, Y) = X Y^H
    x, y = crandn((11, 5), dtype, seed=31), crandn((7, 5), dtype, seed=32)
    X, Y = BigMatrix.from_numpy(x, (4, 3), local_store), BigMatrix.from_numpy(y, (3, 3), local_store)
    K = numpywren.kernel(X, kind="linear", executor=ex)
    assert K.dtype == np.dtype(dtype) and K.symmetric
    assert relerr(K.to_numpy(), x @ x.conj().T) < rtol(dtype)
    assert relerr(numpywren.kernel(X, Y, kind="linear", executor=ex).to_numpy(), x @ y.conj().T) < rtol(dtype)
    with pytest.raises(TypeError, match="complex data has only kind='linear'"):
        numpywren.kernel(X, kind="polynomial", executor=ex)


@pytest.mark.parametrize("dtype", COMPLEX)
def test_eigsh_of_a_hermitian_matrix_matches_numpy(ex, local_store, dtype):
    a = crandn((37, 37), "complex128", seed=33)
    a = (a + a.conj().T).astype(dtype)
    A = BigMatrix.from_numpy(a, (10, 10), local_store)
    w, v, info = numpywren.eigsh(A, 3, which="LA", seed=0, return_info=True, executor=ex)
    ref = np.linalg.eigvalsh(a.astype(np.complex128))
    assert w.dtype == np.finfo(dtype).dtype and v.dtype == np.dtype(dtype)   # real eigenvalues, as scipy's
    norm = np.abs(ref).max()
    np.testing.assert_allclose(w, ref[-3:], rtol=0, atol=10 * rtol(dtype) * norm)
    v128 = v.astype(np.complex128)
    residuals = np.linalg.norm(a.astype(np.complex128) @ v128 - v128 * w, axis=0)
    assert residuals.max() <= 2 * info["tolerance"] + 10 * np.finfo(dtype).eps * norm
    assert np.abs(v128.conj().T @ v128 - np.eye(3)).max() < 1e3 * np.finfo(dtype).eps * np.sqrt(37)
    # a Gram matrix herk stored as one triangle: its conjugated mirror is read
    x = crandn((20, 4), dtype, seed=34)
    G = numpywren.herk(BigMatrix.from_numpy(x, (6, 4), local_store), executor=ex)
    w = numpywren.eigsh(G, 2, which="LA", seed=1, return_eigenvectors=False, executor=ex)
    ref = np.linalg.eigvalsh((x @ x.conj().T).astype(np.complex128))
    np.testing.assert_allclose(w, ref[-2:], rtol=10 * rtol(dtype))
