"""eigh / eigvalsh: band reduction by tile tasks, the band problem on one worker, back-transformation."""
import numpy as np
import pytest
import scipy.linalg

import numpywren
from numpywren import BigMatrix, LocalStore
from numpywren.executors.inline import InlineExecutor
from numpywren.memory import side_outputs

TILE_OPS = {"caqr_factor", "caqr_apply", "caqr_take"}


def symmetric_with(eigenvalues, seed=0):
    n = len(eigenvalues)
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((n, n)))
    a = (q * eigenvalues) @ q.T
    return (a + a.T) / 2


def check_pairs(a, w, V, eps):
    """Eigenvalues within eps * ||A||_2 of numpy's; vectors orthonormal, A V = V diag(w), and spanning
    numpy's invariant subspace of every cluster of equal eigenvalues (so: up to sign and rotation)."""
    w0, v0 = np.linalg.eigh(a.astype(np.float64))
    norm = np.abs(w0).max()
    assert np.abs(w - w0).max() <= eps * norm
    if V is None:
        return
    v = V.to_numpy().astype(np.float64)
    n = a.shape[0]
    assert np.abs(v.T @ v - np.eye(n)).max() < 100 * eps * np.sqrt(n)
    assert np.linalg.norm(a @ v - v * w) <= 100 * eps * np.sqrt(n) * norm
    start = 0
    while start < n:  # clusters of eigenvalues closer than 1e-8 * ||A||
        stop = start + 1
        while stop < n and w0[stop] - w0[stop - 1] < 1e-8 * norm:
            stop += 1
        overlap = np.linalg.svd(v0[:, start:stop].T @ v[:, start:stop], compute_uv=False)
        assert np.abs(overlap - 1).max() < 1e-6, (start, stop, overlap)
        start = stop


@pytest.mark.parametrize("n,b,fan_in", [(40, 10, 2), (37, 10, 3), (53, 12, 4), (20, 20, 4)])
def test_eigh_matches_numpy(inline, n, b, fan_in):
    rng = np.random.default_rng(n)
    a = rng.standard_normal((n, n))
    a = a + a.T
    A = BigMatrix.from_numpy(a, (b, b), inline.store)
    w = numpywren.eigvalsh(A, executor=inline, fan_in=fan_in)
    assert isinstance(w, np.ndarray) and w.dtype == np.float64
    check_pairs(a, w, None, 1e-12)
    result = numpywren.eigh(A, executor=inline, fan_in=fan_in)
    assert isinstance(result, np.linalg._linalg.EighResult)
    assert result.eigenvectors.tile_shape == (b, b)
    check_pairs(a, result.eigenvalues, result.eigenvectors, 1e-12)


def test_eigh_clusters_graded_and_float32(inline):
    clustered = symmetric_with(np.repeat([-3.0, 0.5, 2.0, 7.0], 9), seed=1)    # four 9-fold eigenvalues
    graded = symmetric_with(np.logspace(0, -12, 36) * np.tile([1, -1], 18), seed=2)
    for a in (clustered, graded):
        A = BigMatrix.from_numpy(a, (8, 8), inline.store)
        result = numpywren.eigh(A, executor=inline)
        check_pairs(a, result.eigenvalues, result.eigenvectors, 1e-12)
    a32 = symmetric_with(np.linspace(-1, 4, 30), seed=3).astype(np.float32)
    A32 = BigMatrix.from_numpy(a32, (8, 8), inline.store)
    result = numpywren.eigh(A32, executor=inline)
    assert result.eigenvalues.dtype == np.float32 and result.eigenvectors.dtype == np.float32
    check_pairs(a32, result.eigenvalues, result.eigenvectors, 2e-6)


def test_eigh_reads_one_triangle(inline):
    """A stored triangle (syrk's symmetric matrix) works, and UPLO picks the triangle read, as numpy."""
    x = np.random.default_rng(4).standard_normal((30, 12))
    X = BigMatrix.from_numpy(x, (10, 12), inline.store)
    G = numpywren.syrk(X, executor=inline)                      # X X^T, only tiles i >= j stored
    assert G.symmetric
    result = numpywren.eigh(G, executor=inline)
    check_pairs(x @ x.T, result.eigenvalues, result.eigenvectors, 1e-12)
    rng = np.random.default_rng(5)
    a = rng.standard_normal((25, 25))                          # not symmetric: each triangle defines one
    A = BigMatrix.from_numpy(a, (10, 10), inline.store)
    for uplo in ("L", "U"):
        w = numpywren.eigvalsh(A, UPLO=uplo, executor=inline)
        w0 = np.linalg.eigvalsh(a, UPLO=uplo)
        assert np.abs(w - w0).max() <= 1e-12 * np.abs(w0).max()
    assert numpywren.eigvalsh(A.T, executor=inline) == pytest.approx(np.linalg.eigvalsh(a.T), abs=1e-12 * 20)


