"""BigMatrix: tiled round trips on LocalStore and S3 (moto), metadata, block API, views, errors."""
from __future__ import annotations

import json
import mmap
import pickle
import re

import numpy as np
import pytest

import numpywren
from numpywren import BigMatrix, CorruptTileError, KeyNotFoundError, MatrixNotFoundError
from numpywren.matrix import FORMAT_VERSION, stored_tile_key
from numpywren.tile import ALIGN


def random(shape, dtype="float64", seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape,tiles,grid", [
    ((64, 64), 16, (4, 4)),              # square
    ((48, 80), (16, 32), (3, 3)),        # rectangular, ragged last column of tiles
    ((50, 37), (16, 10), (4, 4)),        # ragged in both dimensions
    ((7, 200), (7, 64), (1, 4)),         # one row of tiles
])
def test_round_trip(store, shape, tiles, grid, dtype):
    a = random(shape, dtype)
    A = BigMatrix.from_numpy(a, tiles, store, key="m/a")
    assert A.shape == shape and A.dtype == np.dtype(dtype) and A.grid == grid
    out = A.to_numpy()
    assert out.dtype == a.dtype
    np.testing.assert_array_equal(out, a)
    i, j = grid[0] - 1, grid[1] - 1  # the ragged corner
    corner = A.get_block(i, j)
    np.testing.assert_array_equal(corner, a[A.block_slices(i, j)])
    assert corner.shape == A.block_shape(i, j)
    assert len(list(store.list("m/a/tiles/"))) == grid[0] * grid[1]


def test_open_reads_the_metadata_back(store):
    a = random((30, 20), "float32")
    A = BigMatrix.from_numpy(a, (8, 6), store, key="saved")
    B = BigMatrix.open(store.url, "saved/")  # by URL, and a trailing slash is fine
    assert (B.shape, B.tile_shape, B.dtype, B.symmetric) == ((30, 20), (8, 6), np.float32, False)
    assert B == A and hash(B) == hash(A)
    np.testing.assert_array_equal(B.to_numpy(), a)


def test_block_api(store):
    A = BigMatrix.create((20, 12), (8, 8), "float64", store, key="blocks")
    assert not A.block_exists(0, 0)
    assert A.missing_blocks() == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]
    with pytest.raises(KeyNotFoundError, match=r"block \(1, 1\).*not been written.*blocks/tiles/[0-9a-f]{2}/1_1"):
        A.get_block(1, 1)
    a = random((20, 12))
    for i, j in [(0, 0), (2, 1)]:
        A.put_block(i, j, a[A.block_slices(i, j)])
    assert A.block_exists(2, 1) and A.block_shape(2, 1) == (4, 4)
    assert A.missing_blocks() == [(0, 1), (1, 0), (1, 1), (2, 0)]
    np.testing.assert_array_equal(A.get_block(2, 1), a[16:, 8:])
    with pytest.raises(ValueError, match=r"block \(2, 1\) of .* is already written.*from_numpy\(\.\.\., overwrite=True\)"):
        A.put_block(2, 1, np.zeros((4, 4)))  # by hand, a tile is written once per generation
    np.testing.assert_array_equal(A.get_block(2, 1), a[16:, 8:])
    A.put_block(2, 1, np.zeros((4, 4)), run="r1")  # a job's task may write its output again (retries)
    assert not A.get_block(2, 1).any()
    A.delete()
    assert list(store.list("blocks")) == []
    with pytest.raises(MatrixNotFoundError, match="no matrix at 'blocks'"):
        BigMatrix.open(store, "blocks")


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_a_corrupt_tile_is_an_error_naming_it(store, damage):
    A = BigMatrix.from_numpy(random((24, 24)), 8, store, key="bad")
    key = A.tile_key(1, 2)
    data = bytearray(store.get(key))
    if damage == "flip":
        data[-3] ^= 0x10
    else:
        del data[-100:]
    store.put(key, bytes(data))
    with pytest.raises(CorruptTileError, match=r"block \(1, 2\) of matrix 'bad' \(bad/tiles/[0-9a-f]{2}/1_2\)"):
        A.get_block(1, 2)
    with pytest.raises(CorruptTileError):
        A.to_numpy()
    A.get_block(2, 1)  # the others are intact


