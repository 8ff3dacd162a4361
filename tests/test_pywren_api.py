"""PyWren's executor API: code written for PyWren runs with only its import changed."""
from __future__ import annotations

import os
import pickle
import time
from concurrent.futures import CancelledError

import pytest

import numpywren
from numpywren import ALL_COMPLETED, LocalExecutor, protocol, wait
from numpywren.worker.handler import handle


class InputError(Exception):
    pass


def _gated(gate_path: str, value):
    """A call that runs until the file ``gate_path`` exists (no timing margins in tests)."""
    def hold(*_):
        while not os.path.exists(gate_path):
            time.sleep(0.01)
        return value
    return hold


def test_a_pywren_script_runs_with_only_its_import_changed(tmp_path, monkeypatch):
    monkeypatch.setenv("NUMPYWREN_STORE", str(tmp_path / "store"))
    import numpywren as pywren

    pwex = pywren.default_executor(workers=2)
    try:
        futures = pwex.map(lambda x: x + 1, range(10))
        assert pywren.get_all_results(futures) == list(range(1, 11))
        total = pwex.reduce(sum, futures)
        assert total.result() == sum(range(1, 11))
        assert pwex.call_async(lambda data: data * 2, 21).result() == 42
    finally:
        pwex.shutdown()


def test_default_executor_is_a_new_executor_of_the_default_backend(local_store):
    a = numpywren.default_executor(workers=1, store=local_store)
    b = numpywren.default_executor(workers=1, store=local_store)
    try:
        assert isinstance(a, LocalExecutor) and a is not b
    finally:
        a.shutdown()
        b.shutdown()


def test_reduce_receives_the_results_in_order(local_executor):
    futures = local_executor.map(lambda x: x * x, range(6))
    reduced = local_executor.reduce(lambda results: results, futures)
    assert reduced.result(timeout=60) == [x * x for x in range(6)]


def test_reduce_waits_for_its_inputs_without_holding_a_worker(local_store, tmp_path):
    """One worker: a reduce delivered before its inputs ended would wait forever for them."""
    gate = tmp_path / "gate"
    with LocalExecutor(workers=1, store=local_store) as ex:
        first = ex.call_async(_gated(str(gate), 1))
        later = ex.map(lambda x: x, [10, 20])
        reduced = ex.reduce(sum, [first] + later)
        assert not reduced.done()
        gate.touch()
        assert reduced.result(timeout=60) == 31


def test_reduce_fails_with_its_failed_input_error(local_executor):
    def bad(x):
        if x == 2:
            raise InputError(f"input {x} is bad")
        return x

    reduced = local_executor.reduce(sum, local_executor.map(bad, range(4)))
    with pytest.raises(InputError, match="input 2 is bad"):
        reduced.result(timeout=60)
    assert reduced.errored()


def test_future_cancel_drops_a_call_not_yet_started(local_store, tmp_path):
    gate = tmp_path / "gate"
    with LocalExecutor(workers=1, store=local_store) as ex:
        running = ex.call_async(_gated(str(gate), "ran"))
        queued = ex.map(lambda x: x, range(3))
        while not ex.busy_worker_pids():
            time.sleep(0.01)
        assert queued[1].cancel() is True
        gate.touch()
        assert running.result(timeout=60) == "ran"
        assert [queued[0].result(timeout=60), queued[2].result(timeout=60)] == [0, 2]
        with pytest.raises(CancelledError, match="cancelled before it started"):
            queued[1].result(timeout=60)
        assert queued[1].errored() and not queued[1].succeeded()
        assert queued[0].cancel() is False  # done


def test_future_cancel_of_a_running_call_makes_result_say_it_was_cancelled(local_store, tmp_path):
    """PyWren's test_cancel: cancel a running call; its result() raises an error saying it was cancelled."""
    gate = tmp_path / "gate"
    with LocalExecutor(workers=1, store=local_store) as ex:
        running = ex.call_async(_gated(str(gate), "ran"))
        while not ex.busy_worker_pids():
            time.sleep(0.01)
        assert running.cancel() is True
        assert running.done() and running.errored() and not running.succeeded()
        with pytest.raises(CancelledError, match="was cancelled while it was running"):
            running.result(timeout=60)
        gate.touch()
        assert ex.call_async(lambda: "next").result(timeout=60) == "next"  # the worker went on
        with pytest.raises(CancelledError, match="cancelled"):  # still cancelled after the call ended
            running.result(timeout=60)
        assert running.cancel() is False  # done


