"""svd of any shape: band reduction by QR/LQ tile tasks, the band problem on one worker, U and V by tile tasks."""
import numpy as np
import pytest
import scipy.linalg

import numpywren
from numpywren import BigMatrix, LocalStore
from numpywren.executors.inline import InlineExecutor
from numpywren.memory import side_outputs

TILE_OPS = {"caqr_factor", "caqr_apply", "caqr_take"}


def with_singular_values(m, n, s, seed=0):
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.standard_normal((m, len(s))))
    v, _ = np.linalg.qr(rng.standard_normal((n, len(s))))
    return (u * s) @ v.T


def check(a, result, full, eps, exact_s=True):
    """|s - numpy's| <= eps * s_max; U, Vh orthonormal, numpy's shapes, U S Vh = A; for distinct singular
    values, each singular vector pair equals numpy's up to sign."""
    a64 = a.astype(np.float64)
    u0, s0, vh0 = np.linalg.svd(a64, full_matrices=full)
    U, s, Vh = result
    assert isinstance(result, np.linalg._linalg.SVDResult)
    assert np.abs(s - s0).max() <= eps * s0[0]
    u, vh = U.to_numpy().astype(np.float64), Vh.to_numpy().astype(np.float64)
    assert u.shape == u0.shape and vh.shape == vh0.shape
    k = len(s)
    tol = 100 * eps * np.sqrt(max(a.shape))
    assert np.abs(u.T @ u - np.eye(u.shape[1])).max() < tol
    assert np.abs(vh @ vh.T - np.eye(vh.shape[0])).max() < tol
    assert np.linalg.norm((u[:, :k] * s) @ vh[:k] - a64) <= tol * np.linalg.norm(a64)
    if exact_s:
        gaps = np.diff(s0[::-1])[::-1]
        distinct = [i for i in range(k) if (i == 0 or s0[i - 1] - s0[i] > 1e-6 * s0[0])
                    and (i == k - 1 or gaps[i] > 1e-6 * s0[0]) and s0[i] > 1e-6 * s0[0]]
        for i in distinct:
            assert abs(abs(u[:, i] @ u0[:, i]) - 1) < 1e-6 and abs(abs(vh[i] @ vh0[i]) - 1) < 1e-6


@pytest.mark.parametrize("m,n,b,full", [
    (40, 40, 10, True),     # square, 4x4 tiles
    (53, 37, 10, True),     # tall, ragged both ways
    (37, 53, 10, False),    # wide (factored as A.T)
    (80, 20, 10, False),    # tall over two column tiles
])
def test_svd_matches_numpy(inline, m, n, b, full):
    a = np.random.default_rng(m * n).standard_normal((m, n))
    A = BigMatrix.from_numpy(a, (b, b), inline.store)
    s = numpywren.svd(A, compute_uv=False, executor=inline, fan_in=2)
    assert isinstance(s, np.ndarray) and s.dtype == np.float64
    assert np.abs(s - np.linalg.svd(a, compute_uv=False)).max() <= 1e-12 * s[0]
    check(a, numpywren.svd(A, full_matrices=full, executor=inline, fan_in=3), full, 1e-12)


def test_svd_graded_rank_deficient_float32_and_views(inline):
    store = inline.store
    graded = with_singular_values(48, 40, np.logspace(0, -12, 40), seed=1)
    deficient = with_singular_values(40, 48, np.r_[np.linspace(5, 1, 20), np.zeros(20)][:20], seed=2)
    for a in (graded, deficient):
        A = BigMatrix.from_numpy(a, (12, 12), store)
        s = numpywren.svd(A, compute_uv=False, executor=inline)
        assert np.abs(s - np.linalg.svd(a, compute_uv=False)).max() <= 1e-12 * s[0]
        check(a, numpywren.svd(A, full_matrices=False, executor=inline), False, 1e-12, exact_s=False)
    a32 = np.random.default_rng(3).standard_normal((30, 26)).astype(np.float32)
    W = BigMatrix.from_numpy(a32.T.copy(), (8, 8), store)
    result = numpywren.svd(W.T, executor=inline)           # a transposed view
    assert result.S.dtype == np.float32 and result.U.dtype == np.float32
    check(a32, result, True, 2e-6)


