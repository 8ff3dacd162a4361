"""GEMM / syrk as task DAGs on local workers, checked against numpy."""
import numpy as np
import pytest

import numpywren
from numpywren import BigMatrix
from numpywren.gemm import gemm_split


def rel_err(got, want):
    return np.linalg.norm(got - want) / np.linalg.norm(want)


TOL = {np.float64: 1e-13, np.float32: 1e-5}


def _pair(store, m, k, n, tiles, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    (tm, tk), (tk2, tn) = tiles
    return a, b, BigMatrix.from_numpy(a, (tm, tk), store), BigMatrix.from_numpy(b, (tk2, tn), store)


@pytest.mark.parametrize("m,k,n,tiles", [
    (256, 256, 256, ((64, 64), (64, 64))),        # square
    (300, 130, 170, ((64, 32), (32, 48))),        # rectangular and ragged in every dimension
    (1000, 40, 3, ((128, 40), (40, 3))),          # skinny
    (5, 700, 6, ((5, 100), (100, 6))),            # 1x1 output grid, long k
])
def test_matmul_matches_numpy(executor, m, k, n, tiles):
    a, b, A, B = _pair(executor.store, m, k, n, tiles)
    C = numpywren.matmul(A, B, executor=executor)
    assert C.shape == (m, n) and C.dtype == np.float64
    assert rel_err(C.to_numpy(), a @ b) < TOL[np.float64]
    assert C.report.executed == C.report.tasks >= C.grid[0] * C.grid[1]
    # multiply-adds of the products, plus the additions of any split-k reduction
    assert 2.0 * m * n * k <= C.report.flops <= 2.0 * m * n * k + m * n * A.grid[1]


def test_matmul_operator_and_transposed_operand(local_executor):
    store = local_executor.store
    rng = np.random.default_rng(1)
    a = rng.standard_normal((130, 90))
    b = rng.standard_normal((130, 70))
    A = BigMatrix.from_numpy(a, (32, 32), store)
    B = BigMatrix.from_numpy(b, (32, 32), store)
    C = numpywren.matmul(A.T, B, executor=local_executor)
    assert C.shape == (90, 70)
    assert rel_err(C.to_numpy(), a.T @ b) < 1e-13
    numpywren.api._default = local_executor  # A @ B uses the default executor
    try:
        D = A.T @ A
    finally:
        numpywren.api._default = None
    assert rel_err(D.to_numpy(), a.T @ a) < 1e-13


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float32_and_float64(local_executor, dtype):
    a, b, A, B = _pair(local_executor.store, 200, 150, 120, ((64, 64), (64, 64)), dtype=dtype)
    C = numpywren.matmul(A, B, executor=local_executor)
    assert C.dtype == dtype
    want = a.astype(np.float64) @ b.astype(np.float64)
    assert rel_err(C.to_numpy().astype(np.float64), want) < TOL[dtype]


def test_mixed_dtypes_promote_like_numpy(local_executor):
    store = local_executor.store
    a = np.random.default_rng(2).standard_normal((64, 64))
    A32 = BigMatrix.from_numpy(a.astype(np.float32), 32, store)
    A64 = BigMatrix.from_numpy(a, 32, store)
    C = numpywren.matmul(A32, A64, executor=local_executor)
    assert C.dtype == np.float64
    assert rel_err(C.to_numpy(), a.astype(np.float32).astype(np.float64) @ a) < 1e-13


@pytest.mark.parametrize("split", [None, 2, 7])
def test_split_k_on_a_one_tile_output(executor, split):
    a, b, A, B = _pair(executor.store, 40, 700, 30, ((40, 100), (100, 30)), seed=3)
    C = numpywren.matmul(A, B, executor=executor, split_k=split)
    assert C.grid == (1, 1)
    assert rel_err(C.to_numpy(), a @ b) < 1e-13
    chunks = split or gemm_split(1, 7, executor.workers)
    assert chunks > 1
    # chunks partial products, then a reduction tree of fan-in 4 over them
    sums = 0
    level = chunks
    while level > 1:
        level = -(-level // 4)
        sums += level
    assert C.report.tasks == chunks + sums
    # partial tiles are removed after success
    assert not [k for k in executor.store.list("jobs/") if "/scratch/" in k]


def test_split_rule():
    assert gemm_split(output_tiles=16, k_blocks=8, workers=2) == 1
    assert gemm_split(output_tiles=1, k_blocks=8, workers=2) == 2
    assert gemm_split(output_tiles=1, k_blocks=8, workers=100) == 8
    assert gemm_split(output_tiles=3, k_blocks=8, workers=10) == 4
    assert gemm_split(output_tiles=1, k_blocks=1, workers=10) == 1


def test_syrk_computes_one_triangle(executor):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((170, 90))
    X = BigMatrix.from_numpy(x, (48, 40), executor.store)
    C = numpywren.syrk(X, executor=executor)
    assert C.symmetric and C.shape == (170, 170)
    g = C.grid[0]
    assert C.report.tasks == g * (g + 1) // 2  # only i >= j tiles
    assert rel_err(C.to_numpy(), x @ x.T) < 1e-13
    stored = [k.rsplit("/", 1)[1] for k in executor.store.list(f"{C.key}/tiles/")]
    assert all(int(i) >= int(j) for i, j in (s.split("_") for s in stored))
    upper = C.get_block(0, g - 1)
    assert np.allclose(upper, (x @ x.T)[C.block_slices(0, g - 1)], rtol=1e-12, atol=1e-12)


def test_shape_mismatch_is_caught_before_any_task(local_executor):
    store = local_executor.store
    A = BigMatrix.from_numpy(np.ones((10, 6)), 4, store)
    B = BigMatrix.from_numpy(np.ones((7, 3)), 4, store)
    before = set(store.list("jobs/"))
    with pytest.raises(ValueError, match=r"not aligned .*6 \(dim 1 of A\) != 7 \(dim 0 of B\)"):
        numpywren.matmul(A, B, executor=local_executor)
    B2 = BigMatrix.from_numpy(np.ones((6, 3)), (3, 3), store)
    with pytest.raises(ValueError, match="inner tile sizes differ"):
        numpywren.matmul(A, B2, executor=local_executor)
    with pytest.raises(TypeError, match="must be a BigMatrix"):
        numpywren.matmul(A, np.ones((6, 3)), executor=local_executor)
    assert set(store.list("jobs/")) == before  # nothing was submitted


def test_a_task_that_fails_once_is_retried(local_store):
    """The first run of one tile task raises; the retry succeeds and the result is exact."""
    a, b, A, B = _pair(local_store, 96, 64, 96, ((32, 32), (32, 32)), seed=5)
    with numpywren.LocalExecutor(2, local_store, faults="error:task=*/C1_2:attempt=1") as ex:
        C = numpywren.matmul(A, B, out="C-retry", executor=ex, retries=1, backoff=0.01)
    report = C.report
    assert report.retried == 1 and report.executed == 9 and "InjectedFault" in report.failures[0][2]
    assert rel_err(C.to_numpy(), a @ b) < 1e-13


def test_a_task_that_always_fails_stops_the_job(local_store):
    _, _, A, B = _pair(local_store, 64, 64, 64, ((32, 32), (32, 32)))
    with numpywren.LocalExecutor(2, local_store, faults="error:task=*/C0_1") as ex:
        with pytest.raises(numpywren.JobFailedError, match="C0_1.*failed 2 times") as info:
            numpywren.matmul(A, B, out="C-fail", executor=ex, retries=1, backoff=0.01)
    assert type(info.value.__cause__).__name__ == "InjectedFault"
    C = numpywren.BigMatrix.open(local_store, "C-fail")
    assert not C.block_exists(0, 1)


def test_matmul_and_syrk_without_out_return_temporaries_like_the_operator(local_store):
    """Like ``A @ B``: an unnamed result goes from the store with its last handle; out= and keep() stay."""
    import gc

    from numpywren.executors.inline import InlineExecutor

    a = np.arange(12.0).reshape(4, 3)
    A = BigMatrix.from_numpy(a, 2, local_store, "A")
    with InlineExecutor(2, local_store) as ex:
        C, S = numpywren.matmul(A, A.T, executor=ex), numpywren.syrk(A, executor=ex)
        np.testing.assert_allclose(C.to_numpy(), a @ a.T, rtol=1e-12)
        np.testing.assert_allclose(S.to_numpy(), a @ a.T, rtol=1e-12)
        kept = numpywren.matmul(A, A.T, executor=ex).keep()
        named = numpywren.matmul(A, A.T, out="named", executor=ex)
        keys = [C.key, S.key]
        assert all(local_store.exists(f"{k}/meta.json") for k in keys)
        del C, S
        gc.collect()
        assert not [k for k in keys if list(local_store.list(f"{k}/"))]
        assert local_store.exists(f"{kept.key}/meta.json") and local_store.exists("named/meta.json")
        kept_key = kept.key
        del kept, named
        gc.collect()
        assert len(list(local_store.list("named/tiles/"))) == 4 == len(list(local_store.list(f"{kept_key}/tiles/")))
