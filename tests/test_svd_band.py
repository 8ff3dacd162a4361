"""The SVD's band step in band storage (blocks.band): narrowing, ?gbbrd, ?bdsqr; accuracy and memory."""
import tracemalloc

import numpy as np
import pytest

import numpywren
from blocks import band, eigen
from numpywren import BigMatrix

TOL = {np.float64: 1e-12, np.complex128: 1e-12, np.float32: 2e-5, np.complex64: 2e-5}


def band_tiles(n, t, dtype, seed, s=None):
    """The diagonal and super-diagonal tiles (as the SVD's band task gets them: R factors) of an upper band
    matrix of tile t; with ``s``, the band matrix is the R of a matrix with singular values s (so graded or
    rank-deficient), else random."""
    rng = np.random.default_rng(seed)
    complex_ = np.dtype(dtype).kind == "c"
    x = rng.standard_normal((n, n)) + (1j * rng.standard_normal((n, n)) if complex_ else 0)
    if s is not None:
        u, _ = np.linalg.qr(x)
        v, _ = np.linalg.qr(rng.standard_normal((n, n)) + (1j * rng.standard_normal((n, n)) if complex_ else 0))
        x = (u * s) @ v.conj().T
    B = np.triu(np.tril(x, t))   # a band of bandwidth t whose singular values are not s, but which is
    if s is not None:            # graded when x is: its rows scaled by s
        B = np.triu(np.tril(np.diag(s) @ np.triu(np.tril(x / np.abs(x).max(), t)), t))
    starts = list(range(0, n, t))
    diagonal = [np.triu(B[k:k + t, k:k + t]) for k in starts]
    super_r = [np.triu(B[k:k + t, k + t:k + 2 * t].conj().T) for k in starts[:-1]]   # R = L^H
    return B.astype(dtype), [d.astype(dtype) for d in diagonal], [r.astype(dtype) for r in super_r]


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.complex128, np.complex64])
@pytest.mark.parametrize("n,t,grading", [(301, 37, None), (700, 100, None), (640, 128, "graded"),
                                         (520, 90, "rank")])
