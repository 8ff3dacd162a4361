"""zarr interoperability against numpy, zarr and dask: read in place (v3, v2, compressed, fill-value chunks),
refuse a chunk changed mid-job, write v3 in parallel; on a local folder and on the moto S3 server."""
from __future__ import annotations

import numpy as np
import pytest

zarr = pytest.importorskip("zarr")
da = pytest.importorskip("dask.array")

import numpywren  # noqa: E402
from numpywren import BigMatrix, InputChangedError, JobFailedError  # noqa: E402
from numpywren.executors.inline import InlineExecutor  # noqa: E402
from numpywren.zarr_io import split_url  # noqa: E402


@pytest.fixture
def ex(store):
    executor = InlineExecutor(2, store)
    with numpywren.using(executor):
        yield executor
    executor.shutdown()


def _url(store, name: str) -> str:
    base, _, query = store.url.partition("?")
    return f"{base}/{name}" + (f"?{query}" if query else "")


def _put_zarr(store, name: str, a: np.ndarray, chunks, **kwargs) -> None:
    """Create a zarr array with zarr itself, then copy its objects into ``store`` (what a dask or xarray user
    would have written there)."""
    memory = zarr.storage.MemoryStore()
    z = zarr.create_array(store=memory, shape=a.shape, chunks=chunks, dtype=a.dtype, **kwargs)
    z[:] = a
    for key, value in memory._store_dict.items():
        store.put(f"{name}/{key}", value.to_bytes())


def _open_with_zarr(store, name: str):
    """Read an array the workers wrote, with zarr's own code (objects copied through numpywren's store)."""
    from zarr.core.buffer import default_buffer_prototype

    buf = default_buffer_prototype().buffer
    content = {k[len(name) + 1:]: buf.from_bytes(store.get(k)) for k in store.list(f"{name}/")}
    return zarr.open_array(store=zarr.storage.MemoryStore(content), mode="r")


@pytest.mark.parametrize("kwargs", [{}, {"zarr_format": 2}, {"compressors": None}])
def test_from_zarr_reads_in_place(store, ex, kwargs):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((11, 7)), rng.standard_normal((7, 5))
    a[:4, :3] = 0.0  # an all-fill-value chunk: zarr does not store it
    _put_zarr(store, "a.zarr", a, (4, 3), **kwargs)
    A = BigMatrix.from_zarr(_url(store, "a.zarr"))
    assert A.shape == a.shape and A.tile_shape == (4, 3) and A.dtype == a.dtype
    np.testing.assert_array_equal(A.to_numpy(), a)
    np.testing.assert_array_equal(A[2:9, 1:6], a[2:9, 1:6])
    B = BigMatrix.from_numpy(b, (3, 2), store, "B")
    np.testing.assert_allclose((A @ B).to_numpy(), a @ b, rtol=1e-12)      # zarr input, native input
    np.testing.assert_allclose((A.T @ A).to_numpy(), a.T @ a, rtol=1e-12)  # a view of a zarr input
    np.testing.assert_allclose(A.sum(axis=0), a.sum(axis=0), rtol=1e-12)


def test_float32_and_big_chunks(local_store, tmp_path):
    a = np.arange(30, dtype=np.float32).reshape(5, 6)
    z = zarr.create_array(store=str(tmp_path / "f.zarr"), shape=a.shape, chunks=(8, 4), dtype="float32")
    z[:] = a
    A = BigMatrix.from_zarr(z)  # a zarr Array in a folder works too; chunks larger than the array are clipped
    assert A.dtype == np.float32 and A.tile_shape == (5, 4)
    np.testing.assert_array_equal(A.to_numpy(), a)


def test_a_chunk_changed_mid_job_is_refused(store, ex):
    a = np.ones((8, 6))
    _put_zarr(store, "c.zarr", a, (4, 3))
    A = BigMatrix.from_zarr(_url(store, "c.zarr"))
    _put_zarr(store, "c.zarr", a * 2, (4, 3))  # rewritten after the job recorded the chunks
    with pytest.raises(JobFailedError, match="changed since the job opened it") as info:
        A.sum()
    assert isinstance(info.value.__cause__, InputChangedError)
    np.testing.assert_array_equal(BigMatrix.from_zarr(_url(store, "c.zarr")).to_numpy(), a * 2)  # reopened


def test_to_zarr_is_readable_by_zarr_and_dask(store, ex):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((10, 7)).astype(np.float32)
    a[4:8, :4] = 0.0
    A = BigMatrix.from_numpy(a, (4, 4), store, "A")
    Z = (A * 2).to_zarr(_url(store, "out.zarr"))
    assert Z.shape == a.shape and Z.dtype == np.float32
    np.testing.assert_array_equal(Z.to_numpy(), a * 2)
    z = _open_with_zarr(store, "out.zarr")
    assert z.metadata.zarr_format == 3 and z.chunks == (4, 4) and z.dtype == np.float32
    np.testing.assert_array_equal(z[:], a * 2)
    np.testing.assert_array_equal(da.from_zarr(z).compute(), a * 2)
    if store.url.startswith("file://"):  # zarr and dask open the folder themselves too
        folder = store.url[len("file://"):] + "/out.zarr"
        np.testing.assert_array_equal(zarr.open_array(folder, mode="r")[:], a * 2)
        np.testing.assert_array_equal(da.from_zarr(folder).compute(), a * 2)
    with pytest.raises(FileExistsError, match="already exists"):
        A.to_zarr(_url(store, "out.zarr"))
    A.T.to_zarr(_url(store, "out.zarr"), overwrite=True, compressors=None)
    np.testing.assert_array_equal(_open_with_zarr(store, "out.zarr")[:], a.T)
    for place in ("A", "A/tiles"):  # the matrix itself, or inside it: never deleted
        with pytest.raises(ValueError, match="is \\(or holds, or is inside\\) the matrix being written"):
            A.T.to_zarr(_url(store, place), overwrite=True)
    np.testing.assert_array_equal(A.to_numpy(), a)


def test_zarr_errors(local_store, tmp_path):
    with pytest.raises(FileNotFoundError, match="no zarr array at 'nothing.zarr'"):
        BigMatrix.from_zarr(str(tmp_path / "nothing.zarr"))
    z = zarr.create_array(store=str(tmp_path / "i.zarr"), shape=(4, 4), chunks=(2, 2), dtype="int32")
    with pytest.raises(TypeError, match="data type 'int32' is not supported"):
        BigMatrix.from_zarr(z)
    zarr.create_array(store=str(tmp_path / "3d.zarr"), shape=(4, 4, 2), chunks=(2, 2, 2), dtype="float64")
    with pytest.raises(ValueError, match="2-D zarr arrays"):
        BigMatrix.from_zarr(str(tmp_path / "3d.zarr"))
    with pytest.raises(ValueError, match="must name an array inside a folder"):
        split_url("s3://bucket")


def test_check_finite_scans_zarr_inputs(local_store):
    a = np.ones((6, 4))
    a[4, 1] = np.nan
    _put_zarr(local_store, "n.zarr", a, (3, 2))
    Z = BigMatrix.from_zarr(_url(local_store, "n.zarr"))
    B = BigMatrix.from_numpy(np.ones((4, 2)), 2, local_store, "B")
    with InlineExecutor(2, local_store) as ex:
        with pytest.raises(ValueError, match=r"holds 1 NaN or inf values .* \(1, 0\): 1"):
            numpywren.matmul(Z, B, executor=ex, check_finite=True)
        with pytest.raises(ValueError, match="holds 1 NaN"):
            numpywren.matmul(B.T, Z.T, executor=ex, check_finite=True)