def test_succeeded_and_errored_are_methods(local_executor):
    ok, bad = local_executor.map(lambda x: 1 / x, [1, 0])
    wait([ok, bad], ALL_COMPLETED, timeout=60)
    assert ok.succeeded() is True and ok.errored() is False
    assert bad.succeeded() is False and bad.errored() is True
    pending = numpywren.Future(local_executor.store, protocol.call_event(
        local_executor.store.url, "nobody/00000", "00000", "f", "a"))
    assert pending.succeeded() is False and pending.errored() is False


def test_extra_env_is_visible_inside_the_call_and_only_there(local_executor):
    def read(_=None):
        return os.environ.get("NW_TEST_VAR"), os.environ.get("NW_OTHER")

    assert local_executor.call_async(read, extra_env={"NW_TEST_VAR": "one"}).result(timeout=60) == ("one", None)
    futures = local_executor.map(read, range(3), extra_env={"NW_TEST_VAR": "two", "NW_OTHER": "x"})
    assert numpywren.get_all_results(futures) == [("two", "x")] * 3
    assert local_executor.get_all_results(local_executor.map(read, range(4))) == [(None, None)] * 4  # restored
    assert futures[0].event["env"] == {"NW_TEST_VAR": "two", "NW_OTHER": "x"}  # carried as JSON in the event


@pytest.mark.parametrize("env,error,match", [
    (["A=1"], TypeError, "extra_env must be a dict"),
    ({"A": 1}, TypeError, r"extra_env\['A'\] must be a str"),
    ({"": "x"}, ValueError, "not a valid environment variable name"),
    ({"A=B": "x"}, ValueError, "not a valid environment variable name"),
])
def test_extra_env_is_checked_before_anything_runs(local_executor, env, error, match):
    before = set(local_executor.store.list("jobs/"))
    with pytest.raises(error, match=match):
        local_executor.map(len, ["a"], extra_env=env)
    with pytest.raises(error, match=match):
        local_executor.call_async(len, "a", extra_env=env)
    assert set(local_executor.store.list("jobs/")) == before


def test_a_worker_refuses_an_event_with_a_malformed_env(local_store):
    event = protocol.call_event(local_store.url, "s/00000", "00000", "f", "a")
    event["env"] = {"PATH": ["not", "a", "string"]}
    with pytest.raises(ValueError, match="malformed numpywren event: extra_env"):
        handle(event)


def test_futures_survive_a_pickle_round_trip_and_stay_waitable(local_store, tmp_path):
    gate = tmp_path / "gate"
    with LocalExecutor(workers=3, store=local_store) as ex:  # two held at the gate, one free
        futures = ex.map(_gated(str(gate), "late"), range(2)) + [ex.call_async(lambda: "early")]
        copies = pickle.loads(pickle.dumps(futures))  # before they finish
        assert copies[2].result(timeout=60) == "early"
        done, not_done = wait(copies, ALL_COMPLETED, timeout=0.05)
        assert len(not_done) == 2
        assert copies[0].cancel() is False  # a copy away from its executor cannot cancel
        gate.touch()
        assert numpywren.get_all_results(copies, timeout=60) == ["late", "late", "early"]
        assert all(f.succeeded() for f in copies)


def test_wait_and_get_all_results_take_futures_of_several_maps_and_executors(tmp_path):
    with LocalExecutor(workers=1, store=tmp_path / "one") as a, LocalExecutor(workers=1, store=tmp_path / "two") as b:
        futures = (a.map(lambda x: ("a1", x), range(3)) + b.map(lambda x: ("b", x), range(3))
                   + a.map(lambda x: ("a2", x), range(2)))
        done, not_done = wait(futures, ALL_COMPLETED, timeout=120)
        assert len(done) == 8 and not not_done
        assert numpywren.get_all_results(futures) == ([("a1", x) for x in range(3)] + [("b", x) for x in range(3)]
                                                      + [("a2", x) for x in range(2)])


def test_get_all_results_names_the_first_unfinished_call(local_store, tmp_path):
    with LocalExecutor(workers=1, store=local_store) as ex:
        futures = ex.map(_gated(str(tmp_path / "never"), None), range(2))
        with pytest.raises(TimeoutError, match=f"call {futures[0].callset}/00000 not finished"):
            numpywren.get_all_results(futures, timeout=0.2)