def test_eigh_plan_is_tile_tasks_but_the_band(inline):
    """On 5x5 tiles: one band task; every other task a tile task reading at most fan_in + 1 tiles."""
    a = symmetric_with(np.arange(50.0), seed=6)
    A = BigMatrix.from_numpy(a, (10, 10), inline.store)
    fan_in = 2
    plan = numpywren.eigh(A, executor=inline, fan_in=fan_in, compute=False)
    band = [t for t in plan.dag if t.op == "band_eigh"]
    assert len(band) == 1
    assert band[0].output[0].shape == (1, 50)      # the eigenvalues; the band's eigenvectors go to Z, by tiles
    (Z,) = side_outputs(band[0])
    assert Z.shape == (50, 50) and Z.tile_shape == (10, 10) and Z in plan.scratch.values()
    for task in plan.dag:
        if task is band[0]:
            continue
        assert task.op in TILE_OPS, task
        matrix, i, j = task.output
        assert max(matrix.block_shape(i, j)) <= fan_in * 10 + 1 and len(task.inputs) <= fan_in + 1, task
        # every tile task reads tiles of A's size, the back-transformation leaves one tile of Z each
        assert all(max(m.block_shape(r, c)) <= fan_in * 10 + 1 for m, r, c in task.inputs), task
        assert sum(m is band[0].output[0] for m, _, _ in task.inputs) == 0, task
        assert sum(m is Z for m, _, _ in task.inputs) <= 1, task
    assert sum(any(m is Z for m, _, _ in t.inputs) for t in plan.dag) == 25    # each of Z's tiles read once
    assert plan.stats()["tasks"] == len(plan.dag)
    numpywren.run(plan, inline)                 # run later: the plan's value is the EighResult
    check_pairs(a, plan.value.eigenvalues, plan.value.eigenvectors, 1e-12)


