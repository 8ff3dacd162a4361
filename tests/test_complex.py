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
