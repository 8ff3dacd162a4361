"""The array-library surface against numpy: element-wise ops, reductions, slicing, the numpy protocol,
mixed numpy operands and temporaries (numpywren.elementwise)."""
from __future__ import annotations

import gc
import json

import numpy as np
import pytest

import numpywren
from numpywren import BigMatrix, protocol
from numpywren.executors.inline import InlineExecutor


@pytest.fixture
def ex(request):
    store = request.getfixturevalue("store" if "store" in request.fixturenames else "local_store")
    executor = InlineExecutor(2, store)
    with numpywren.using(executor):
        yield executor
    executor.shutdown()


def _pair(store, shape=(11, 7), tile=(4, 3), dtype="float64", seed=0):
    rng = np.random.default_rng(seed)
    a, b = (rng.standard_normal(shape).astype(dtype) for _ in range(2))
    return a, b, BigMatrix.from_numpy(a, tile, store, "A"), BigMatrix.from_numpy(b, tile, store, "B")


def _matrices(store) -> set[str]:
    return {k.split("/")[1] for k in store.list("matrices/")}


def test_ops_on_both_stores(store, ex):
    a, b, A, B = _pair(store)
    np.testing.assert_allclose(((A + B) * 2).to_numpy(), (a + b) * 2, rtol=1e-15)
    np.testing.assert_allclose((1 - A.T).to_numpy(), 1 - a.T, rtol=1e-15)
    np.testing.assert_allclose(A.sum(axis=0), a.sum(axis=0), rtol=1e-12)
    assert A.max() == a.max() and A[3:9, 2] .tolist() == a[3:9, 2].tolist()


def test_binary_and_unary_ops_match_numpy(local_store, ex):
    store = local_store
    a, b, A, B = _pair(store)  # ragged tiles: 11x7 in 4x3
    cases = {"A + B": (A + B, a + b), "A - B": (A - B, a - b), "A * B": (A * B, a * b), "A / B": (A / B, a / b),
             "A * 2": (A * 2, a * 2), "2 * A": (2 * A, 2 * a), "2 - A": (2 - A, 2 - a), "A / 4": (A / 4, a / 4),
             "1 / A": (1 / A, 1 / a), "-A": (-A, -a), "abs(A)": (abs(A), abs(a)), "A ** 2": (A ** 2, a ** 2),
             "A + A.T.T": (A + A.T.T, a + a), "(A + B) * 2": ((A + B) * 2, (a + b) * 2),
             "np.add": (np.add(A, B), a + b), "np.sqrt(abs)": (np.sqrt(abs(A)), np.sqrt(abs(a))),
             "np.float64(3) * A": (np.float64(3) * A, 3 * a), "np.maximum": (np.maximum(A, B), np.maximum(a, b))}
    for name, (C, expected) in cases.items():
        assert isinstance(C, BigMatrix), name
        got = C.to_numpy()
        assert got.shape == expected.shape and got.dtype == expected.dtype, name
        np.testing.assert_allclose(got, expected, rtol=1e-14, err_msg=name)


def test_dtypes_follow_numpy(local_store, ex):
    a, b, A, B = _pair(local_store, dtype="float32")
    B64 = BigMatrix.from_numpy(b.astype(np.float64), (4, 3), local_store, "B64")
    assert (A * 2.5).dtype == (a * 2.5).dtype == np.float32     # a Python float keeps float32 (NEP 50)
    assert (A * np.float64(2.5)).dtype == np.float64
    assert (A + B64).dtype == np.float64
    np.testing.assert_allclose((A + B64).to_numpy(), a + b.astype(np.float64), rtol=1e-15)
    C = A.astype("float64")
    assert C.dtype == np.float64 and np.array_equal(C.to_numpy(), a.astype(np.float64))
    D = A.T.copy()  # a view copied into native tiles
    assert D.shape == (7, 11) and not D.transposed and np.array_equal(D.to_numpy(), a.T)
    with pytest.raises(TypeError, match="int64 is not supported"):
        A.astype("int64")
    assert (A * 1j).dtype == (a * 1j).dtype == np.complex64    # complex scalars promote as numpy (test_complex)
    with pytest.raises(TypeError, match="real or complex numbers"):
        A * np.datetime64(1, "s")
    inf = (A * np.inf).to_numpy()  # inf and NaN cross the wire exactly (scalars travel as hex floats)
    assert np.array_equal(inf, a * np.inf)