def test_eigh_convergence_failure_is_linalgerror_and_cleans_up(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise scipy.linalg.LinAlgError("eig algorithm did not converge (injected)")

    monkeypatch.setattr(scipy.linalg, "eig_banded", fail)    # the in-process workers see it
    monkeypatch.setattr(scipy.linalg, "eigh", fail)          # the band's vectors: the dense ?syevd
    store = LocalStore(tmp_path / "store")
    a = symmetric_with(np.arange(20.0))
    A = BigMatrix.from_numpy(a, (10, 10), store, "data/A")
    with InlineExecutor(workers=2, store=store) as ex:
        with pytest.raises(np.linalg.LinAlgError, match="did not converge"):
            numpywren.eigh(A, executor=ex)
    left = [k for k in store.list("") if not k.startswith("data/A/")]
    assert not [k for k in left if "/scratch/" in k or k.startswith("jobs/")]


def test_eigh_refuses_bad_input(inline):
    store = inline.store
    with pytest.raises(ValueError, match="square"):
        numpywren.eigh(BigMatrix.from_numpy(np.ones((10, 12)), (5, 5), store), executor=inline)
    with pytest.raises(ValueError, match="tiles must be square"):
        numpywren.eigh(BigMatrix.from_numpy(np.eye(12), (6, 4), store), executor=inline)
    with pytest.raises(ValueError, match="UPLO"):
        numpywren.eigvalsh(BigMatrix.from_numpy(np.eye(12), (6, 6), store), UPLO="X", executor=inline)
    with pytest.raises(TypeError, match="BigMatrix"):
        numpywren.eigh(np.eye(3), executor=inline)


def test_nan_in_a_is_numpys_linalgerror_at_the_first_attempt(inline, monkeypatch):
    """eigh of a matrix holding NaN ended as JobFailedError after 3 attempts (scipy's ValueError); now
    numpy's LinAlgError "Eigenvalues did not converge" from the first attempt (numpy raises it, or returns
    NaN-filled garbage, depending on LAPACK's path; an error, never garbage, here). qr's R holds NaN, as numpy's."""
    from blocks import eigen

    calls = []
    kernel = eigen.eigh_band
    monkeypatch.setattr(eigen, "eigh_band", lambda *a, **kw: calls.append(1) or kernel(*a, **kw))
    a = symmetric_with(np.arange(30.0), seed=8)
    a[17, 4] = a[4, 17] = np.nan
    A = BigMatrix.from_numpy(a, (10, 10), inline.store)
    for function in (numpywren.eigh, numpywren.eigvalsh):
        calls.clear()
        with pytest.raises(np.linalg.LinAlgError, match="Eigenvalues did not converge"):
            function(A, executor=inline)
        assert len(calls) == 1
    Q, R = numpywren.qr(A, executor=inline)
    r0 = np.linalg.qr(a)[1]
    assert np.isnan(R.to_numpy()).any() and np.isnan(r0).any()   # NaN in R, no error: as numpy (the tiles
    # differ in which entries it reaches)


@pytest.mark.parametrize("dtype", [np.float64, np.complex128, np.float32])
def test_band_workspace_bounds_what_the_band_kernels_allocate(dtype):
    """blocks.eigen.band_workspace, the band tasks' declared memory (numpywren.memory.PEAKS), is at least
    what their kernels allocate (tracemalloc sees numpy's and scipy's arrays, LAPACK's work included), for
    narrow and wide bands, values and vectors."""
    import tracemalloc

    from blocks import eigen

    n = 240
    a = np.random.default_rng(9).standard_normal((n, n)).astype(dtype)
    for b in (4, 60):
        ab = np.ascontiguousarray(a[:b + 1])
        tiles = [a[k:k + b, k:k + b] for k in range(0, n, b)]
        supers = [a[k:k + b, k + b:k + 2 * b] for k in range(0, n - b, b)]
        for kind, vectors, kernel in [
                ("eigh", True, lambda: eigen.eigh_band(ab, True)),
                ("eigh", False, lambda: eigen.eigh_band(ab, False)),
                ("svd", True, lambda: eigen.svd_dense(eigen.upper_band_dense(tiles, supers))),
                ("svd", False, lambda: eigen.singular_values_band(eigen.upper_band(tiles, supers, b)))]:
            kernel()   # once untraced: scipy's one-time lookups are not the task's workspace
            tracemalloc.start()
            try:
                kernel()
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            declared = eigen.band_workspace(kind, n, b, vectors) * np.dtype(dtype).itemsize
            assert peak <= declared, (kind, vectors, b, peak / declared)


def test_a_band_problem_too_big_for_a_worker_is_refused_naming_the_largest_order(inline):
    """eigh's band eigenvectors need ~4.75 n^2 numbers on one worker: at n = 1200 (float64, 55 MB) a
    340 MB worker (40 MB for tiles) refuses the plan before it runs, naming the largest order that fits;
    eigvalsh (values of a narrow band: band storage only) fits. Without the executor's memory, this machine's is checked."""
    from numpywren import memory
    from numpywren.decomp_eigh import EighPlanner

    a = np.random.default_rng(10).standard_normal((1200, 1200))   # eigh reads one triangle
    A = BigMatrix.from_numpy(a, (120, 120), inline.store)
    inline.worker_memory_mb = 340
    with pytest.raises(memory.WorkerMemoryError) as info:
        numpywren.eigh(A, executor=inline)
    message = str(info.value)
    assert "eigh's band eigenvectors are computed on one worker" in message and "order 1200" in message
    fits = int(message.split("orders up to about ")[1].split(".")[0])
    band = next(t for t in numpywren.eigh(A, compute=False, workers=2).dag if t.op == "band_eigh")
    tiles = memory.peak_bytes(band) - memory.band_workspace_bytes(band)
    room = 40 * 2 ** 20 - tiles
    assert eigen_bytes(fits) <= room < eigen_bytes(fits + 1)
    assert 600 < fits < 1200 and "eigvalsh if the values suffice" in message
    assert not [k for k in inline.store.list("") if "/scratch/" in k or k.startswith("jobs/")]
    memory.check_fits(numpywren.eigvalsh(A, compute=False, workers=2).dag, 340)   # fits: no error
    big = BigMatrix.create((400_000, 400_000), 100_000, "float64", inline.store, "big")   # never written
    plan = EighPlanner(big, True, None, 4, 2).build()
    with pytest.raises(memory.WorkerMemoryError, match="this machine's memory"):
        memory.check_fits(plan.dag, None)


def eigen_bytes(n):
    from blocks.eigen import band_workspace

    return band_workspace("eigh", n, 120, True) * 8


def test_the_band_task_reports_its_input_read_whole_not_the_tiles_it_writes(inline, monkeypatch):
    """An attempt's progress is the share of its *input* read (numpywren.worker.progress): the band task's
    ``params["writes"]`` names a matrix it writes (the band's eigenvectors), which must not count as input, or
    a band task that has read everything reports itself unfinished and is projected late."""
    from numpywren.worker import ops, progress

    made = []

    class Recorded(progress.Progress):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(ops.progress, "Progress", Recorded)
    a = symmetric_with(np.arange(1.0, 21.0), seed=12)
    w, V = numpywren.eigh(BigMatrix.from_numpy(a, (10, 10), inline.store), executor=inline)
    assert np.allclose(w, np.arange(1.0, 21.0))
    band = [p for p in made if p.task_id.endswith("/band")]
    assert len(band) == 1 and band[0].total > 0
    assert band[0].done == band[0].total   # read all of its input, and only input counts


def test_a_subset_index_past_the_order_is_refused_before_anything_runs(inline, monkeypatch):
    """scipy's ValueError for subset_by_index beyond n - 1 comes before the first task, not after a full
    eigh of A (the order is known from A's shape)."""
    from numpywren import decomp_eigh

    def ran(*args, **kwargs):
        raise AssertionError("the decomposition ran")

    monkeypatch.setattr(decomp_eigh, "_run", ran)
    A = BigMatrix.from_numpy(symmetric_with(np.arange(12.0)), (4, 4), inline.store)
    for function in (numpywren.eigh, numpywren.eigvalsh):
        with pytest.raises(ValueError, match=r"out of range for 12 eigenvalues"):
            function(A, subset_by_index=[0, 12], executor=inline)
    with pytest.raises(ValueError, match=r"out of range for 12 eigenvalues"):
        numpywren.eigh(A, eigvals_only=True, subset_by_index=[3, 40], executor=inline)
