"""Executors on existing engines: a real dask.distributed LocalCluster (worker processes over TCP)
and Lithops' localhost backend, on a LocalStore and on the moto S3 server. Results checked against numpy."""
from __future__ import annotations

import contextlib
import os
import pickle
import signal
import sys
import threading
import time
from concurrent.futures import CancelledError

import numpy as np
import pytest

import numpywren
from numpywren import BigMatrix


def rel_err(got, want):
    return np.linalg.norm(got - want) / np.linalg.norm(want)


def _pair(store, m, k, n, t, seed=0):
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((m, k)), rng.standard_normal((k, n))
    return a, b, BigMatrix.from_numpy(a, t, store, "A"), BigMatrix.from_numpy(b, t, store, "B")


def _leases(store):
    return [k for k in store.list("jobs/") if "/leases/" in k]


# -- dask.distributed ------------------------------------------------------------------------------------
@contextlib.contextmanager
def _dask_cluster():
    """Two worker processes x one thread, over TCP.

    ``allowed-failures`` 0: a task whose worker dies fails at once (KilledWorker) and numpywren's
    scheduler retries it, instead of dask re-running it behind numpywren's back.
    """
    distributed = pytest.importorskip("distributed", reason="dask.distributed not installed: numpywren[dask]")
    import dask

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           dashboard_address=None, protocol="tcp")
        client = distributed.Client(cluster, set_as_default=False)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


@pytest.fixture(scope="module")
def dask_client(moto_endpoint):
    """One cluster for the module (it depends on moto_endpoint so that the workers inherit its AWS
    test credentials)."""
    with _dask_cluster() as client:
        yield client


@pytest.fixture
def dask_executor(dask_client, store):
    ex = numpywren.executor("dask", client=dask_client, store=store)
    yield ex
    ex.shutdown()


def _setenv(name, value):
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


@contextlib.contextmanager
def _workers_env(client, name, value):
    """Set an environment variable in the dask workers' processes (fault injection reads it per task)."""
    client.run(_setenv, name, value)
    try:
        yield
    finally:
        client.run(_setenv, name, None)


def _pids(client) -> dict:
    return client.run(os.getpid)


def test_dask_map_runs_on_the_cluster_workers(dask_executor, dask_client):
    futures = dask_executor.map(lambda x: (x * x, os.getpid()), range(12))
    results = numpywren.get_all_results(futures, timeout=120)
    assert [r[0] for r in results] == [x * x for x in range(12)]
    assert {r[1] for r in results} <= set(_pids(dask_client).values())
    assert os.getpid() not in {r[1] for r in results}
    assert dask_executor.workers == 2


def test_dask_executor_needs_an_address_or_a_client(dask_client):
    with pytest.raises(ValueError, match="exactly one of address"):
        numpywren.executor("dask")
    with pytest.raises(ValueError, match="exactly one of address"):
        numpywren.executor("dask", address="tcp://127.0.0.1:1", client=dask_client)


def test_dask_by_address_opens_and_closes_its_own_client(dask_client, local_store):
    with numpywren.executor("dask", address=dask_client.scheduler.address, store=local_store) as ex:
        assert ex.call_async(lambda a, b: a - b, 7, b=2).result(timeout=60) == 5
        client = ex.client
    assert client.status == "closed" and dask_client.status == "running"


