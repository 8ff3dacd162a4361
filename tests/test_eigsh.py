"""eigsh: a few eigenpairs by block Krylov, each product a matmul job; checked against numpy.linalg.eigh."""
import numpy as np
import pytest
from scipy.sparse.linalg import ArpackNoConvergence

import numpywren
from numpywren import BigMatrix, LocalStore
from numpywren.executors.inline import InlineExecutor
from tests.test_eigh import symmetric_with


def rbf(x, gamma):
    d = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    return np.exp(-gamma * d)


def wanted(a, k, which):
    w0, v0 = np.linalg.eigh(a.astype(np.float64))
    index = {"LA": np.arange(len(w0) - k, len(w0)), "SA": np.arange(k),
             "LM": np.sort(np.argsort(-np.abs(w0), kind="stable")[:k])}[which]
    return w0, v0, index


def check(a, k, which, w, v, info, eps):
    """Eigenvalues within eps * ||A||_2 of numpy's; unit vectors with ||A v - w v|| as reported, within the
    bound, orthonormal, and spanning numpy's eigenvectors (up to sign and rotation within a cluster)."""
    w0, v0, index = wanted(a, k, which)
    norm = np.abs(w0).max()
    assert w.shape == (k,) and np.all(np.diff(w) >= 0)
    assert np.abs(w - w0[index]).max() <= eps * norm, (w, w0[index])
    if v is None:
        return
    a64, v64 = a.astype(np.float64), v.astype(np.float64)
    residuals = np.linalg.norm(a64 @ v64 - v64 * w.astype(np.float64), axis=0)
    assert residuals.max() <= 2 * info["tolerance"] + 10 * np.finfo(a.dtype).eps * norm
    np.testing.assert_allclose(residuals, info["residuals"], rtol=0.1, atol=10 * np.finfo(a.dtype).eps * norm)
    assert np.abs(v64.T @ v64 - np.eye(k)).max() < 1e3 * np.finfo(a.dtype).eps * np.sqrt(len(a))
    # v spans numpy's eigenvectors of the wanted eigenvalues, when they are separated from the others
    others = np.delete(w0, index)
    gap = np.abs(others[:, None] - w0[index][None, :]).min() if len(others) else norm
    if gap > 1e-3 * norm:
        overlap = np.linalg.svd(v0[:, index].T @ v64, compute_uv=False)
        assert overlap.min() > 1 - 1e-4


@pytest.mark.parametrize("which", ["LA", "SA", "LM"])
def test_eigsh_matches_numpy_on_ragged_tiles(inline, which):
    """5x5 tiles, the last ragged (n = 47, tile 10)."""
    rng = np.random.default_rng(1)
    a = rng.standard_normal((47, 47))
    a = a + a.T
    A = BigMatrix.from_numpy(a, (10, 10), inline.store)
    w, v, info = numpywren.eigsh(A, 4, which=which, seed=0, return_info=True, executor=inline)
    assert w.dtype == v.dtype == np.float64 and v.shape == (47, 4)
    check(a, 4, which, w, v, info, 1e-12)
    assert info["passes"] >= 2 and info["residuals"].max() <= info["tolerance"]
    only = numpywren.eigsh(A, 4, which=which, seed=0, return_eigenvectors=False, executor=inline)
    np.testing.assert_allclose(only, w, rtol=0, atol=1e-12 * np.abs(a).sum())


def test_eigsh_rbf_kernel_stored_as_one_triangle(inline):
    """The top eigenpairs of an RBF kernel matrix computed by numpywren.kernel (only tiles i >= j stored)."""
    x = np.random.default_rng(2).standard_normal((90, 3))
    X = BigMatrix.from_numpy(x, (20, 3), inline.store)
    K = numpywren.kernel(X, kind="rbf", gamma=0.3, executor=inline)
    assert K.symmetric
    w, v, info = numpywren.eigsh(K, 6, which="LA", seed=1, return_info=True, executor=inline)
    check(rbf(x, 0.3), 6, "LA", w, v, info, 1e-12)
    x2 = np.random.default_rng(3).standard_normal((50, 8))
    G = numpywren.syrk(BigMatrix.from_numpy(x2, (12, 8), inline.store), executor=inline)   # rank 8, PSD
    w, v, info = numpywren.eigsh(G, 3, seed=2, return_info=True, executor=inline)
    check(x2 @ x2.T, 3, "LM", w, v, info, 1e-12)


def test_eigsh_clustered_eigenvalues(inline):
    """A cluster of 5 eigenvalues within 1e-9 at the top: the invariant subspace is found, and block
    Krylov separates the cluster from the rest (gap 0.5)."""
    eigenvalues = np.concatenate([3 + 1e-9 * np.arange(5), np.linspace(-2, 2.5, 55)])
    a = symmetric_with(eigenvalues, seed=3)
    A = BigMatrix.from_numpy(a, (15, 15), inline.store)
    w, v, info = numpywren.eigsh(A, 5, which="LA", seed=4, return_info=True, executor=inline)
    check(a, 5, "LA", w, v, info, 1e-12)
    w0, v0, index = wanted(a, 5, "LA")
    overlap = np.linalg.svd(v0[:, index].T @ v, compute_uv=False)
    assert overlap.min() > 1 - 1e-8