def test_mixed_operand_errors(local_store, ex):
    a, b, A, B = _pair(local_store)
    with pytest.raises(ValueError, match=r"shapes \(11, 7\) and \(7, 11\) differ"):
        A + A.T
    C = BigMatrix.from_numpy(b, (5, 3), local_store, "C")
    with pytest.raises(ValueError, match=r"tile shapes \(4, 3\) and \(5, 3\) differ; re-tile"):
        A + C
    with pytest.raises(ValueError, match="does not broadcast"):
        A + np.ones(7)
    with pytest.raises(TypeError, match="unsupported operand type str"):
        A + "x"


def test_numpy_operands_are_stored_and_cleaned_up(local_store, ex):
    store = local_store
    a, b, A, B = _pair(store, shape=(9, 6), tile=(4, 4))
    before = set(store.list(""))
    np.testing.assert_allclose((A + b).to_numpy(), a + b, rtol=1e-15)
    np.testing.assert_allclose((b - A).to_numpy(), b - a, rtol=1e-15)
    x = np.random.default_rng(1).standard_normal((6, 5))
    np.testing.assert_allclose((A @ x).to_numpy(), a @ x, rtol=1e-12)
    y = np.random.default_rng(2).standard_normal((3, 9))
    np.testing.assert_allclose((y @ A).to_numpy(), y @ a, rtol=1e-12)   # numpy's ndarray @ BigMatrix
    np.testing.assert_allclose(A @ x[:, 0], a @ x[:, 0], rtol=1e-12)    # a vector gives a vector, as numpy
    np.testing.assert_allclose(np.dot(A, x).to_numpy(), a @ x, rtol=1e-12)
    gc.collect()
    left = set(store.list("")) - before
    assert not [k for k in left if "/tiles/" in k or k.endswith("meta.json")], sorted(left)[:5]
    with pytest.raises(ValueError, match="not aligned"):
        A @ np.ones((5, 2))


def test_unnamed_intermediates_are_deleted(store, ex):
    a, b, A, B = _pair(store)
    C = (A + B) * 2
    assert len(_matrices(store)) == 1            # the A + B inside is gone already
    T = C.T                                      # a view shares its temporary
    del C
    gc.collect()
    assert len(_matrices(store)) == 1
    np.testing.assert_allclose(T.to_numpy(), ((a + b) * 2).T, rtol=1e-15)
    kept = (A - B).keep()
    del T
    gc.collect()
    assert _matrices(store) == {kept.key.split("/")[1]}
    np.testing.assert_allclose(BigMatrix.open(store, kept.key).to_numpy(), a - b, rtol=1e-15)
    kept.delete()
    named = numpywren.elementwise.binary("add", A, B, out="sum")
    del named
    gc.collect()
    np.testing.assert_allclose(BigMatrix.open(store, "sum").to_numpy(), a + b)  # out= is never a temporary


def test_a_job_written_over_a_temporary_keeps_its_result(store, ex):
    """out= a temporary (or its key) makes the result permanent: dropping the old handle deletes nothing."""
    a, b, A, B = _pair(store, shape=(8, 8), tile=(4, 4))
    T = A + B
    C = numpywren.matmul(A, B, out=T, progress=False)
    del T
    gc.collect()
    np.testing.assert_allclose(C.to_numpy(), a @ b, rtol=1e-12)
    T = A * 2
    D = numpywren.elementwise.binary("subtract", A, B, out=T.key)
    del T
    gc.collect()
    np.testing.assert_array_equal(D.to_numpy(), a - b)


