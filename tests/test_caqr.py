"""CAQR: qr of any shape (square, wide, tall over several column tiles), checked against numpy.linalg.qr."""
import numpy as np
import pytest

import numpywren
from numpywren import BigMatrix, LocalStore
from numpywren.executors.inline import InlineExecutor

#: relative tolerances of the two precisions (scipy's tests use the same)
TOL = {np.float64: 1e-12, np.float32: 2e-5}
CAQR_OPS = {"caqr_factor", "caqr_apply", "caqr_take", "zeros"}


def signs_like(r, ref):
    """r with its rows' signs flipped to match ref's diagonal (QR is unique up to those signs)."""
    d, d0 = np.diag(r), np.diag(ref)
    flip = np.ones(r.shape[0], dtype=r.dtype)
    flip[:d.size] = np.where(np.sign(d) == np.sign(d0), 1, -1)
    return r * flip[:, None]


def check(a, result, mode, dtype, r_tol=None):
    """Orthogonality, reconstruction and R against numpy (R up to row signs, where R is well determined)."""
    tol = 10 * TOL[dtype] * np.sqrt(max(a.shape))
    R = result if mode == "r" else result[1]
    R = R.to_numpy() if isinstance(R, BigMatrix) else R     # one tile column: TSQR's numpy R
    r0 = np.linalg.qr(a.astype(np.float64), mode="r" if mode == "r" else mode)
    r0 = r0 if mode == "r" else r0.R
    assert R.shape == r0.shape and R.dtype == dtype
    assert np.array_equal(R, np.triu(R))
    if r_tol is not None:
        assert np.linalg.norm(signs_like(R, r0) - r0) / np.linalg.norm(r0) < r_tol
    if mode != "r":
        Q, R_ = result
        q = Q.to_numpy()
        q0 = np.linalg.qr(a, mode=mode).Q
        assert q.shape == q0.shape and q.dtype == dtype
        assert np.abs(q.T @ q - np.eye(q.shape[1])).max() < tol
        assert np.linalg.norm(q @ R - a) / np.linalg.norm(a) < tol


@pytest.mark.parametrize("m,n,b,fan_in,mode", [
    (40, 40, 10, 2, "reduced"),     # square, 4x4 tiles, binary trees
    (40, 40, 10, 2, "r"),
    (53, 37, 10, 4, "reduced"),     # tall, ragged in both directions, several column tiles
    (53, 37, 10, 4, "complete"),
    (37, 53, 10, 3, "complete"),    # wide, ragged
    (100, 20, 10, 4, "reduced"),    # tall and skinny over two column tiles: two-level trees
    (20, 100, 10, 2, "reduced"),    # wide: the last panel updates many columns
    (25, 25, 25, 4, "complete"),    # one tile
])
@pytest.mark.parametrize("tree", ["flat", "tsqr"])
def test_caqr_matches_numpy(inline, m, n, b, fan_in, mode, tree):
    a = np.random.default_rng(m * n + b).standard_normal((m, n))
    A = BigMatrix.from_numpy(a, (b, b), inline.store)
    result = numpywren.qr(A, mode=mode, executor=inline, fan_in=fan_in, tree=tree)
    if mode != "r" and A.grid[1] > 1:
        assert isinstance(result, np.linalg._linalg.QRResult)
    check(a, result, mode, np.float64, r_tol=1e-12)


def test_caqr_float32_and_transposed_view(inline):
    a = np.random.default_rng(1).standard_normal((30, 45)).astype(np.float32)
    W = BigMatrix.from_numpy(a, (8, 8), inline.store)
    result = numpywren.qr(W.T, executor=inline)          # 45 x 30, a view of stored 30 x 45 tiles
    check(a.T, result, "reduced", np.float32, r_tol=1e-4)
    assert result.Q.shape == (45, 30) and result.R.shape == (30, 30)


def test_caqr_complete_of_one_tile_column_and_worker_processes(local_executor):
    """One tile column with non-square tiles (mode "complete" goes to CAQR), on worker processes."""
    a = np.random.default_rng(2).standard_normal((70, 12))
    A = BigMatrix.from_numpy(a, (16, 12), local_executor.store)
    Q, R = numpywren.qr(A, mode="complete", executor=local_executor)
    check(a, (Q, R), "complete", np.float64, r_tol=1e-12)
    assert Q.shape == (70, 70) and R.shape == (70, 12)
    # tiles shorter than the panel is wide: no flat chain fits (its head needs a 12 x 12 triangle), the tree does
    A = BigMatrix.from_numpy(a, (8, 12), local_executor.store)
    plan = numpywren.qr(A, mode="complete", compute=False, workers=2)
    assert all("kernel" not in t.params for t in plan.dag if t.op == "caqr_factor")
    check(a, numpywren.qr(A, mode="complete", executor=local_executor), "complete", np.float64, r_tol=1e-12)


