import os
import signal
import time

import numpy as np
import pytest

import numpywren
from numpywren import ALL_COMPLETED, ALWAYS, ANY_COMPLETED, RemoteExitError, WorkerDiedError, wait


class CustomError(Exception):
    pass


def _boom(x):
    if x == 3:
        raise CustomError(f"bad input {x}")
    return x


def test_map_returns_values_in_order(executor):
    futures = executor.map(lambda x: x * x, range(10))
    assert executor.get_all_results(futures) == [x * x for x in range(10)]
    assert all(f.stats["seconds"] >= 0 for f in futures)


def test_get_all_results_with_progress_bar(local_executor, capsys):
    futures = local_executor.map(lambda x: x + 1, range(7))
    assert local_executor.get_all_results(futures, progress=True, desc="adding") == list(range(1, 8))
    assert "adding" in capsys.readouterr().err  # tqdm writes the bar to stderr


def test_call_async_with_kwargs_and_closure(executor):
    offset = 7

    def f(a, b=0):
        return a + b + offset

    assert executor.call_async(f, 1, b=2).result(timeout=60) == 10


def test_workers_are_separate_processes(executor):
    pids = set(executor.get_all_results(executor.map(lambda _: os.getpid(), range(8))))
    assert os.getpid() not in pids
    assert pids <= set(executor.worker_pids())


def test_blas_threads_are_limited(executor):
    def threads(_):
        from threadpoolctl import threadpool_info

        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    counts = executor.call_async(threads, 0).result(timeout=60)
    assert counts and all(n == 1 for n in counts)


def test_remote_exception_keeps_type_and_traceback(executor):
    futures = executor.map(_boom, range(5))
    with pytest.raises(CustomError, match="bad input 3") as info:
        executor.get_all_results(futures)
    notes = "".join(getattr(info.value, "__notes__", []))
    assert "Remote traceback" in notes and "_boom" in notes and "CustomError: bad input 3" in notes
    assert futures[2].result() == 2  # the others still succeed
    assert futures[3].exception() is not None and not futures[3].succeeded()


def test_unpicklable_result_is_reported(executor):
    import threading

    with pytest.raises(TypeError, match="cannot be pickled"):
        executor.call_async(lambda: threading.Lock()).result(timeout=60)


def test_killed_worker_surfaces_as_error(executor):
    def die(_):
        os.kill(os.getpid(), signal.SIGKILL)

    with pytest.raises(WorkerDiedError, match="died"):
        executor.call_async(die, 0).result(timeout=60)
    # the executor replaces the dead worker and keeps working
    assert executor.get_all_results(executor.map(lambda x: x + 1, range(4))) == [1, 2, 3, 4]


def test_task_timeout_kills_the_call(store):
    # The timeout is far from both calls' run times (a replacement worker's start-up does not count),
    # so that a loaded machine cannot turn either outcome around.
    with numpywren.LocalExecutor(workers=1, store=store, task_timeout=5.0) as ex:
        with pytest.raises(WorkerDiedError, match="exceeded the task timeout of 5.0 s"):
            ex.call_async(time.sleep, 600).result(timeout=300)
        assert ex.call_async(lambda: "alive").result(timeout=300) == "alive"


def _remaining_seconds():
    from numpywren.worker.handler import current_context

    return current_context().remaining_seconds()


def test_worker_start_up_does_not_count_against_the_task_timeout(local_store, tmp_path):
    # As on Lambda, whose timeout leaves out the init phase. A sitecustomize makes every worker
    # interpreter after the first take 5 s to start, far more than the 2 s task timeout: the worker
    # that replaces a killed one must still give the next call its whole timeout.
    site = tmp_path / "slow_site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import os, time\n"
        f"if os.path.exists({str(site / 'first')!r}):\n"
        "    time.sleep(5)\n"
        f"open({str(site / 'first')!r}, 'a').close()\n")
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p)
    with numpywren.LocalExecutor(workers=1, store=local_store, task_timeout=2.0, env={"PYTHONPATH": path}) as ex:
        with pytest.raises(WorkerDiedError, match="timeout"):
            ex.call_async(time.sleep, 600).result(timeout=300)
        remaining = ex.call_async(_remaining_seconds).result(timeout=300)  # on a freshly started worker
    assert 0 < remaining <= 2.0  # the worker's remaining time also starts with the call