def test_integer_numpy_operands_promote_like_numpy(local_store, ex):
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    A = BigMatrix.from_numpy(a, 2, local_store, "A32")
    for x in (np.ones((3, 4), np.int8), np.ones((3, 4), np.int16), np.ones((3, 4), bool), np.ones((3, 4), np.int32)):
        got = A + x
        assert got.dtype == (a + x).dtype, x.dtype
        np.testing.assert_array_equal(got.to_numpy(), a + x)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_reductions_match_numpy(local_store, ex, dtype):
    a, _, A, _ = _pair(local_store, shape=(13, 10), tile=(4, 3), dtype=dtype)
    rtol = 1e-12 if dtype == "float64" else 1e-5
    for name in ("sum", "mean", "max", "min"):
        for axis in (None, 0, 1, -1):
            got, expected = getattr(A, name)(axis=axis), getattr(a, name)(axis=axis)
            assert np.shape(got) == np.shape(expected) and got.dtype == expected.dtype, (name, axis)
            # float32 sums cancel: bound the error by the magnitudes summed, not by the result
            atol = 0 if dtype == "float64" or name in ("max", "min") else 1e-6 * np.abs(a).sum()
            np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol, err_msg=f"{name} axis={axis}")
        np.testing.assert_allclose(getattr(np, name)(A), getattr(np, name)(a), rtol=rtol)
    np.testing.assert_allclose(np.sum(A, axis=0), a.sum(axis=0), rtol=rtol)
    np.testing.assert_allclose(A.T.sum(axis=1), a.T.sum(axis=1), rtol=rtol)
    np.testing.assert_allclose(np.linalg.norm(A), np.linalg.norm(a), rtol=rtol)
    assert np.linalg.norm(A).dtype == np.linalg.norm(a).dtype
    for offset in (0, 2, -3, 9, -12):
        np.testing.assert_array_equal(A.diagonal(offset), a.diagonal(offset))
        np.testing.assert_allclose(np.trace(A, offset), np.trace(a, offset), rtol=rtol)
    assert np.trace(A).dtype == np.trace(a).dtype
    with pytest.raises(np.exceptions.AxisError):
        A.sum(axis=2)


@pytest.mark.parametrize("shape, tile, workers, tasks, combines, most", [
    ((16, 16), 4, 2, 2, 0, 8),    # 4 row blocks for 2 workers: one task per worker reads a band of 2 row blocks
    ((22, 13), 4, 2, 2, 0, 12),   # 6 ragged row blocks: bands of 3 (the last one's tile has 2 rows)
    ((40, 24), 4, 2, 5, 0, 12),   # 10 row blocks of 6 tiles: bands of 2 (at most BAND_MAX_TILES tiles a task)
    ((4, 64), 4, 2, 4, 1, 4),     # 1 row block of 16 tiles: split into 4 runs, combined
    ((12, 12), 4, 4, 9, 3, 1),    # 3 row blocks for 4 workers: every tile a task (3 runs of 1)
])
def test_reductions_read_runs_of_tiles_per_task_and_match_numpy(local_store, shape, tile, workers, tasks, combines,
                                                                most):
    """A reduce task reads a run of a row block's tiles, or a band of row blocks when every worker has two or
    more (fewer tasks, no combine step); the results stay numpy's, per axis and in total."""
    a = np.random.default_rng(3).standard_normal(shape)
    A = BigMatrix.from_numpy(a, tile, local_store, "runs")
    with InlineExecutor(workers, local_store) as ex:
        plan = A.sum(axis=1, executor=ex, compute=False)
        ops = [t.op for t in plan.dag]
        assert (ops.count("reduce"), ops.count("combine")) == (tasks, combines)
        assert max(len(t.inputs) for t in plan.dag if t.op == "reduce") == most
        for name in ("sum", "max", "min", "mean"):
            for axis in (None, 0, 1):
                np.testing.assert_allclose(getattr(A, name)(axis=axis, executor=ex), getattr(a, name)(axis=axis),
                                           rtol=1e-12, atol=1e-12, err_msg=f"{name} axis={axis}")
        np.testing.assert_allclose(A.norm(executor=ex), np.linalg.norm(a), rtol=1e-12)