def test_a_masked_array_is_refused_not_stored_without_its_mask(local_store):
    with pytest.raises(TypeError, match="masked array.*filled"):
        BigMatrix.from_numpy(np.ma.masked_array(np.ones((2, 2)), mask=[[1, 0], [0, 0]]), 2, local_store, "m")
    assert list(local_store.list("m/")) == []


def test_from_numpy_stores_native_byte_order(local_store, local_executor):
    big_endian = np.arange(12.0).reshape(3, 4).astype(">f8")
    A = BigMatrix.from_numpy(big_endian, 2, local_store, "be")
    assert A.dtype == np.float64
    np.testing.assert_array_equal(A.to_numpy(), big_endian)
    with numpywren.using(local_executor):
        assert A.sum() == big_endian.sum()   # the workers read the tiles too


def test_transposed_view_copies_nothing(store):
    a = random((40, 24))
    A = BigMatrix.from_numpy(a, (16, 8), store, key="t")
    keys = list(store.list(""))
    At = A.T
    assert (At.shape, At.tile_shape, At.grid, len(At)) == ((24, 40), (8, 16), (3, 3), 24)
    np.testing.assert_array_equal(At.get_block(2, 1), a[16:32, 16:24].T)
    np.testing.assert_array_equal(At.to_numpy(), a.T)
    assert At.T == A and At != A and "'t'.T" in repr(At)
    np.testing.assert_array_equal(At.T.to_numpy(), a)
    assert list(store.list("")) == keys  # nothing was written
    # Writing through the view stores the tile in the matrix's own orientation.
    x = random((8, 16), seed=1)
    Bt = BigMatrix.create(A.shape, A.tile_shape, A.dtype, store, key="t2").T
    At, A = Bt, Bt.T
    At.put_block(0, 1, x)
    np.testing.assert_array_equal(A.get_block(1, 0), x.T)
    np.testing.assert_array_equal(At.get_block(0, 1), x)


def test_symmetric_matrix_stores_one_triangle(store):
    s = random((20, 20))
    s = s + s.T
    S = BigMatrix.create((20, 20), 8, "float64", store, key="sym", symmetric=True)
    assert S.stored_blocks() == [(0, 0), (1, 0), (1, 1), (2, 0), (2, 1), (2, 2)]
    for i, j in S.block_indices():
        if i >= j:
            S.put_block(i, j, s[S.block_slices(i, j)])
    assert S.missing_blocks() == []
    assert S.tile_key(0, 2) == S.tile_key(2, 0) == stored_tile_key("sym", 2, 0)
    assert re.fullmatch(r"sym/tiles/[0-9a-f]{2}/2_0", S.tile_key(2, 0))
    np.testing.assert_array_equal(S.get_block(0, 2), s[0:8, 16:20])
    np.testing.assert_array_equal(S.to_numpy(), s)
    np.testing.assert_array_equal(S.T.to_numpy(), s)
    assert BigMatrix.open(store, "sym").symmetric
    with pytest.raises(ValueError, match="square"):
        BigMatrix.create((20, 10), 5, "float64", store, symmetric=True)


def test_from_function_generates_tiles_on_the_workers(local_executor):
    def block(i, j):  # any worker can make any tile: seeded by its index
        rng = np.random.default_rng([i, j])
        rows, cols = min(32, 100 - 32 * i), min(32, 70 - 32 * j)
        return rng.standard_normal((rows, cols))

    A = BigMatrix.from_function(block, (100, 70), 32, executor=local_executor, key="gen")
    assert A.store.url == local_executor.store.url and A.missing_blocks() == []
    want = np.block([[block(i, j) for j in range(3)] for i in range(4)])
    np.testing.assert_array_equal(A.to_numpy(), want)
    # its map's objects (function, arguments, results) are gone; only the live executor's heartbeat stays
    assert [k for k in local_executor.store.list("jobs/") if not k.endswith("/heartbeat")] == []


def test_from_function_reports_a_wrong_tile(local_executor):
    # Only block (1, 0) is wrong, so the error names it whichever task the workers run first.
    def fn(i, j):
        return np.zeros((3, 3) if (i, j) == (1, 0) else (8, 8))

    with pytest.raises(Exception, match=r"block \(1, 0\).*must have shape \(8, 8\), got \(3, 3\)"):
        BigMatrix.from_function(fn, (16, 16), 8, executor=local_executor)


