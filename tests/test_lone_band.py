"""The band step of eigh/eigvalsh/svd runs alone, so it may use the idle workers' cores (numpywren.worker.lone)."""
import os

import numpy as np
import pytest

import numpywren
from numpywren import BigMatrix
from numpywren.jobs import compose
from numpywren.worker import lone


def _ancestors(dag, task_id):
    seen, todo = set(), [task_id]
    while todo:
        for dep in dag.tasks[todo.pop()].deps:
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


@pytest.mark.parametrize("op,kind,vectors", [("eigh", "band_eigh", True), ("eigvalsh", "band_eigh", False),
                                             ("svd", "band_svd", True), ("svd", "band_svd", False),
                                             ("svd-wide", "band_svd", True)])
def test_the_band_task_is_marked_alone_and_every_other_task_precedes_or_follows_it(inline, op, kind, vectors):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((40, 40) if op != "svd-wide" else (30, 50))
    A = BigMatrix.from_numpy(a + a.T if op.startswith("eig") else a, (10, 10), inline.store)
    if op == "eigh":
        plan = numpywren.eigh(A, executor=inline, compute=False)
    elif op == "eigvalsh":
        plan = numpywren.eigvalsh(A, executor=inline, compute=False)
    else:
        plan = numpywren.svd(A, executor=inline, compute_uv=vectors, compute=False)
    (band,) = [t for t in plan.dag if t.op == kind]
    before = _ancestors(plan.dag, band.id)
    after = {t.id for t in plan.dag if band.id in _ancestors(plan.dag, t.id)}
    alone = before | after | {band.id} == set(plan.dag.tasks)
    assert band.params["alone"] is alone
    # a wide A's complete U: the identity columns' back-transformation does not wait for the band
    assert alone == (op != "svd-wide")
    assert len(before) > 1 and (len(after) > 1) == vectors


def test_lone_threads_follow_the_executor_or_lambdas_memory():
    cores = os.cpu_count() or 1
    assert lone.lone_threads({}) is None                                  # dask, Lithops, inline: unchanged
    assert lone.lone_threads({lone.THREADS_ENV: "64"}) == cores          # never more than the machine's
    assert lone.lone_threads({lone.THREADS_ENV: "1"}) == 1
    assert lone.lone_threads({lone.LAMBDA_MEMORY_ENV: "1769"}) == 1
    assert lone.lone_threads({lone.LAMBDA_MEMORY_ENV: "3008"}) == min(2, cores)
    assert lone.lone_threads({lone.LAMBDA_MEMORY_ENV: "10240"}) == min(6, cores)
    # cores other processes use are not taken: their threads and OpenBLAS's would wait on each other
    assert lone.lone_threads({lone.THREADS_ENV: "64"}, busy=1) == max(1, cores - 1)
    assert lone.lone_threads({lone.THREADS_ENV: "64"}, busy=cores + 3) == 1


@pytest.mark.skipif(not os.path.exists("/proc/loadavg"), reason="Linux's runnable count")
def test_busy_elsewhere_counts_a_spinning_process():
    import subprocess
    import sys
    import time

    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        assert lone.busy_elsewhere() >= 1      # the spinner is always runnable, running or waiting for a core
    finally:
        spinner.kill()
        spinner.wait()


def test_alone_blas_raises_the_limit_inside_and_restores_it(monkeypatch):
    from threadpoolctl import threadpool_info, threadpool_limits

    def blas_threads():
        return {p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas" and p.get("num_threads")}

    monkeypatch.setenv(lone.THREADS_ENV, "2")
    monkeypatch.setattr(lone, "busy_elsewhere", lambda: 0)   # an idle machine (CI's is not)
    two = (os.cpu_count() or 1) >= 2
    with threadpool_limits(limits=1):
        with lone.alone_blas({"alone": True}) as threads:
            assert threads == (2 if two else None)
            assert blas_threads() == ({2} if two else {1})
        assert blas_threads() == {1}
        with lone.alone_blas({}) as threads:                              # a task that is not alone
            assert threads is None and blas_threads() == {1}
        monkeypatch.setattr(lone, "busy_elsewhere", lambda: 1)           # another process on a core
        with lone.alone_blas({"alone": True}) as threads:
            assert threads is None and blas_threads() == {1}
        # a task writing side tiles (the band's vectors) takes the declared count whatever the load: a retry of
        # a lost attempt that is still alive must write the same bytes
        with lone.alone_blas({"alone": True, "writes": [("Z", 0, 0)]}) as threads:
            assert threads == (2 if two else None)
    monkeypatch.setattr(lone, "busy_elsewhere", lambda: 0)
    with threadpool_limits(limits=2):                                    # never fewer than the worker's own
        own = blas_threads()
        with lone.alone_blas({"alone": True}) as threads:
            assert threads is None and blas_threads() == own


def test_local_workers_get_the_machines_share_and_the_band_step_stays_exact(local_store):
    with numpywren.LocalExecutor(workers=2, store=local_store) as ex:
        assert ex._env[lone.THREADS_ENV] == str(min(os.cpu_count() or 1, 2))
        rng = np.random.default_rng(2)
        a = rng.standard_normal((300, 300))
        a = a + a.T
        A = BigMatrix.from_numpy(a, (100, 100), local_store)
        w = numpywren.eigvalsh(A, executor=ex)
        w0 = np.linalg.eigvalsh(a)
        assert np.abs(w - w0).max() <= 1e-12 * np.abs(w0).max()
        s = numpywren.svd(A, executor=ex, compute_uv=False)
        s0 = np.linalg.svd(a, compute_uv=False)
        assert np.abs(s - s0).max() <= 1e-12 * s0[0]


def test_a_composed_plan_keeps_alone_only_where_nothing_else_can_run(local_store):
    """compose: the band task of one plan runs beside the other plan's tasks, so it may not take their cores."""
    rng = np.random.default_rng(7)
    a = rng.standard_normal((256, 256))
    A = BigMatrix.from_numpy(a + a.T, store=local_store, key="A_sym", tile_shape=(64, 64))
    B = BigMatrix.from_numpy(a, store=local_store, key="B_gen", tile_shape=(64, 64))
    values = numpywren.eigvalsh(A, compute=False)
    product = numpywren.matmul(B, B, out="BB", compute=False)
    band = [t for t in values.dag if (t.params or {}).get("alone")]
    assert band, "the band task of eigvalsh is marked alone in its own plan"
    both = compose(values, product)
    assert not [t for t in both.dag if (t.params or {}).get("alone")]
    assert [t for t in compose(values).dag if (t.params or {}).get("alone")]   # alone still, in a plan of its own