def test_wait_any_all_always(local_executor):
    ex = local_executor
    fast = ex.call_async(lambda: "fast")
    slow = ex.call_async(time.sleep, 3)
    done, not_done = wait([fast, slow], ALWAYS)
    assert slow in not_done
    done, not_done = wait([fast, slow], ANY_COMPLETED, timeout=30)
    assert fast in done and slow in not_done
    done, not_done = wait([fast, slow], ALL_COMPLETED, timeout=30)
    assert set(done) == {fast, slow} and not not_done
    with pytest.raises(ValueError, match="return_when"):
        wait([fast], "SOMETIMES")


def test_result_timeout(local_executor):
    f = local_executor.call_async(time.sleep, 2)
    with pytest.raises(TimeoutError):
        f.result(timeout=0.2)
    assert f.result(timeout=30) is None


def _wait_for_file(path):
    """A slow call the test ends at will (so that shutdown has no running call to wait for)."""
    for _ in range(6000):
        if os.path.exists(path):
            return "released"
        time.sleep(0.01)
    return "gave up"


@pytest.mark.parametrize("progress", [False, True])
def test_timeout_messages_state_the_timeout_given(local_executor, tmp_path, progress):
    gate = tmp_path / "gate"
    futures = local_executor.map(_wait_for_file, [gate, gate])
    with pytest.raises(TimeoutError, match=r"not finished after 0\.5 s \(2 of 2 calls unfinished\)"):
        local_executor.get_all_results(futures, timeout=0.5, progress=progress)
    with pytest.raises(TimeoutError, match=r"not finished after 0\.3 s"):
        futures[0].result(timeout=0.3)
    gate.touch()
    assert local_executor.get_all_results(futures, timeout=60) == ["released", "released"]