def test_tile_shape_rules(local_store):
    # An int means square tiles; ints and pairs larger than the matrix are clipped to it (as in dask/zarr).
    assert BigMatrix.create((10, 6), (16, 4), "float64", local_store, key="p").tile_shape == (10, 4)
    assert BigMatrix.create((10, 6), 16, "float64", local_store).tile_shape == (10, 6)
    with pytest.raises(ValueError, match="must be positive"):
        BigMatrix.create((10, 6), (0, 4), "float64", local_store)
    with pytest.raises(TypeError, match="tile_shape must be an int or a pair"):
        BigMatrix.create((10, 6), "big", "float64", local_store)
    with pytest.raises(ValueError, match="2-D"):
        BigMatrix.create((10, 6, 2), 4, "float64", local_store)
    with pytest.raises(ValueError, match="positive"):
        BigMatrix.create((0, 6), 4, "float64", local_store)
    with pytest.raises(TypeError, match="dtype int64 is not supported"):
        BigMatrix.create((10, 6), 4, "int64", local_store)


def test_wrong_block_index(local_store):
    A = BigMatrix.from_numpy(np.ones((10, 6)), 4, local_store, key="idx")
    for i, j in [(3, 0), (0, 2), (-1, 0)]:
        with pytest.raises(IndexError, match=rf"block index \({i}, {j}\) is outside the 3x2 block grid"):
            A.get_block(i, j)
    with pytest.raises(IndexError, match="outside the 2x3 block grid"):
        A.T.put_block(2, 0, np.ones((4, 4)))


def test_put_block_checks_shape_and_dtype(local_store):
    A = BigMatrix.create((10, 6), 4, "float64", local_store, key="chk")
    with pytest.raises(ValueError, match=r"block \(2, 1\) of .* must have shape \(2, 2\), got \(4, 4\)"):
        A.put_block(2, 1, np.ones((4, 4)))
    with pytest.raises(TypeError, match="must have dtype float64, got float32"):
        A.put_block(0, 0, np.ones((4, 4), np.float32))
    assert A.missing_blocks() == A.stored_blocks()  # nothing was written


def test_opening_a_key_without_metadata(store):
    with pytest.raises(MatrixNotFoundError, match=r"no matrix at 'nothing/here'.*no meta.json") as info:
        BigMatrix.open(store, "nothing/here")
    assert isinstance(info.value, KeyError)
    store.put("other/meta.json", b'{"format": "something else"}')
    with pytest.raises(ValueError, match="not a numpywren matrix"):
        BigMatrix.open(store, "other")


def test_create_refuses_to_replace_a_different_matrix(local_store):
    A = BigMatrix.from_numpy(np.ones((8, 8)), 4, local_store, key="x")
    assert BigMatrix.create((8, 8), 4, "float64", local_store, key="x") == A  # same metadata: fine
    with pytest.raises(FileExistsError, match="different matrix already exists at 'x'"):
        BigMatrix.create((8, 9), 4, "float64", local_store, key="x")
    B = BigMatrix.create((8, 9), 4, "float32", local_store, key="x", overwrite=True)
    assert B.missing_blocks() == B.stored_blocks() and BigMatrix.open(local_store, "x").dtype == np.float32


def test_conveniences(local_store):
    A = BigMatrix.from_numpy(np.arange(12.0), 5, local_store, key="v")  # 1-D becomes a column
    assert (A.shape, A.tile_shape, len(A), A.ndim, A.size, A.nbytes) == ((12, 1), (5, 1), 12, 2, 12, 96)
    assert repr(A) == (f"BigMatrix('v', shape=(12, 1), tile_shape=(5, 1), dtype=float64, "
                       f"store={local_store.url!r})")
    assert len(pickle.dumps(A)) < 1000  # a handle: tasks carry matrices by reference
    assert pickle.loads(pickle.dumps(A.T)) == A.T
    with pytest.raises(ValueError, match="1-D or 2-D"):
        BigMatrix.from_numpy(np.ones((2, 2, 2)), 2, local_store)