def test_dask_blas_threads_are_set_in_the_workers(dask_client, local_store):
    def threads():
        import scipy.linalg  # noqa: F401 - scipy's own BLAS too, loaded after the limit was set
        from threadpoolctl import threadpool_info

        return sorted({i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"})

    with numpywren.executor("dask", client=dask_client, store=local_store, blas_threads=1) as ex:
        assert ex.get_all_results(ex.map(lambda _: threads(), range(4)), timeout=60) == [[1]] * 4


def test_dask_gemm_with_split_k(dask_executor):
    a, b, A, B = _pair(dask_executor.store, 64, 160, 96, 32, seed=1)
    C = numpywren.matmul(A, B, out="C", executor=dask_executor, split_k=2, progress=False)
    assert rel_err(C.to_numpy(), a @ b) < 1e-13
    assert C.report.executed == C.report.tasks and C.report.retried == 0


def test_dask_kernel_job(dask_executor):
    from sklearn.metrics.pairwise import pairwise_kernels

    x = np.random.default_rng(3).standard_normal((70, 12))
    X = BigMatrix.from_numpy(x, (32, 8), dask_executor.store)
    K = numpywren.kernel(X, kind="rbf", gamma=0.1, executor=dask_executor, progress=False)
    assert rel_err(K.to_numpy(), pairwise_kernels(x, metric="rbf", gamma=0.1)) < 1e-13


@pytest.fixture
def own_dask_client(moto_endpoint):
    """A cluster of its own, for a test that kills its workers."""
    with _dask_cluster() as client:
        yield client


def test_dask_worker_killed_mid_gemm(own_dask_client, store):
    """SIGKILL a dask worker process while it runs a tile task: numpywren's scheduler retries, result exact."""
    dask_client = own_dask_client
    dask_executor = numpywren.executor("dask", client=dask_client, store=store)
    a, b, A, B = _pair(store, 96, 160, 96, 32, seed=2)
    killed = []

    def killer():
        while len(_leases(store)) < 3:  # a few attempts have begun
            time.sleep(0.01)
        pids = _pids(dask_client)
        while not killed:
            busy = [w for w, keys in dask_client.processing().items() if keys and w in pids]
            if busy:
                os.kill(pids[busy[0]], signal.SIGKILL)
                killed.append(pids[busy[0]])
            time.sleep(0.005)

    with _workers_env(dask_client, "NUMPYWREN_FAULTS", "delay:seconds=0.2"), dask_executor:
        thread = threading.Thread(target=killer, daemon=True)
        thread.start()
        C = numpywren.matmul(A, B, out="C", executor=dask_executor, split_k=2, backoff=0.05, progress=False)
        thread.join(timeout=30)
    r = C.report
    died = [f for f in r.failures if "WorkerDiedError" in f[2]]
    assert killed and died and r.retried == len(r.failures)
    assert rel_err(C.to_numpy(), a @ b) < 1e-13


def test_dask_a_frozen_worker_does_not_stall_the_job(own_dask_client, local_store):
    """A dask worker process stops itself (SIGSTOP) as it receives a Cholesky tile task, before its
    lease; no task_timeout: numpywren re-sends the task once it shows no sign of life, the result is exact."""
    dask_client = own_dask_client
    x = np.random.default_rng(4).standard_normal((96, 96))
    a = x @ x.T + 96 * np.eye(96)
    A = BigMatrix.from_numpy(a, 32, local_store, "A")
    pids = _pids(dask_client)
    with _workers_env(dask_client, "NUMPYWREN_FAULTS", "freeze:task=*/L1_1:attempt=1:at=received"), \
            numpywren.executor("dask", client=dask_client, store=local_store) as ex:
        try:
            L = numpywren.cholesky(A, out="L", executor=ex, silence_seconds=2.0, backups=None, progress=False)
        finally:
            for pid in pids.values():  # wake the frozen worker: dask's own calls to every worker need it
                os.kill(pid, signal.SIGCONT)
    assert rel_err(np.tril(L.to_numpy()), np.linalg.cholesky(a)) < 1e-12
    assert any("L1_1" in f[0] and "not started" in f[2] for f in L.report.failures)


def test_dask_a_failing_task_fails_the_job(dask_client, local_store):
    _, _, A, B = _pair(local_store, 64, 64, 64, 32)
    with _workers_env(dask_client, "NUMPYWREN_FAULTS", "error:task=*/C0_1"), \
            numpywren.executor("dask", client=dask_client, store=local_store) as ex:
        with pytest.raises(numpywren.JobFailedError, match="C0_1.*failed 2 times") as info:
            numpywren.matmul(A, B, out="C", executor=ex, retries=1, backoff=0.01, progress=False)
    assert type(info.value.__cause__).__name__ == "InjectedFault"


def _gate_waiter(gate_path):
    def hold(i):
        open(f"{gate_path}.started-{i}", "w").close()
        while not os.path.exists(gate_path):
            time.sleep(0.01)
        return "ran"
    return hold


def test_dask_cancel_drops_calls_not_yet_started(dask_client, local_store, tmp_path):
    gate = tmp_path / "gate"
    with numpywren.executor("dask", client=dask_client, store=local_store) as ex:
        busy = ex.map(_gate_waiter(str(gate)), range(2))  # both worker threads held
        deadline = time.monotonic() + 300  # only against a hang: both start within seconds
        while not all(os.path.exists(f"{gate}.started-{i}") for i in range(2)):
            assert time.monotonic() < deadline, "the two gate calls never ran at once"
            time.sleep(0.01)
        queued = ex.map(lambda x: x, range(4))
        single = ex.call_async(lambda: "single")
        assert single.cancel() is True
        assert ex.cancel([queued[0].callset]) == 4
        gate.touch()
        assert ex.get_all_results(busy, timeout=120) == ["ran", "ran"]
        for f in queued + [single]:
            with pytest.raises(CancelledError, match="cancelled"):
                f.result(timeout=120)
            assert f.errored() and not f.succeeded()
        done = ex.call_async(lambda: 1)
        assert done.result(timeout=60) == 1 and done.cancel() is False  # a finished call stays finished


def test_dask_missing_extra_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed now fails
    monkeypatch.delitem(sys.modules, "numpywren.executors.dask", raising=False)
    with pytest.raises(ImportError, match=r'pip install "numpywren\[dask\]"'):
        numpywren.executor("dask", address="tcp://127.0.0.1:1")


def test_wait_across_dask_and_local_executors_with_extra_env(dask_client, local_store):
    with numpywren.executor("dask", client=dask_client, store=local_store) as d, \
            numpywren.LocalExecutor(workers=1, store=local_store) as loc:
        futures = (d.map(lambda x: (x, os.environ.get("NW_ENGINE")), range(3), extra_env={"NW_ENGINE": "dask"})
                   + loc.map(lambda x: (x, os.environ.get("NW_ENGINE")), range(2), extra_env={"NW_ENGINE": "local"}))
        futures = pickle.loads(pickle.dumps(futures))  # and the copies are waitable too
        done, not_done = numpywren.wait(futures, numpywren.ALL_COMPLETED, timeout=120)
        assert not not_done
        assert numpywren.get_all_results(futures) == [(x, "dask") for x in range(3)] + [(x, "local") for x in range(2)]
        assert d.reduce(len, futures).result(timeout=60) == 5


# -- Lithops (localhost backend: each call in a process of this machine, no config) ----------------------
@pytest.fixture
def lithops_executor(store):
    pytest.importorskip("lithops", reason="Lithops not installed: numpywren[lithops]")
    ex = numpywren.executor("lithops", backend="localhost", storage="localhost", store=store)
    yield ex
    ex.shutdown()


def test_lithops_map_and_gemm(lithops_executor):
    ex = lithops_executor
    def square(x):
        from threadpoolctl import threadpool_info

        return x * x, os.getpid(), {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}

    results = numpywren.get_all_results(ex.map(square, range(4)), timeout=300)
    assert [r[0] for r in results] == [0, 1, 4, 9] and os.getpid() not in {r[1] for r in results}
    assert all(r[2] == {1} for r in results)  # blas_threads=1 in every Lithops process
    assert ex.call_async(lambda: os.environ.get("NW_ENGINE"), extra_env={"NW_ENGINE": "x"}).result(300) == "x"
    a, b, A, B = _pair(ex.store, 64, 96, 64, 32, seed=4)
    C = numpywren.matmul(A, B, out="C", executor=ex, split_k=1, progress=False)
    assert rel_err(C.to_numpy(), a @ b) < 1e-13 and C.report.tasks == 4


def test_lithops_call_that_kills_its_process_fails_as_worker_died(local_store):
    pytest.importorskip("lithops", reason="Lithops not installed: numpywren[lithops]")
    with numpywren.executor("lithops", backend="localhost", storage="localhost", store=local_store) as ex:
        future = ex.call_async(lambda: os._exit(3))
        with pytest.raises(numpywren.WorkerDiedError, match="failed in Lithops"):
            future.result(timeout=300)


def test_lithops_missing_extra_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "lithops", None)
    monkeypatch.delitem(sys.modules, "numpywren.executors.lithops", raising=False)
    with pytest.raises(ImportError, match=r'pip install "numpywren\[lithops\]"'):
        numpywren.executor("lithops", backend="localhost")