def test_large_argument_goes_through_the_store(executor):
    big = np.random.default_rng(0).standard_normal(100 * 2**20 // 8)  # 100 MB
    f = executor.call_async(lambda a: (a.nbytes, float(a.sum())), big)
    nbytes, total = f.result(timeout=120)
    assert nbytes == big.nbytes
    assert total == pytest.approx(float(big.sum()), rel=1e-12)
    assert len(f.event["args"]) < 200  # the event holds keys, not data
    assert len(str(f.event)) < 1000


def test_user_prints_do_not_break_the_channel(local_executor):
    def chatty(x):
        print("hello from the worker\n" * 3)
        return x

    assert local_executor.get_all_results(local_executor.map(chatty, range(3))) == [0, 1, 2]


def test_cleanup_removes_job_objects(local_executor):
    local_executor.get_all_results(local_executor.map(str, range(3)))
    assert list(local_executor.store.list("jobs/"))
    local_executor.cleanup()
    assert [k for k in local_executor.store.list("jobs/") if not k.endswith("/heartbeat")] == []


def test_bad_configuration(local_store):
    with pytest.raises(ValueError, match="workers"):
        numpywren.LocalExecutor(workers=0, store=local_store)
    with pytest.raises(ValueError, match="unknown backend"):
        numpywren.executor("carrier-pigeon", store=local_store)


def test_shutdown_cancels_queued_calls_and_kills_running_ones(local_store):
    ex = numpywren.LocalExecutor(workers=1, store=local_store)
    futures = ex.map(time.sleep, [30, 30, 30])
    deadline = time.monotonic() + 30
    while not ex.busy_worker_pids() and time.monotonic() < deadline:
        time.sleep(0.05)
    start = time.monotonic()
    ex.shutdown()
    assert time.monotonic() - start < 15  # grace period + kill, not 30 s of sleeping
    with pytest.raises(WorkerDiedError):
        futures[0].result(timeout=10)
    for f in futures[1:]:  # never started: cancelled, not left pending
        with pytest.raises(Exception, match="cancelled"):
            f.result(timeout=10)
    time.sleep(0.5)
    assert not [p for p in ex.worker_pids() if p is not None and _alive(p)]  # nothing respawned


def _alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def _sabotage_result_write():
    """Make the call's own result key unwritable (its folder becomes a file), then return."""
    from numpywren.worker.handler import current_context

    event = current_context().event
    folder = os.path.join(event["store"].removeprefix("file://"), event["result"].rpartition("/")[0])
    if os.path.isdir(folder):
        os.rmdir(folder)
    open(folder, "w").close()
    return 1


def test_a_result_the_worker_cannot_write_fails_the_call(local_store):
    with numpywren.LocalExecutor(workers=1, store=local_store) as ex:
        with pytest.raises(WorkerDiedError, match="could not write its result"):
            ex.call_async(_sabotage_result_write).result(timeout=30)


def _exit_on_3(x):
    import sys

    if x == 3:
        sys.exit(3)
    return x


def test_remote_sys_exit_is_an_error_not_the_drivers_exit(local_executor):
    futures = local_executor.map(_exit_on_3, range(5))
    with pytest.raises(RemoteExitError, match=r"exited with code 3 \(sys.exit\): non-zero return code 3") as info:
        local_executor.get_all_results(futures)
    assert isinstance(info.value, Exception) and info.value.code == 3
    assert "Remote traceback" in "".join(info.value.__notes__)
    assert isinstance(futures[3].exception(), RemoteExitError)
    assert futures[4].result() == 4  # the driver is still running


@pytest.mark.parametrize("error", [KeyboardInterrupt("remote Ctrl-C"), GeneratorExit()],
                         ids=["KeyboardInterrupt", "GeneratorExit"])
def test_remote_base_exceptions_do_not_interrupt_the_driver(local_store, error):
    from numpywren import protocol
    from numpywren.futures import Future

    event = protocol.call_event(local_store.url, "s/00000", "00000", "jobs/s/00000/f.pkl", "jobs/s/00000/a.pkl")
    local_store.put(event["result"], protocol.encode_result("call", protocol.error_payload(error, "call")))
    future = Future(local_store, event)
    with pytest.raises(numpywren.RemoteError, match=type(error).__name__):
        future.result(timeout=10)


def test_input_in_user_code_does_not_eat_events(local_executor):
    with pytest.raises(EOFError):  # stdin is not the event channel: input() ends, it does not hang
        local_executor.call_async(input).result(timeout=30)
    assert local_executor.call_async(lambda: "alive").result(timeout=30) == "alive"


def test_dumps_ships_user_modules_by_value_from_many_threads(tmp_path, monkeypatch):
    import importlib
    import sys
    import threading

    from numpywren.serialize import dumps, loads

    name = f"user_helpers_{os.getpid()}"
    (tmp_path / f"{name}.py").write_text("def adder(k):\n    return lambda x: x + k\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module(name)
    errors, pickles = [], []
    start = threading.Barrier(8)

    def pickle_many(k):
        start.wait()
        for _ in range(200):
            try:
                pickles.append((k, dumps(module.adder(k))))
            except Exception as exc:  # noqa: BLE001 - collected and asserted on below
                errors.append(repr(exc))

    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often, so that the calls interleave
    try:
        threads = [threading.Thread(target=pickle_many, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old_interval)
    assert errors == [] and len(pickles) == 8 * 200
    del sys.modules[name]
    sys.path.remove(str(tmp_path))  # as on a worker: the module is not importable, it travelled by value
    assert all(loads(data)(1) == k + 1 for k, data in pickles)