def test_local_reads_map_the_tile_and_survive_its_replacement(local_store):
    a = random((512, 384))  # 1.5 MB: mapped, not read
    A = BigMatrix.from_numpy(a, (512, 384), local_store, key="mm")
    block = A.get_block(0, 0)
    assert isinstance(_root(block), mmap.mmap)
    assert block.ctypes.data % ALIGN == 0 and not block.flags.writeable
    A.put_block(0, 0, np.zeros((512, 384)), run="r2")  # a task's retry replaces the tile...
    np.testing.assert_array_equal(block, a)  # ...the mapped read still sees the complete old one
    assert not A.get_block(0, 0).any()
    A.delete()
    np.testing.assert_array_equal(block, a)


def _root(array):
    base = array
    while isinstance(base, np.ndarray):
        base = base.base
    return base.obj if isinstance(base, memoryview) else base


def test_small_local_tiles_are_read_into_aligned_memory(local_store):
    a = random((30, 20), "float32")  # 2.4 KB: read, not mapped
    A = BigMatrix.from_numpy(a, (30, 20), local_store, key="small")
    block = A.get_block(0, 0)
    assert not isinstance(_root(block), mmap.mmap)
    assert block.ctypes.data % ALIGN == 0 and not block.flags.writeable
    np.testing.assert_array_equal(block, a)


# -- input a careless caller may pass ------------------------------------------------------------
def test_indices_and_shapes_must_be_ints(local_store):
    m = BigMatrix.from_numpy(np.arange(35.).reshape(5, 7), (2, 3), local_store, key="m")
    for i, j in [(0.0, 0), (True, 0), ("0", 0), (0, 1.5)]:
        with pytest.raises(TypeError, match="block indices must be ints"):
            m.put_block(i, j, np.ones((2, 3)))
        with pytest.raises(TypeError, match="block indices must be ints"):
            m.get_block(i, j)
    assert m.get_block(np.int64(2), 0).shape == (1, 3)  # numpy ints are ints
    with pytest.raises(ValueError, match="shape must be a pair of ints, got \\(3.7, 4\\)"):
        BigMatrix.create((3.7, 4), 2, store=local_store)
    for tile_shape in [(2.5, 1.9), "22", (True, 2)]:
        with pytest.raises(TypeError, match="tile_shape must be an int or a pair of ints"):
            BigMatrix.from_numpy(np.ones((4, 4)), tile_shape, local_store)


@pytest.mark.parametrize("key", ["./c", "a//b", "d/./e", "x/../y"])
def test_keys_that_a_folder_and_a_bucket_would_read_differently_are_refused(store, key):
    with pytest.raises(ValueError, match="invalid store key"):
        BigMatrix.from_numpy(np.ones((4, 4)), 2, store, key=key)


def test_constructors_never_overwrite_silently(local_executor):
    store = local_executor.store
    BigMatrix.from_numpy(np.ones((4, 4)), 2, store, key="A")
    with pytest.raises(FileExistsError, match="pass overwrite=True"):
        BigMatrix.from_numpy(np.zeros((4, 4)), 2, store, key="A")
    with pytest.raises(FileExistsError, match="pass overwrite=True"):
        BigMatrix.from_function(np.zeros, (4, 4), 2, store=store, key="A", executor=local_executor)
    assert BigMatrix.open(store, "A").to_numpy().sum() == 16
    assert BigMatrix.from_numpy(np.zeros((4, 4)), 2, store, key="A", overwrite=True).to_numpy().sum() == 0