def test_caqr_graded_and_rank_deficient(inline):
    rng = np.random.default_rng(3)
    u, _ = np.linalg.qr(rng.standard_normal((48, 40)))
    v, _ = np.linalg.qr(rng.standard_normal((40, 40)))
    graded = (u * np.logspace(0, -12, 40)) @ v.T          # singular values 1 .. 1e-12
    deficient = rng.standard_normal((48, 40))
    deficient[:, 20:] = deficient[:, :20] @ rng.standard_normal((20, 20))   # rank 20
    for a in (graded, deficient):
        A = BigMatrix.from_numpy(a, (8, 8), inline.store)
        check(a, numpywren.qr(A, executor=inline), "reduced", np.float64)   # R not unique: no R comparison
        r = numpywren.qr(A, mode="r", executor=inline).to_numpy()
        # |R| matches numpy's on the well-determined leading rows
        r0 = np.linalg.qr(a, mode="r")
        assert np.linalg.norm(np.abs(r[:8]) - np.abs(r0[:8])) < 1e-12 * np.linalg.norm(r0)


def test_caqr_plan_is_tile_tasks(inline):
    """On 5x5 tiles every task is a CAQR tile task writing one tile from at most fan_in + 1 tiles."""
    a = np.random.default_rng(4).standard_normal((50, 50))
    A = BigMatrix.from_numpy(a, (10, 10), inline.store)
    fan_in = 2
    plan = numpywren.qr(A, executor=inline, fan_in=fan_in, tree="tsqr", compute=False)
    assert isinstance(plan, numpywren.Plan)
    ops = {t.op for t in plan.dag}
    assert ops <= CAQR_OPS and {"caqr_factor", "caqr_apply", "caqr_take"} <= ops
    for task in plan.dag:
        matrix, i, j = task.output
        assert matrix.block_shape(i, j)[0] <= fan_in * 10 + 1 and len(task.inputs) <= fan_in + 2, task
        for ref in task.inputs:
            assert ref[0].block_shape(ref[1], ref[2])[0] <= fan_in * 10 + 1
    stats = plan.stats()
    assert stats["tasks"] == len(plan.dag) and stats["flops"] > 0
    # the panel factorizations: 5 + 4 + 3 + 2 + 1 leaves plus the binary tree nodes above them
    leaves = [t for t in plan.dag if t.op == "caqr_factor" and t.id.split("/")[-2] == "0"]
    assert len(leaves) == 15
    numpywren.run(plan, inline)
    check(a, (plan.outputs[1].matrix, plan.outputs[0].matrix), "reduced", np.float64, r_tol=1e-12)


def test_qr_refuses_an_unknown_tree(inline):
    for shape, tiles in (((40, 40), (10, 10)), ((40, 8), (10, 8))):   # CAQR, and TSQR (which ignores tree)
        A = BigMatrix.from_numpy(np.ones(shape), tiles, inline.store)
        with pytest.raises(ValueError, match="tree must be"):
            numpywren.qr(A, tree="binary", executor=inline)