@pytest.mark.parametrize("dtype", ["float64", "complex128"])
def test_reductions_read_tiles_in_checked_row_pieces(local_store, ex, monkeypatch, dtype):
    """A reduce task checks and reduces each tile piece by piece (one pass over memory); the results stay
    numpy's, and a tile whose bytes changed fails the job: no value computed from it comes back."""
    from numpywren import tile as codec

    monkeypatch.setattr(codec, "ROW_BLOCK_BYTES", 3 * 7 * np.dtype(dtype).itemsize)  # 3 rows of a 7-wide tile
    rng = np.random.default_rng(8)
    a = rng.standard_normal((23, 19)) + (1j * rng.standard_normal((23, 19)) if dtype == "complex128" else 0)
    a[5, 4] = np.nan if dtype == "float64" else a[5, 4]
    A = BigMatrix.from_numpy(a, (8, 7), local_store, "pieces")
    kinds = ("sum", "mean", "max", "min") if dtype == "float64" else ("sum", "mean")
    for name in kinds:
        for axis in (None, 0, 1):
            np.testing.assert_allclose(getattr(A, name)(axis=axis), getattr(a, name)(axis=axis), rtol=1e-13,
                                       err_msg=f"{name} axis={axis}")
    a[5, 4] = 1.0
    A = BigMatrix.from_numpy(a, (8, 7), local_store, "pieces", overwrite=True)
    np.testing.assert_allclose(A.norm(), np.linalg.norm(a), rtol=1e-13)
    key = A.tile_key(1, 2)
    data = bytearray(local_store.get(key))
    data[len(data) - len(data) // 3] ^= 0x01   # a byte of the array in a middle piece; the header stays valid
    local_store.put(key, bytes(data))
    for reduction in (lambda: A.sum(), lambda: A.norm(), lambda: A.mean(axis=1), lambda: A.sum(axis=0)):
        with pytest.raises(numpywren.JobFailedError, match="checksum mismatch"):
            reduction()


def test_nan_propagates_in_reductions(local_store, ex):
    a = np.arange(12.0).reshape(3, 4)
    a[1, 2] = np.nan
    A = BigMatrix.from_numpy(a, 2, local_store, "nan")
    assert np.isnan(A.max()) and np.isnan(A.sum())
    np.testing.assert_array_equal(A.min(axis=0), a.min(axis=0))


def test_slicing_matches_numpy(store):
    a = np.arange(13 * 10, dtype=np.float64).reshape(13, 10)
    A = BigMatrix.from_numpy(a, (4, 3), store, "S")
    for key in [np.s_[0:5, 2:7], np.s_[3], np.s_[-1], np.s_[:, 4], np.s_[2, -3], np.s_[::3, ::-2],
                np.s_[12:2:-4, 1], np.s_[5:5, :], np.s_[...], np.s_[..., 3], np.s_[4:100, 8:]]:
        got, expected = A[key], a[key]
        assert np.shape(got) == expected.shape and got.dtype == expected.dtype, key
        np.testing.assert_array_equal(got, expected, err_msg=str(key))
    assert A[3, 4] == a[3, 4] and isinstance(A[3, 4], np.float64)
    np.testing.assert_array_equal(A.T[2:5, 1:12], a.T[2:5, 1:12])
    with pytest.raises(IndexError, match="index 13 is out of bounds for axis 0 with size 13"):
        A[13]
    with pytest.raises(IndexError, match="too many indices"):
        A[1, 2, 3]
    with pytest.raises(TypeError, match="ints or slices"):
        A[[1, 2]]


def test_slicing_reads_only_the_tiles_it_needs(local_store):
    A = BigMatrix.from_numpy(np.ones((40, 40)), 10, local_store, "big")
    reads = []
    real = A.get_block
    A.get_block = lambda i, j: reads.append((i, j)) or real(i, j)
    A[12:18, 25:31]
    assert sorted(reads) == [(1, 2), (1, 3)]


def test_numpy_protocol_is_honest(local_store, ex, monkeypatch):
    a, _, A, _ = _pair(local_store)
    arr = np.asarray(A)
    assert arr.shape == a.shape and np.array_equal(arr, a)
    assert np.asarray(A, dtype=np.float32).dtype == np.float32
    assert np.shape(A) == a.shape and np.ndim(A) == 2 and np.size(A) == a.size
    assert np.transpose(A) == A.T
    with pytest.raises(TypeError, match="np.sin is not supported on a BigMatrix"):
        np.sin(A)
    with pytest.raises(TypeError, match="np.add.reduce is not supported"):
        np.add.reduce(A)
    with pytest.raises(TypeError, match="np.cumsum is not supported on a BigMatrix"):
        np.cumsum(A)
    with pytest.raises(TypeError, match="np.linalg.svd is not supported"):
        np.linalg.svd(A)
    with pytest.raises(TypeError, match="Frobenius"):
        np.linalg.norm(A, ord=2)
    with pytest.raises(TypeError, match="supports only axis="):
        np.sum(A, keepdims=True)
    with pytest.raises(TypeError, match=r"with \['out'\] is not supported"):
        np.add(A, A, out=np.empty(a.shape))
    monkeypatch.setattr(numpywren.elementwise, "MAX_ARRAY_BYTES", 100)
    with pytest.raises(ValueError, match="above numpywren.elementwise.MAX_ARRAY_BYTES"):
        np.asarray(A)


@pytest.mark.parametrize("op", ["add", "subtract", "multiply", "divide"])
def test_numexpr_kernel_matches_numpy(op):
    from blocks.elementwise import apply

    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((64, 48)), rng.standard_normal((64, 48))
    for dtype, other, swap in (("float64", b, False), ("float64", 2.5, True), ("float32", 2.5, False)):
        x = a.astype(dtype)
        want = apply(op, x, other, dtype, swap=swap, use_numexpr=False)
        got = apply(op, x, other, dtype, swap=swap, use_numexpr=True)
        assert got.dtype == want.dtype == np.dtype(dtype)
        np.testing.assert_allclose(got, want, rtol=1e-6 if dtype == "float32" else 1e-15)


def test_a_failed_operator_job_leaves_no_result(local_store, ex):
    a, b, A, B = _pair(local_store, shape=(8, 8), tile=(4, 4))
    local_store.put(A.tile_key(1, 1), b"not a tile")
    for op in (lambda: A @ B, lambda: A + B, lambda: A.sum()):
        with pytest.raises(numpywren.JobFailedError, match="CorruptTileError"):
            op()
        gc.collect()
        assert not _matrices(local_store)


@pytest.mark.parametrize("dtype", ["float64", "float32", "complex128", "complex64"])
def test_sum_of_squares_kernel_matches_numpy_in_every_layout(dtype):
    """The norm's row kernel (a BLAS dot per row; a complex tile through its real view) gives each row's
    sum of |x|^2 as numpy computes it, real, for C-ordered, transposed and strided tiles."""
    from blocks.elementwise import reduce_rows

    rng = np.random.default_rng(9)
    x = rng.standard_normal((37, 53)) + (1j * rng.standard_normal((37, 53)) if dtype.startswith("c") else 0)
    x = x.astype(dtype)
    real = np.empty(0, dtype).real.dtype
    rtol = 1e-5 if real == np.float32 else 1e-13
    for tile in (x, x.T, x[:, ::3], x[::2]):
        column = reduce_rows("sumsq", tile, real)
        assert column.dtype == real and column.shape == (tile.shape[0], 1)
        np.testing.assert_allclose(column[:, 0], (np.abs(tile.astype(np.complex128)) ** 2).sum(axis=1), rtol=rtol)


@pytest.mark.parametrize("dtype", ["float64", "float32", "complex128", "complex64"])
def test_row_reductions_written_in_place_match_numpy(dtype):
    """reduce_rows(..., out=) (what a reduce task calls for each piece of a tile) writes each row's result
    into the given column, numpy's values for every kind, in the tile's precision or a wider column's; so does
    row_reducer's function (the same with its checks done once per tile)."""
    from blocks.elementwise import reduce_rows, row_reducer

    rng = np.random.default_rng(10)
    x = rng.standard_normal((37, 53)) + (1j * rng.standard_normal((37, 53)) if dtype.startswith("c") else 0)
    x = x.astype(dtype)
    real = np.empty(0, dtype).real.dtype
    wide = np.complex128 if dtype.startswith("c") else np.float64
    rtol = 1e-5 if real == np.float32 else 1e-13
    expected = {"sum": lambda t: t.astype(wide).sum(axis=1), "max": lambda t: t.max(axis=1),
                "min": lambda t: t.min(axis=1), "sumsq": lambda t: (np.abs(t.astype(np.complex128)) ** 2).sum(axis=1)}
    for kind, numpy_kind in expected.items():
        if kind in ("max", "min") and dtype.startswith("c"):
            continue
        for column_dtype in ({real, np.float64} if kind == "sumsq" else {np.dtype(dtype), np.dtype(wide)}):
            for tile in (x, x[::2], x[:, ::3]):
                column = np.full(tile.shape[0] + 2, -7.0, column_dtype)
                got = reduce_rows(kind, tile, column_dtype, out=column[1:-1])
                assert np.shares_memory(got, column)
                np.testing.assert_allclose(column[1:-1], numpy_kind(tile), rtol=rtol)
                assert column[0] == column[-1] == -7.0   # nothing written outside the rows
                again = np.full(tile.shape[0], -7.0, column_dtype)
                row_reducer(kind, tile.dtype, column_dtype)(tile, again)   # checks done once per tile
                np.testing.assert_array_equal(again, column[1:-1])


@pytest.mark.parametrize("shape, tile", [((11, 7), (4, 3)), ((40, 7), (4, 3))])   # with and without combine tasks
def test_reductions_return_their_column_as_task_values(local_store, shape, tile):
    """The column comes back in the final tasks' JSON results (protocol.VALUE_PARAM): no tile of the result is
    written, and the values are numpy's, for every kind and axis."""
    a = np.random.default_rng(4).standard_normal(shape)
    A = BigMatrix.from_numpy(a, tile, local_store, "values")
    with InlineExecutor(2, local_store) as ex:
        for name, axis in (("sum", None), ("max", 0), ("min", 1), ("mean", 1), ("norm", None)):
            plan = getattr(A, name)(**({} if axis is None else {"axis": axis}), executor=ex, compute=False)
            R = plan.result
            finals = [t for t in plan.dag if t.output[0] is R]
            assert finals and all(t.params.get(protocol.VALUE_PARAM) for t in finals)
            report = numpywren.run(plan, ex)
            want = np.linalg.norm(a) if name == "norm" else getattr(a, name)(axis=axis)
            np.testing.assert_allclose(plan.value, want, rtol=1e-12, err_msg=f"{name} axis={axis}")
            assert sorted(report.values) == sorted(t.id for t in finals)
            assert not list(local_store.list(f"{R.key}/"))   # nothing of the result is left in the store
            if not any(t.op == "combine" for t in plan.dag):
                assert report.bytes_written == 0


def test_a_reduction_column_above_the_value_bound_is_written_as_tiles(local_store, monkeypatch):
    """Above protocol.VALUE_MAX_BYTES a block of the column is a stored tile again (verified and read back)."""
    monkeypatch.setattr(protocol, "VALUE_MAX_BYTES", 3 * 8)    # less than one 4-row float64 block
    a = np.random.default_rng(5).standard_normal((40, 7))
    A = BigMatrix.from_numpy(a, (4, 3), local_store, "large")
    with InlineExecutor(2, local_store) as ex:
        plan = A.sum(axis=1, executor=ex, compute=False)
        assert not any(t.params.get(protocol.VALUE_PARAM) for t in plan.dag)
        report = numpywren.run(plan, ex)
        np.testing.assert_allclose(plan.value, a.sum(axis=1), rtol=1e-12)
        assert report.bytes_written > 0 and not report.values
        with pytest.raises(ValueError, match="larger than a value may be"):
            protocol.encode_value(np.zeros((4, 1)), "r", "g")


def test_a_reduction_value_of_another_run_or_a_taken_over_output_fails_the_job(local_store, monkeypatch):
    """A value is checked as a tile is: bound to this run and generation, and the output's record must still
    name this run when the job ends; otherwise the job fails, naming the other run, and returns nothing."""
    from numpywren.worker import tasks

    a = np.random.default_rng(6).standard_normal((16, 8))
    A = BigMatrix.from_numpy(a, 4, local_store, "fenced")
    real = tasks.encode_value
    with InlineExecutor(2, local_store) as ex:
        monkeypatch.setattr(tasks, "encode_value", lambda block, run, gen: real(block, "sum-other", gen))
        with pytest.raises(numpywren.JobFailedError, match="returned a value of run 'sum-other'"):
            A.sum(executor=ex)
        monkeypatch.setattr(tasks, "encode_value", lambda block, run, gen: real(block, run, "another-generation"))
        with pytest.raises(numpywren.JobFailedError, match="for generation another-generation"):
            A.sum(executor=ex)

        def taken_over(block, run, gen):   # another run claims the output while this one computes
            plan_key = next(k for k in local_store.list("matrices/") if k.endswith("/job.json"))
            record = json.loads(local_store.get(plan_key))
            local_store.put(plan_key, json.dumps({**record, "run": "sum-intruder"}).encode())
            return real(block, run, gen)
        monkeypatch.setattr(tasks, "encode_value", taken_over)
        with pytest.raises(numpywren.JobFailedError, match="taken over by run 'sum-intruder'"):
            A.sum(executor=ex)
        monkeypatch.setattr(tasks, "encode_value", real)
        np.testing.assert_allclose(A.sum(executor=ex), a.sum(), rtol=1e-12)