def test_from_function_refuses_lossy_tiles(local_executor):
    with pytest.raises(Exception, match="returned dtype complex128, which does not convert safely"):
        BigMatrix.from_function(lambda i, j: np.full((2, 2), 1 + 2j), (4, 4), 2, executor=local_executor)
    F = BigMatrix.from_function(lambda i, j: np.full((2, 2), i + j), (4, 4), 2, executor=local_executor)
    np.testing.assert_array_equal(F.to_numpy(), np.add.outer(np.arange(4) // 2, np.arange(4) // 2))


def test_a_stale_tile_of_another_shape_is_an_error_not_garbage(store):
    old = BigMatrix.from_numpy(np.ones((4, 4)), 2, store, key="x")
    old.delete()
    old.put_block(0, 0, np.ones((2, 2)))  # a late writer of the deleted matrix
    new = BigMatrix.create((4, 4), 4, store=store, key="x")
    with pytest.raises(CorruptTileError, match=r"block \(0, 0\) of matrix 'x'.*another run wrote into this matrix"):
        new.to_numpy()


def test_unreadable_metadata_names_the_matrix(store):
    for raw in (b"not json", b"[1, 2]", b'{"format": "numpywren.matrix", "version": 1}'):
        store.put("bad/meta.json", raw)
        with pytest.raises(ValueError, match="'bad' in .* is not a numpywren matrix"):
            BigMatrix.open(store, "bad")


# -- a meta.json is input: sizes are checked before anything enumerates blocks --------------------
@pytest.mark.parametrize("shape,tile_shape,grid", [([2**62, 4], [1, 4], r"\d+x1"),
                                                   ([10**5, 10**5], [1, 1], "100000x100000")])
def test_a_huge_shape_is_refused_before_its_blocks_are_listed(store, shape, tile_shape, grid):
    meta = {"format": "numpywren.matrix", "version": FORMAT_VERSION, "shape": shape, "tile_shape": tile_shape,
            "dtype": "float64", "symmetric": False, "generation": "gen-1"}
    store.put("huge/meta.json", json.dumps(meta).encode())
    with pytest.raises(ValueError, match=rf"matrix 'huge' in .* is too large: .* {grid} block grid"):
        BigMatrix.open(store, "huge")
    with pytest.raises(ValueError, match="too large"):
        BigMatrix.create(shape, tile_shape, store=store, key="huge2")
    assert not store.exists("huge2/meta.json")


# -- a failed constructor leaves nothing behind ----------------------------------------------------
def _fails_at_1_1(i, j):
    if (i, j) == (1, 1):
        raise ZeroDivisionError("no tile (1, 1) today")
    return np.ones((2, 2))


def test_a_failed_from_function_deletes_what_it_created(local_executor):
    store = local_executor.store
    with pytest.raises(ZeroDivisionError, match=r"no tile \(1, 1\) today"):
        BigMatrix.from_function(_fails_at_1_1, (4, 4), 2, store=store, key="gen", executor=local_executor)
    assert list(store.list("gen/")) == []
    assert BigMatrix.from_function(lambda i, j: np.ones((2, 2)), (4, 4), 2, store=store, key="gen",  # rerun: no overwrite
                                   executor=local_executor).to_numpy().sum() == 16


def test_a_failed_from_numpy_deletes_what_it_created_but_never_a_matrix_it_refused(local_store, monkeypatch):
    from numpywren.storage import StoreError

    kept = BigMatrix.from_numpy(np.ones((4, 4)), 2, local_store, key="kept")
    def failing(real):
        def put(key, data):
            if re.search(r"tiles/[0-9a-f]{2}/1_0$", key):
                raise StoreError(f"put {key!r} failed: disk full")
            return real(key, data)
        return put

    for name in ("put", "put_if_absent"):
        monkeypatch.setattr(local_store, name, failing(getattr(local_store, name)))
    with pytest.raises(StoreError, match="disk full"):
        BigMatrix.from_numpy(np.zeros((4, 4)), 2, local_store, key="new")
    assert list(local_store.list("new/")) == []
    with pytest.raises(FileExistsError):
        BigMatrix.from_numpy(np.zeros((4, 4)), 2, local_store, key="kept")
    assert BigMatrix.open(local_store, "kept").to_numpy().sum() == 16 == kept.to_numpy().sum()
    monkeypatch.undo()
    assert BigMatrix.from_numpy(np.zeros((4, 4)), 2, local_store, key="new").to_numpy().sum() == 0


def test_tiles_are_spread_over_hash_prefixes_and_one_listing_finds_them(store):
    """S3 serves ~5,500 GETs/s per key prefix: a matrix's tiles spread over up to 256 of them."""
    a = np.arange(64 * 64, dtype=float).reshape(64, 64)
    A = BigMatrix.from_numpy(a, (4, 4), store, key="spread")
    keys = list(store.list("spread/tiles/"))
    assert len(keys) == 256 and all(re.fullmatch(r"spread/tiles/[0-9a-f]{2}/\d+_\d+", k) for k in keys)
    assert len({k.split("/")[2] for k in keys}) >= 128  # 256 tiles over many prefixes, not one
    assert sorted(keys) == sorted(A.tile_key(i, j) for i in range(16) for j in range(16))
    assert A.missing_blocks() == []
    store.delete(A.tile_key(3, 5))
    assert A.missing_blocks() == [(3, 5)]
    np.testing.assert_array_equal(A.get_block(15, 2), a[60:64, 8:12])