def test_svd_one_tile_column_takes_the_tall_skinny_path(inline):
    a = np.random.default_rng(4).standard_normal((90, 12))
    A = BigMatrix.from_numpy(a, (20, 12), inline.store)      # non-square tiles: one column tile
    check(a, numpywren.svd(A, full_matrices=False, executor=inline), False, 1e-12)
    check(a, numpywren.svd(A, executor=inline), True, 1e-12)   # full U: the band path, one panel
    check(a.T, numpywren.svd(A.T, full_matrices=False, executor=inline), False, 1e-12)


def test_svd_plan_is_tile_tasks_but_the_band(inline):
    a = np.random.default_rng(5).standard_normal((50, 40))
    A = BigMatrix.from_numpy(a, (10, 10), inline.store)
    fan_in = 2
    plan = numpywren.svd(A, executor=inline, fan_in=fan_in, compute=False)
    band = [t for t in plan.dag if t.op == "band_svd"]
    assert len(band) == 1
    for task in plan.dag:
        if task is band[0]:
            continue
        assert task.op in TILE_OPS, task
        matrix, i, j = task.output
        assert max(matrix.block_shape(i, j)) <= fan_in * 10 + 1 and len(task.inputs) <= fan_in + 1, task
        assert all(max(m.block_shape(r, c)) <= fan_in * 10 + 1 for m, r, c in task.inputs), task
    # the band task's vectors: U's start and V_B as scratch matrices with U's and V's tiles, read tile by tile
    ZU, ZV = side_outputs(band[0])
    assert band[0].output[0].shape == (1, 40) and ZU.tile_shape == ZV.tile_shape == (10, 10)
    assert {ZU.key, ZV.key} <= {m.key for m in plan.scratch.values()}
    assert sum(any(m is ZV for m, _, _ in t.inputs) for t in plan.dag) == 16