def test_singular_values_in_band_storage_match_numpy(dtype, n, t, grading):
    """Narrow bands (?gbbrd directly) and bands wider than NARROW_BANDWIDTH (narrowed first), ragged last
    tiles, graded (1 .. 1e-12) and rank-deficient bands: within 1e-12 s_max of numpy's (float64)."""
    s = None
    if grading == "graded":
        s = np.logspace(0, -12, n)
    elif grading == "rank":
        s = np.where(np.arange(n) < n // 3, 1.0, 0.0)
    B, diagonal, super_r = band_tiles(n, t, dtype, seed=n + t, s=s)
    assert not band.prefer_dense(n, t)
    got = eigen.singular_values_band(eigen.upper_band(diagonal, super_r, t))
    want = np.linalg.svd(B.astype(np.complex128), compute_uv=False)
    assert got.dtype == np.finfo(dtype).dtype and got.shape == (n,)
    assert np.abs(got - want).max() <= TOL[dtype] * want[0]


@pytest.mark.parametrize("c,nb", [(3, 3), (8, 4), (16, 16), (29, 5)])
def test_narrow_keeps_the_singular_values_in_a_narrower_band(c, nb):
    rng = np.random.default_rng(c * nb)
    n, b = 230, 40
    B = np.triu(np.tril(rng.standard_normal((n, n)), b))
    ab = np.zeros((b + 1, n), order="F")
    for k in range(b + 1):
        ab[b - k, k:] = np.diagonal(B, k)
    narrowed = band.narrow(ab, c, nb)
    assert narrowed.shape == (c + 1, n) and narrowed.flags.f_contiguous
    dense = band.dense_from_upper_band(narrowed)
    want = np.linalg.svd(B, compute_uv=False)
    assert np.abs(np.linalg.svd(dense, compute_uv=False) - want).max() <= 1e-13 * want[0]
    assert np.abs(band.singular_values(narrowed) - want).max() <= 1e-13 * want[0]


def test_the_band_step_never_allocates_n_by_n():
    """The values' band step (band storage, narrowing, gbbrd, bdsqr) holds O(n b) numbers: at n = 1600, b = 100
    its peak (tracemalloc: numpy's arrays, LAPACK's work included) is a fraction of one n x n array, and
    within what the band task declares (blocks.eigen.band_workspace)."""
    n, t = 1600, 100
    B, diagonal, super_r = band_tiles(n, t, np.float64, seed=1)
    tracemalloc.start()
    try:
        s = eigen.singular_values_band(eigen.upper_band(diagonal, super_r, t))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < n * n * 8 / 2
    assert peak <= eigen.band_workspace("svd", n, t, False) * 8
    assert np.abs(s - np.linalg.svd(B, compute_uv=False)).max() <= 1e-12 * s[0]


def test_the_band_task_declares_band_storage_at_the_benchmark_size(inline):
    """svd(compute_uv=False) of an 8192^2 matrix in 1024 tiles: the band task's declared solve (band storage,
    the narrowing's ~3 b x n storage and windows: blocks.eigen.band_workspace) is under 65% of one dense
    8192^2 B (before: B plus gesdd's work, 2.25 n^2); at the 32768^2 out-of-core case in 1024 tiles under
    1.5 GB (before: 19 GB), so the task's whole peak, input tiles included, is under 4 GB. Its flops are
    O(n^2 b). Planned only: A is never written."""
    from numpywren import memory
    from numpywren.fullsvd import SVDPlanner

    for n, limit in ((8192, 0.65 * 8192 ** 2 * 8), (32768, 1.5e9)):
        A = BigMatrix.create((n, n), 1024, "float64", inline.store, f"A{n}")
        task = next(t for t in SVDPlanner(A, False, False, None, None, 4, 2).build().dag if t.op == "band_svd")
        assert memory.band_workspace_bytes(task) < limit, (n, memory.band_workspace_bytes(task) / 1e9)
        assert memory.peak_bytes(task) < 4e9
        assert task.flops < n ** 3   # not the dense 8/3 n^3


def test_svd_values_end_to_end_through_the_narrowing(inline):
    """A 520 x 450 matrix in 90 x 90 tiles (bandwidth 90 > NARROW_BANDWIDTH): graded singular values through
    the tiled reduction, the narrowing, gbbrd and bdsqr, within 1e-12 s_max of numpy's; float32 too."""
    rng = np.random.default_rng(12)
    m, n = 520, 450
    u, _ = np.linalg.qr(rng.standard_normal((m, n)))
    v, _ = np.linalg.qr(rng.standard_normal((n, n)))
    a = (u * np.logspace(0, -12, n)) @ v.T
    assert band.NARROW_BANDWIDTH < 90
    for dtype, tol in ((np.float64, 1e-12), (np.float32, 2e-5)):
        A = BigMatrix.from_numpy(a.astype(dtype), (90, 90), inline.store)
        s = numpywren.svd(A, compute_uv=False, executor=inline)
        want = np.linalg.svd(a.astype(dtype).astype(np.float64), compute_uv=False)
        assert s.dtype == dtype and np.abs(s - want).max() <= tol * want[0]


@pytest.mark.parametrize("dtype", [np.float64, np.complex128, np.float32])
def test_eigvalsh_band_narrowed_matches_numpy_in_band_storage(dtype):
    """eigvalsh's band problem for a band under n / 8 wider than 64: narrowed (two-sided, both triangles in
    O(n b) storage), then ?sbevd: within 1e-12 ||A||_2 of numpy's (float64); its memory under half of one
    n x n array (tracemalloc) and within the task's declared workspace."""
    rng = np.random.default_rng(21)
    n, b = 1000, 100
    assert not eigen.dense_values(n, b) and b > band.NARROW_BANDWIDTH
    x = rng.standard_normal((n, n)) + (1j * rng.standard_normal((n, n)) if np.dtype(dtype).kind == "c" else 0)
    a = x + x.conj().T
    a[np.abs(np.subtract.outer(np.arange(n), np.arange(n))) > b] = 0
    a = a.astype(dtype)
    diagonal = [a[k:k + b, k:k + b] for k in range(0, n, b)]
    sub = [np.triu(a[k + b:k + 2 * b, k:k + b]) for k in range(0, n - b, b)]   # upper triangular: R factors
    a = np.tril(np.triu(a, -b), b)
    w, _ = eigen.eigh_band(eigen.lower_band(diagonal, sub, b), False)
    want = np.linalg.eigvalsh(a.astype(np.complex128))
    assert w.dtype == np.finfo(dtype).dtype
    assert np.abs(w - want).max() <= TOL[dtype] * np.abs(want).max()
    n = 3000   # memory: a third of one n x n array at n = 3000, b = 100 (tracemalloc, LAPACK's work included)
    ab = rng.standard_normal((b + 1, n)).astype(dtype)
    tracemalloc.start()
    try:
        eigen.eigh_band(ab, False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < n * n * np.dtype(dtype).itemsize / 2
    assert peak <= eigen.band_workspace("eigh", n, b, False) * np.dtype(dtype).itemsize


@pytest.mark.parametrize("c,nb", [(3, 3), (8, 4), (29, 5)])
def test_narrow_symmetric_keeps_the_eigenvalues_in_a_narrower_band(c, nb):
    rng = np.random.default_rng(c + nb)
    n, b = 230, 40
    lower = rng.standard_normal((b + 1, n))
    a = np.zeros((n, n))
    for d in range(b + 1):
        a[np.arange(d, n), np.arange(n - d)] = lower[d, :n - d]
    a = np.tril(a) + np.tril(a, -1).T
    narrowed = band.narrow_symmetric(lower, c, nb)
    assert narrowed.shape == (c + 1, n)
    m = np.zeros((n, n))
    for d in range(c + 1):
        m[np.arange(d, n), np.arange(n - d)] = narrowed[d, :n - d]
    m = np.tril(m) + np.tril(m, -1).T
    want = np.linalg.eigvalsh(a)
    assert np.abs(np.linalg.eigvalsh(m) - want).max() <= 1e-13 * np.abs(want).max()
