"""tile_shape=None: the tile numpywren.tiling chooses (deterministic, fits a worker, respects dtype, runs)."""
from __future__ import annotations

import tempfile

import numpy as np
import pytest

import numpywren
from numpywren import BigMatrix, simulate, tiling
from numpywren.memory import WorkerMemoryError, check_fits
from numpywren.storage import LocalStore


def _dag(operation, shape, tile, dtype, workers):
    sizes = tiling._sizes(operation, *shape)
    with tempfile.TemporaryDirectory() as root:
        dag, _ = simulate.build_dag(operation, sizes, tile, np.dtype(dtype), LocalStore(root), workers)
    return dag


def test_the_choice_is_deterministic_for_given_inputs():
    args = dict(workers=2, operation="cholesky", platform="local")
    first = tiling.choose_tile((4096, 4096), "float64", **args)
    ranking = tiling.ranking((4096, 4096), "float64", **args)
    tiling._best.cache_clear()
    tiling._ranking.cache_clear()
    assert tiling.choose_tile((4096, 4096), "float64", **args) == first
    assert tiling.ranking((4096, 4096), "float64", **args) == ranking
    timed = {t: s for t, s in ranking.items() if isinstance(s, float)}
    assert first[0] in timed and timed[first[0]] <= min(timed.values()) * (1 + tiling.TIE)


def test_a_tie_goes_to_the_largest_tile_not_bound_by_its_critical_path():
    compute, chain = "compute", "critical path"
    assert tiling._pick([(1024, 2.04, compute), (2048, 1.97, compute)]) == 2048       # a tie: the largest
    assert tiling._pick([(1024, 2.04, compute), (2048, 1.97, chain)]) == 1024         # unless the chain bounds it
    assert tiling._pick([(1024, 2.50, compute), (2048, 1.97, chain)]) == 2048         # not a tie: the fastest
    assert tiling._pick([(512, 2.0, chain), (1024, 1.99, chain), (4096, "too big", None)]) == 1024  # all chains
    # Cholesky N=8192 on 2 local workers: 1024 (measured faster than 2048 in every quiet round) over 2048,
    # whose 19-task plan the model predicts bound by its critical path
    ranking = tiling.ranking((8192, 8192), workers=2, operation="cholesky")
    assert ranking[2048] <= ranking[1024] * (1 + tiling.TIE)
    assert tiling.choose_tile((8192, 8192), workers=2, operation="cholesky") == (1024, 1024)


@pytest.mark.parametrize("shape", [(1, 1), (100, 200), (300, 300), (0, 5), (1000, 1)])
def test_tiny_matrices_get_one_tile(shape):
    assert tiling.choose_tile(shape, "float64", workers=2) == (max(shape[0], 1), max(shape[1], 1))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_matrix_larger_than_worker_memory_gets_tiles_that_fit(dtype):
    shape, memory, workers = (32768, 32768), 1024, 2
    assert shape[0] * shape[1] * np.dtype(dtype).itemsize > memory * 2 ** 20
    rows, cols = tiling.choose_tile(shape, dtype, workers=workers, worker_memory_mb=memory)
    assert rows == cols < shape[0]
    check_fits(_dag("matmul", shape, rows, dtype, workers), memory)  # jobs.run's own bound holds
    with pytest.raises(WorkerMemoryError):  # and the next larger candidate would not fit
        check_fits(_dag("matmul", shape, 2 * rows, dtype, workers), memory)


def test_the_chosen_tile_respects_dtype():
    """Half the bytes per number: under the same memory bound float32 gets a larger tile than float64."""
    args = dict(workers=2, worker_memory_mb=1024)
    wide = tiling.choose_tile((32768, 32768), "float64", **args)[0]
    narrow = tiling.choose_tile((32768, 32768), "float32", **args)[0]
    assert narrow > wide
    # a matrix that is one tile in float32 (at most SMALL_BYTES) but not in float64
    n = int((tiling.SMALL_BYTES / 4) ** 0.5)
    assert tiling.choose_tile((n, n), "float32", workers=2) == (n, n)
    assert tiling.choose_tile((n, n), "float64", workers=2)[0] <= n


def test_no_tile_fits_is_an_error_naming_the_operation():
    with pytest.raises(WorkerMemoryError, match="no tile of .* fits a worker for cholesky"):
        tiling.choose_tile((2048, 2048), "float64", workers=2, worker_memory_mb=300, operation="cholesky")


@pytest.mark.parametrize("bad, error", [(dict(workers=0), ValueError), (dict(operation="fft"), ValueError),
                                        (dict(worker_memory_mb=-1), ValueError), (dict(dtype="int64"), TypeError)])
def test_bad_arguments_are_refused_naming_them(bad, error):
    args = dict(workers=2, operation="matmul", dtype="float64") | bad
    with pytest.raises(error, match=next(iter(bad))):
        tiling.choose_tile((4096, 4096), args.pop("dtype"), **args)


def test_from_numpy_without_a_tile_runs_end_to_end_and_matches_numpy(local_executor):
    rng = np.random.default_rng(28)
    a, b = rng.standard_normal((700, 700)), rng.standard_normal((700, 700))
    with numpywren.using(local_executor):
        A, B = BigMatrix.from_numpy(a), BigMatrix.from_numpy(b)
        assert A.tile_shape == B.tile_shape == tiling.for_executor(a.shape, a.dtype, local_executor)
        C = numpywren.matmul(A, B, executor=local_executor, progress=False)
        np.testing.assert_allclose(C.to_numpy(), a @ b, rtol=1e-12, atol=1e-10)
        E = BigMatrix.create((700, 700), store=A.store)
        assert E.tile_shape == A.tile_shape
    F = BigMatrix.from_function(lambda i, j: np.full((3, 4), i + j, dtype=np.float32), (3, 4),
                                dtype="float32", executor=local_executor, progress=False)
    assert F.tile_shape == (3, 4)
    np.testing.assert_array_equal(F.to_numpy(), np.zeros((3, 4), np.float32))
    for M in (A, B, C, E, F):
        M.delete()


def test_advice_names_a_tile_far_from_its_best(local_store):
    """One 4096 tile leaves one of two workers idle: the model says so, and the chosen tile gets no hint."""
    M = BigMatrix(local_store, "advice/A", (4096, 4096), 4096, "float64", generation="x")
    hint = tiling.advice("matmul", M, workers=2)
    assert hint is not None and "tile_shape=None" in hint
    good = BigMatrix(local_store, "advice/B", (4096, 4096), tiling.choose_tile((4096, 4096), workers=2), "float64",
                     generation="x")
    assert tiling.advice("matmul", good, workers=2) is None