def test_eigsh_float32(inline):
    a = symmetric_with(np.linspace(-1, 4, 64) ** 3, seed=5).astype(np.float32)
    A = BigMatrix.from_numpy(a, (16, 16), inline.store)
    w, v, info = numpywren.eigsh(A, 3, which="LM", seed=5, return_info=True, executor=inline)
    assert w.dtype == v.dtype == np.float32
    check(a, 3, "LM", w, v, info, 1e-5)


def test_eigsh_v0_and_seed_reproducible(inline):
    a = symmetric_with(np.arange(40.0), seed=6)
    A = BigMatrix.from_numpy(a, (10, 10), inline.store)
    v0 = np.ones(40)
    first = numpywren.eigsh(A, 2, which="SA", v0=v0, seed=7, tol=1e-10, executor=inline)
    again = numpywren.eigsh(A, 2, which="SA", v0=v0, seed=7, tol=1e-10, executor=inline)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_allclose(first[0], [0.0, 1.0], atol=1e-10 * 40)


def test_eigsh_not_converged_raises_with_the_converged_pairs(inline):
    """One pass cannot converge: scipy's ArpackNoConvergence, never a silent approximation."""
    a = symmetric_with(np.linspace(0, 1, 60), seed=8)
    A = BigMatrix.from_numpy(a, (15, 15), inline.store)
    with pytest.raises(ArpackNoConvergence, match="not converged after 1 passes") as caught:
        numpywren.eigsh(A, 3, which="LA", maxiter=1, seed=9, executor=inline)
    error = caught.value
    assert len(error.eigenvalues) == error.eigenvectors.shape[1] < 3
    assert error.info["residuals"].max() > error.info["tolerance"]
    with pytest.raises(ArpackNoConvergence):   # an asymmetric A: Ritz pairs are not eigenpairs
        numpywren.eigsh(BigMatrix.from_numpy(np.triu(a) * 3, (15, 15), inline.store), 2, maxiter=6,
                        executor=inline)
    assert not [key for key in inline.store.list("") if "krylov" in key]   # products are gone, also on failure


def test_eigsh_products_are_matmul_jobs_and_leave_nothing(tmp_path, monkeypatch):
    """Each pass is one numpywren.matmul plan run through the jobs layer; A is never read on the driver."""
    from numpywren import gemm, jobs

    store = LocalStore(tmp_path / "store")
    a = symmetric_with(np.arange(1.0, 41.0), seed=10)
    A = BigMatrix.from_numpy(a, (10, 10), store, "data/A")
    plans = []
    real_run = jobs.run
    monkeypatch.setattr(jobs, "run", lambda plan, *args, **kw: plans.append(plan) or real_run(plan, *args, **kw))
    monkeypatch.setattr(BigMatrix, "get_block", _refuse_a(BigMatrix.get_block))
    with InlineExecutor(workers=2, store=store) as ex:
        w, info = numpywren.eigsh(A, 2, which="LA", seed=11, return_eigenvectors=False, return_info=True,
                                  executor=ex)
    np.testing.assert_allclose(w, [39.0, 40.0], atol=1e-12 * 40)
    assert len(plans) == info["passes"] and all(p.desc.startswith("matmul (40, 40)@(40, ") for p in plans)
    assert all({t.op for t in p.dag} == {"gemm"} for p in plans)
    assert sorted(store.list("")) == sorted(k for k in store.list("") if k.startswith("data/A/"))


def _refuse_a(get_block):
    def guarded(self, i, j):
        assert self.key != "data/A", "the driver read a tile of A"
        return get_block(self, i, j)
    return guarded


def test_eigsh_refuses_bad_input(inline):
    store = inline.store
    A = BigMatrix.from_numpy(np.eye(12), (6, 6), store)
    with pytest.raises(TypeError, match="BigMatrix"):
        numpywren.eigsh(np.eye(3), 1, executor=inline)
    with pytest.raises(ValueError, match="square"):
        numpywren.eigsh(BigMatrix.from_numpy(np.ones((10, 12)), (5, 5), store), 1, executor=inline)
    with pytest.raises(ValueError, match=r"k must be an int in \[1, 11\]"):
        numpywren.eigsh(A, 12, executor=inline)
    with pytest.raises(ValueError, match="shift-invert"):
        numpywren.eigsh(A, 2, which="SM", executor=inline)
    with pytest.raises(ValueError, match="block_size"):
        numpywren.eigsh(A, 4, block_size=3, executor=inline)
    with pytest.raises(ValueError, match="v0"):
        numpywren.eigsh(A, 2, v0=np.ones(5), executor=inline)
    with pytest.raises(ValueError, match="tol"):
        numpywren.eigsh(A, 2, tol=-1, executor=inline)
    with pytest.raises(ValueError, match="compute=False"):
        numpywren.eigsh(A, 2, compute=False, executor=inline)
    with pytest.raises(TypeError, match="unexpected options"):
        numpywren.eigsh(A, 2, retry=3, executor=inline)