@pytest.mark.parametrize("chain_tiles", [1, 2])
def test_caqr_flat_plan_is_ts_chains(inline, monkeypatch, chain_tiles):
    """tree="flat": per panel one geqrt of the diagonal tile and one tpqrt per ``CHAIN_TILES`` tiles below (no
    stacked R's); each task reads at most a factor tile and two row blocks and writes at most the running top
    rows, its step's tiles and T."""
    from numpywren import caqr

    monkeypatch.setattr(caqr, "CHAIN_TILES", chain_tiles)
    a = np.random.default_rng(4).standard_normal((50, 50))
    A = BigMatrix.from_numpy(a, (10, 10), inline.store)
    plan = numpywren.qr(A, executor=inline, mode="r", compute=False)
    ops = {t.op for t in plan.dag}
    assert ops <= CAQR_OPS
    factors = [t for t in plan.dag if t.op == "caqr_factor"]
    below = [4, 3, 2, 1, 0]                                  # tiles below the diagonal, per panel
    steps = [-(-b // chain_tiles) for b in below]            # TS steps per panel
    assert sorted(t.params["kernel"] for t in factors) == ["ts"] * sum(steps) + ["wy"] * 5
    applies = [t for t in plan.dag if t.op == "caqr_apply"]
    assert {t.params["kernel"] for t in applies} == {"wy", "ts"}
    assert len(applies) == sum(right * (1 + s) for right, s in zip(below, steps))   # columns to the right x steps
    for task in plan.dag:
        matrix, i, j = task.output
        assert matrix.block_shape(i, j)[0] <= (1 + chain_tiles) * 10 + 10 and len(task.inputs) <= 2 + chain_tiles, task
    # the flops are LAPACK's counts of the kernels: within 15% of a dense QR's 4/3 n^3 on 5 x 5 tiles
    flops = sum(t.flops for t in plan.dag)
    assert 4 / 3 * 50 ** 3 <= flops <= 1.15 * 4 / 3 * 50 ** 3
    numpywren.run(plan, inline)
    check(a, plan.outputs[0].matrix, "r", np.float64, r_tol=1e-12)


@pytest.mark.parametrize("chain_tiles", [1, 2, 3])
def test_caqr_flat_chain_steps_of_other_heights(inline, monkeypatch, chain_tiles):
    """Chain steps of several tiles stacked (one tpqrt on a taller block; a ragged last group), with Q and
    qr_multiply."""
    from numpywren import caqr

    monkeypatch.setattr(caqr, "CHAIN_TILES", chain_tiles)
    for m, n, mode in ((53, 37, "reduced"), (37, 53, "complete"), (60, 60, "r")):
        a = np.random.default_rng(m + chain_tiles).standard_normal((m, n))
        A = BigMatrix.from_numpy(a, (10, 10), inline.store)
        check(a, numpywren.qr(A, mode=mode, executor=inline), mode, np.float64, r_tol=1e-12)
    a = np.random.default_rng(8).standard_normal((53, 37))
    c = np.random.default_rng(9).standard_normal((3, 53))
    A, C = BigMatrix.from_numpy(a, (10, 10), inline.store), BigMatrix.from_numpy(c, (3, 10), inline.store)
    y, r = numpywren.qr_multiply(A, C, executor=inline)                      # c @ Q without forming Q
    q0, r0 = np.linalg.qr(a)
    signs = np.sign(np.diag(r.to_numpy())) * np.sign(np.diag(r0))
    assert np.abs(y.to_numpy() - (c @ q0) * signs).max() < 1e-12 * np.abs(c).sum()


def test_caqr_scratch_removed_on_success_and_failure(tmp_path):
    store = LocalStore(tmp_path / "store")
    a = np.random.default_rng(5).standard_normal((30, 30))
    A = BigMatrix.from_numpy(a, (10, 10), store, "data/A")
    with InlineExecutor(workers=2, store=store) as ex:
        Q, R = numpywren.qr(A, executor=ex, out="results/Q")
    keys = set(store.list(""))
    assert not [k for k in keys if "/scratch/" in k or k.startswith("jobs/")]
    assert {k.split("/tiles/")[0] for k in keys if "/tiles/" in k} == {"data/A", "results/Q", R.key}
    with InlineExecutor(workers=2, store=store, faults="error:task=*/k0c/1/*") as ex:
        with pytest.raises(numpywren.JobFailedError):
            numpywren.qr(A, executor=ex, out="results/Q2", retries=1, backoff=0.01)
    assert not [k for k in store.list("") if "/scratch/" in k or k.startswith("jobs/")]


def test_caqr_refuses_what_it_cannot_factor(inline):
    store = inline.store
    a = np.random.default_rng(6).standard_normal((40, 40))
    with pytest.raises(ValueError, match=r"square tiles.*tile_shape=\(10, 10\)"):
        numpywren.qr(BigMatrix.from_numpy(a, (20, 10), store), executor=inline)
    A = BigMatrix.from_numpy(a, (10, 10), store)
    with pytest.raises(ValueError, match="mode"):
        numpywren.qr(A, mode="raw", executor=inline)
    with pytest.raises(ValueError, match="fan_in"):
        numpywren.qr(A, fan_in=1, executor=inline)
    with pytest.raises(ValueError, match="resume"):
        numpywren.qr(A, executor=inline, resume=True)


def test_qr_svd_eigh_plans_show_their_stats_and_scratch_before_running(tmp_path, monkeypatch):
    """The issue's item 7: before running, each plan says its tasks, flops, bytes, critical path, peak tiles in
    flight, its largest task's memory and the scratch it writes (named); the scratch is gone after a run that
    succeeds and after one that fails."""
    from blocks import qr as kernels
    from numpywren import LocalStore
    from numpywren.executors.inline import InlineExecutor
    from numpywren.memory import peak_bytes

    store = LocalStore(tmp_path / "store")
    a = np.random.default_rng(11).standard_normal((60, 40))
    A = BigMatrix.from_numpy(a, (10, 10), store, "data/A")
    S = BigMatrix.from_numpy(a[:40] @ a[:40].T, (10, 10), store, "data/S")
    builds = {"qr": lambda ex: numpywren.qr(A, compute=False, workers=2),
              "svd": lambda ex: numpywren.svd(A, full_matrices=False, compute=False, workers=2),
              "eigh": lambda ex: numpywren.eigh(S, compute=False, workers=2)}
    with InlineExecutor(workers=2, store=store) as ex:
        for name, build in builds.items():
            plan = build(ex)
            stats = plan.stats()
            assert stats["tasks"] == len(plan.dag) and stats["flops"] > 0 and stats["critical_path_tasks"] > 1
            assert stats["peak_tiles_in_flight"] > 0 and stats["scratch_matrices"] == sorted(plan.scratch)
            assert 0 < stats["scratch_bytes_written"] < stats["bytes_written"]
            assert stats["largest_task_bytes"] == max(map(peak_bytes, plan.dag))
            if name != "qr":
                assert stats["largest_task_op"] == f"band_{name}"
            text = repr(plan)
            assert f"scratch {len(plan.scratch)} matrices" in text and "largest task" in text, text
            assert "tiles in flight" in text
            numpywren.run(plan, ex)
            assert not [k for k in store.list("") if "/scratch/" in k], name

        def fail(*args, **kwargs):
            raise np.linalg.LinAlgError("injected")

        for kernel in ("apply_factor", "apply_wy", "apply_ts"):   # the TSQR trees' and the flat chains' appliers
            monkeypatch.setattr(kernels, kernel, fail)
        for name, build in builds.items():
            with pytest.raises(numpywren.JobFailedError, match="injected"):
                numpywren.run(build(ex), ex)
            assert not [k for k in store.list("") if "/scratch/" in k], name
    assert not [k for k in store.list("") if k.startswith("jobs/")]   # the session's too


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.complex128, np.complex64])
@pytest.mark.parametrize("n,h0,h,block", [(24, 24, 24, 8), (24, 30, 7, 5), (24, 24, 40, 128), (16, 9, 0, 4)])
def test_compact_wy_kernels_match_lapack_geqrf(dtype, n, h0, h, block):
    """geqrt of a tile then tpqrt of its R on a block below: R is geqrf's R of the two stacked (up to row signs,
    complex: phases), and the appliers' Q^H maps the stack to [R; 0] and Q maps it back."""
    from scipy.linalg import lapack

    from blocks import qr as kernels

    rng = np.random.default_rng(n + h0 + h)

    def draw(*shape):
        x = rng.standard_normal(shape)
        return (x + 1j * rng.standard_normal(shape) if np.dtype(dtype).kind == "c" else x).astype(dtype)

    top, below = draw(h0, n), draw(h, n)
    tol = 100 * np.finfo(dtype).eps * (h0 + h)
    F0 = kernels.factor_wy(np.array(top, order="F"), block)
    k0 = min(h0, n)
    geqrf = lapack.get_lapack_funcs("geqrf", (top,))
    r0 = np.triu(geqrf(np.array(top, dtype=np.complex128 if np.dtype(dtype).kind == "c" else np.float64))[0][:k0])
    r = kernels.r_of_factor(F0, k0)
    assert np.allclose(np.abs(r), np.abs(r0), atol=tol * np.abs(r0).max())
    c = kernels.apply_wy(F0, top, transpose=True)                      # Q^H top = [R; 0]
    assert np.abs(c[:k0] - r).max() <= tol * np.abs(r0).max()
    assert np.abs(c[k0:]).max(initial=0) <= tol * np.abs(r0).max()
    assert np.abs(kernels.apply_wy(F0, c, transpose=False) - top).max() <= tol * np.abs(top).max()
    if h0 < n:
        return
    F1 = kernels.factor_ts(r, below, block)
    stack = np.vstack([top, below])
    want = np.triu(geqrf(np.array(stack, dtype=np.complex128 if np.dtype(dtype).kind == "c" else np.float64))[0][:n])
    r1 = kernels.r_of_factor(F1, n)
    assert np.abs(np.abs(r1) - np.abs(want)).max() <= tol * np.abs(want).max()
    # the pair's Q^H on the stack: the head's on the top rows, then the TS step on its top n rows and the block
    step = kernels.apply_ts(F1, np.vstack([c[:n], below]), transpose=True)
    assert np.abs(step[:n] - r1).max() <= tol * np.abs(want).max()
    assert np.abs(step[n:]).max(initial=0) <= tol * np.abs(want).max()
    back = kernels.apply_ts(F1, step, transpose=False)
    assert np.abs(back - np.vstack([c[:n], below])).max() <= tol * np.abs(stack).max()


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
@pytest.mark.parametrize("order", ["C", "F"])
def test_compact_wy_appliers_update_in_place_and_ignore_the_triangle_below(dtype, order):
    """The appliers work from the right on C^T: a C-ordered stack is updated in place (``overwrite``), any other
    input is copied and left alone, and both give Q^H C, Q C as numpy's explicit Q does; factor_ts reads only the
    upper triangle of its top (what lies below it does not change the factor), and the R it holds is upper
    triangular."""
    from blocks import qr as kernels

    rng = np.random.default_rng(7)

    def draw(*shape):
        x = rng.standard_normal(shape)
        return (x + 1j * rng.standard_normal(shape) if np.dtype(dtype).kind == "c" else x).astype(dtype)

    n, h, cols = 12, 9, 5
    r = np.triu(draw(n, n))
    below = draw(h, n)
    F = kernels.factor_ts(r, below, 4)
    assert np.array_equal(kernels.factor_ts(r + np.tril(draw(n, n), -1), below, 4), F)
    assert np.array_equal(np.tril(F[:n], -1), np.zeros((n, n)))
    q = kernels.apply_ts(F, np.eye(n + h, dtype=dtype), transpose=False)     # the explicit Q of the stack
    assert np.abs(q.conj().T @ q - np.eye(n + h)).max() < 1e-13
    assert np.abs(q.conj().T @ np.vstack([r, below]) - np.vstack([F[:n], np.zeros((h, n))])).max() < 1e-13 * np.abs(r).max()
    c = np.array(draw(n + h, cols), order=order)
    for transpose, want in ((True, q.conj().T @ c), (False, q @ c)):
        kept = c.copy()
        got = kernels.apply_ts(F, c, transpose)
        assert np.array_equal(c, kept) and got.flags.c_contiguous
        assert np.abs(got - want).max() < 1e-13 * np.abs(c).max()
        inplace = np.array(c, order=order)
        got = kernels.apply_ts(F, inplace, transpose, overwrite=True)
        assert np.abs(got - want).max() < 1e-13 * np.abs(c).max()
        assert np.shares_memory(got, inplace) == (order == "C")
    head = draw(n + h, n)
    W = kernels.factor_wy(np.array(head, order="F"), 4)
    qw = kernels.apply_wy(W, np.eye(n + h, dtype=dtype), transpose=False)
    assert np.abs(qw.conj().T @ head - np.vstack([kernels.r_of_factor(W, n), np.zeros((h, n))])).max() < 1e-13 * np.abs(head).max()
    for transpose, want in ((True, qw.conj().T @ c), (False, qw @ c)):
        inplace = np.array(c, order=order)
        got = kernels.apply_wy(W, inplace, transpose, overwrite=True)
        assert np.abs(got - want).max() < 1e-13 * np.abs(c).max()
        assert np.shares_memory(got, inplace) == (order == "C")


@pytest.mark.parametrize("shape", [(5, 5), (7, 4), (4, 7), (1, 3)])
@pytest.mark.parametrize("order", ["C", "F"])
def test_triu_is_numpys(shape, order):
    from blocks import qr as kernels

    x = np.asarray(np.random.default_rng(1).standard_normal(shape), order=order)
    assert np.array_equal(kernels.triu(x), np.triu(x))
    assert np.array_equal(kernels.triu(x[1:, 1:]), np.triu(x[1:, 1:]))