def test_svd_failure_is_linalgerror_and_refusals(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise scipy.linalg.LinAlgError("SVD did not converge (injected)")

    monkeypatch.setattr(scipy.linalg, "svd", fail)
    store = LocalStore(tmp_path / "store")
    a = np.random.default_rng(6).standard_normal((30, 30))
    A = BigMatrix.from_numpy(a, (10, 10), store, "data/A")
    with InlineExecutor(workers=2, store=store) as ex:
        with pytest.raises(np.linalg.LinAlgError, match="did not converge"):
            numpywren.svd(A, executor=ex)
        tall = BigMatrix.from_numpy(np.ones((90, 10)), (10, 10), store)
        with pytest.raises(ValueError, match="full_matrices=False"):
            numpywren.svd(tall, executor=ex)                # a 90x90 U is 9x A's size
        with pytest.raises(ValueError, match="square tiles"):
            numpywren.svd(BigMatrix.from_numpy(a, (10, 15), store), executor=ex)
        with pytest.raises(TypeError, match="BigMatrix"):
            numpywren.svd(a, executor=ex)
    assert not [k for k in store.list("") if "/scratch/" in k or k.startswith("jobs/")]   # the session's too


@pytest.mark.parametrize("shape,tiles,deficient", [
    ((30, 50), (10, 10), False),    # wide: numpy's minimum-norm solution
    ((50, 30), (10, 10), False),    # tall over several column tiles: residuals as numpy
    ((50, 30), (10, 10), True),     # rank 20
])
def test_lstsq_of_any_shape_through_the_svd(inline, shape, tiles, deficient):
    rng = np.random.default_rng(sum(shape))
    a = rng.standard_normal(shape)
    if deficient:
        a[:, 20:] = a[:, :10]
    b = rng.standard_normal((shape[0], 2))
    A = BigMatrix.from_numpy(a, tiles, inline.store, "data/A")
    x, residuals, rank, s = numpywren.lstsq(A, b, executor=inline)
    x0, residuals0, rank0, s0 = np.linalg.lstsq(a, b, rcond=None)
    assert rank == rank0 and residuals.shape == residuals0.shape
    assert np.linalg.norm(x - x0) <= 1e-12 * np.linalg.norm(x0) * 10
    assert np.abs(s - s0).max() <= 1e-12 * s0[0] and np.allclose(residuals, residuals0, rtol=1e-10)
    x1 = numpywren.lstsq(A, b[:, 0], executor=inline)[0]
    assert x1.shape == (shape[1],) and np.allclose(x1, x0[:, 0], rtol=1e-10, atol=1e-12)
    assert {k.split("/tiles/")[0] for k in inline.store.list("matrices/")} == set()   # temporaries gone


def test_public_functions_stay_functions():
    """numpywren.qr, numpywren.svd, numpywren.lstsq are the functions, also after the modules around them load."""
    import subprocess
    import sys

    code = ("import numpywren; numpywren.svd_compressed; from numpywren.decomp_svd import svd_compressed; "
            "import numpywren.decomp_qr; print(callable(numpywren.qr), callable(numpywren.svd), "
            "numpywren.svd.__module__, numpywren.lstsq.__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "True", "numpywren.fullsvd", "numpywren.fullsvd"]


def test_nan_in_a_is_numpys_linalgerror_at_the_first_attempt(inline, monkeypatch):
    """numpy's svd of a matrix holding NaN raises LinAlgError "SVD did not converge"; so do svd and lstsq
    (they ended as JobFailedError after 3 attempts of a ValueError from scipy), with one band attempt."""
    from blocks import eigen

    calls = []
    for name in ("svd_dense", "singular_values_band"):
        kernel = getattr(eigen, name)
        monkeypatch.setattr(eigen, name, lambda *a, _k=kernel, **kw: calls.append(1) or _k(*a, **kw))
    a = np.random.default_rng(7).standard_normal((40, 40))
    a[13, 25] = np.nan
    with pytest.raises(np.linalg.LinAlgError, match="SVD did not converge"):
        np.linalg.svd(a)
    A = BigMatrix.from_numpy(a, (10, 10), inline.store)
    for run in (lambda: numpywren.svd(A, executor=inline), lambda: numpywren.svd(A, compute_uv=False,
                executor=inline), lambda: numpywren.lstsq(A, np.ones(40), executor=inline)):
        calls.clear()
        with pytest.raises(np.linalg.LinAlgError, match="SVD did not converge"):
            run()
        assert len(calls) == 1          # not retried
    a[13, 25] = np.inf
    with pytest.raises(np.linalg.LinAlgError, match="SVD did not converge"):
        numpywren.svd(BigMatrix.from_numpy(a, (10, 10), inline.store), compute_uv=False, executor=inline)


def test_the_band_task_memory_follows_its_tiles_and_the_32768_values_case_fits_23_gib(inline):
    """The band task assembles B from its tiles, drops them, then solves: its declared peak is the larger of
    the two phases, not their sum. So the out-of-core benchmark's case, the singular values of a 32768^2
    float64 matrix in 4096 tiles, fits this machine kind's 23 GiB (B and its copy: 19.4 GB); its vectors
    (7.25 n^2: 62 GB) are refused before anything runs. Planned only: A is never written."""
    from numpywren import memory
    from numpywren.fullsvd import SVDPlanner

    A = BigMatrix.create((32768, 32768), 4096, "float64", inline.store, "A32768")
    values = SVDPlanner(A, False, False, None, None, 4, 2).build()
    band = next(t for t in values.dag if t.op == "band_svd")
    tiles = sum(memory.block_bytes(r) for r in memory.block_refs(band.inputs))
    workspace = memory.band_workspace_bytes(band)
    assert memory.peak_bytes(band) == max(2 * tiles + 32768 * 4097 * 8, workspace) + 32768 * 8   # band storage
    memory.check_fits(values.dag, 23 * 1024)
    with pytest.raises(memory.WorkerMemoryError, match="svd's band singular vectors .* at order 32768"):
        memory.check_fits(SVDPlanner(A, False, True, None, None, 4, 2).build().dag, 23 * 1024)
