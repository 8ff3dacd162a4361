"""Runs, generations and positions: a tile that is not this run's part of this matrix is never a value.

Real worker processes on both stores; every outcome is either exactly one
product (checked against numpy) or an error that names the other run or matrix.
"""
from __future__ import annotations

import json
import os
import pickle
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import numpywren
from numpywren import BigMatrix, JobFailedError, LocalExecutor, protocol
from numpywren.futures import Future
from numpywren.matrix import stored_tile_key
from numpywren.tile import InputChangedError, StaleTileError


def rel_err(got, want):
    return np.linalg.norm(got - want) / np.linalg.norm(want)


def _store_matrix(store, key, a, tile=32):
    return BigMatrix.from_numpy(a, tile, store, key, overwrite=True)


def _copy(store, src, dst):
    store.put(dst, store.get(src))


# -- item 3: a tile copied from another matrix or position ----------------------------------------------
def test_a_tile_copied_from_another_matrix_or_position_is_refused(store):
    rng = np.random.default_rng(0)
    A = _store_matrix(store, "A", rng.standard_normal((64, 64)))
    B = _store_matrix(store, "B", rng.standard_normal((64, 64)))
    _copy(store, stored_tile_key("A", 0, 0), stored_tile_key("B", 0, 0))  # same shape and dtype: only the binding differs
    with pytest.raises(StaleTileError, match=r"block \(0, 0\) of matrix 'A'.*not this one"):
        B.to_numpy()
    B = _store_matrix(store, "B", rng.standard_normal((64, 64)))
    _copy(store, stored_tile_key("B", 0, 1), stored_tile_key("B", 1, 0))  # another position of the same matrix
    with pytest.raises(StaleTileError, match=r"block \(0, 1\) of matrix 'B'"):
        B.get_block(1, 0)
    A2 = _store_matrix(store, "A", rng.standard_normal((64, 64)))  # a new generation of A
    with pytest.raises(InputChangedError, match="'A' was rewritten"):
        A.get_block(0, 0)  # a handle of the old generation
    assert A2.get_block(0, 0).shape == (32, 32)


# -- item 1: two runs into the same out, at the same time -----------------------------------------------
def test_two_concurrent_runs_into_one_out_never_mix(store):
    rng = np.random.default_rng(1)
    a, b1, b2 = (rng.standard_normal((128, 128)) for _ in range(3))
    A, B1, B2 = _store_matrix(store, "A", a), _store_matrix(store, "B1", b1), _store_matrix(store, "B2", b2)
    outcomes, barrier = {}, threading.Barrier(2)

    def driver(name, B):
        with LocalExecutor(2, store, faults="delay:seconds=0.05") as ex:
            barrier.wait()
            try:
                numpywren.matmul(A, B, out="C", executor=ex, progress=False)
                outcomes[name] = "ok"
            except JobFailedError as e:
                outcomes[name] = e

    threads = [threading.Thread(target=driver, args=(n, B)) for n, B in (("b1", B1), ("b2", B2))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert len(outcomes) == 2
    for outcome in outcomes.values():
        if outcome != "ok":  # the refusal or the failure names another run
            assert re.search(r"run '(matmul-[0-9a-f]+)'", str(outcome)), outcome
    try:
        c = BigMatrix.open(store, "C").to_numpy()
    except StaleTileError as e:  # a mix is never a value: reading it names the run
        assert "written by run" in str(e)
        return
    errs = {"b1": rel_err(c, a @ b1), "b2": rel_err(c, a @ b2)}
    assert min(errs.values()) < 1e-12, f"C is a mix of both products: {errs}, outcomes {outcomes}"
    # C holds the product of a run that reported success (unless both failed, each naming the other):
    # never a success whose product is not the one in C
    winners = [name for name, outcome in outcomes.items() if outcome == "ok"]
    assert not winners or min(errs[name] for name in winners) < 1e-12, (errs, outcomes)


# -- item 1: leftover workers of a killed driver ---------------------------------------------------------
LEFTOVER_DRIVER = """
import json, sys, numpywren
from numpywren import BigMatrix, LocalExecutor
store = numpywren.open_store(sys.argv[1])
A, B = BigMatrix.open(store, "A"), BigMatrix.open(store, "B")
with LocalExecutor(workers=2, store=store, faults="delay:seconds=10") as ex:
    print(json.dumps(ex.worker_pids()), flush=True)
    numpywren.matmul(A, B, out="C", executor=ex, progress=False)
"""


def test_leftover_workers_of_a_killed_driver_never_leave_a_silent_mix(store, tmp_path):
    """Kill a driver (not its busy workers), run another product into the same out: never a silent mix.

    The leftover workers sleep 10 s before their task, so they usually write after the second run ended
    (a silent mix on the old code); whatever the timing, the outcome must be exact or name the first run.
    """
    rng = np.random.default_rng(2)
    a, b, a2, b2 = (rng.standard_normal((96, 96)) for _ in range(4))
    _store_matrix(store, "A", a), _store_matrix(store, "B", b)  # what the killed driver multiplies
    A2, B2 = _store_matrix(store, "A2", a2), _store_matrix(store, "B2", b2)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", LEFTOVER_DRIVER, store.url], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    workers = json.loads(proc.stdout.readline())
    deadline = time.monotonic() + 60
    while not [k for k in store.list("jobs/") if "/leases/" in k]:  # its workers are running tasks
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)  # the driver only: its workers run on, as leftover Lambdas do
    proc.wait()
    first_run = json.loads(store.get("C/job.json"))["run"]
    with LocalExecutor(2, store) as ex:
        try:
            numpywren.matmul(A2, B2, out="C", executor=ex, progress=False)
            ok = True
        except JobFailedError as e:  # a leftover overwrote a tile before we finished: named
            assert first_run in str(e)
            ok = False
    for pid in workers:  # let the leftovers finish whatever they write
        while _alive(pid) and time.monotonic() < deadline + 60:
            time.sleep(0.05)
    try:
        c = BigMatrix.open(store, "C").to_numpy()
    except StaleTileError as e:
        assert first_run in str(e)  # the stale tile names the run that wrote it
        return
    assert ok and rel_err(c, a2 @ b2) < 1e-12, "C holds tiles of the killed run as if they were this one's"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie child of the killed driver counts as ended
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


# -- item 2: an input rewritten during a job ----------------------------------------------------------
def test_an_input_rewritten_mid_job_is_a_clear_error_or_exactly_one_version(store):
    rng = np.random.default_rng(3)
    versions = [rng.standard_normal((128, 128)) for _ in range(4)]
    A = _store_matrix(store, "A", versions[0])
    I = _store_matrix(store, "I", np.eye(128))
    stop = threading.Event()

    def rewrite():
        for v in versions[1:]:
            if stop.wait(0.15):
                return
            _store_matrix(store, "A", v)

    thread = threading.Thread(target=rewrite)
    with LocalExecutor(2, store, faults="delay:seconds=0.05") as ex:
        thread.start()
        try:
            C = numpywren.matmul(A, I, out="C", executor=ex, progress=False)
        except JobFailedError as e:
            assert isinstance(e.__cause__, InputChangedError) and "'A' was rewritten" in str(e.__cause__)
            assert e.attempts == 1  # not retried
            C = None
        stop.set()
        thread.join()
    if C is not None:
        c = C.to_numpy()
        assert min(rel_err(c, v) for v in versions[:1]) < 1e-14  # the version the job opened, exactly


# -- item 4: resume verifies what it skips --------------------------------------------------------------
def test_resume_recomputes_a_truncated_or_foreign_output_tile(local_store):
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((96, 64)), rng.standard_normal((64, 96))
    A, B = _store_matrix(local_store, "A", a), _store_matrix(local_store, "B", b)
    other = _store_matrix(local_store, "other", rng.standard_normal((96, 96)))
    with LocalExecutor(2, local_store) as ex:
        numpywren.matmul(A, B, out="C", executor=ex)
        data = local_store.get(stored_tile_key("C", 1, 1))
        local_store.put(stored_tile_key("C", 1, 1), data[:-100])  # truncated
        _copy(local_store, stored_tile_key("other", 2, 0), stored_tile_key("C", 2, 0))  # another matrix's tile
        C = numpywren.matmul(A, B, out="C", executor=ex, resume=True)
    assert C.report.skipped == 7 and C.report.executed == 2
    assert rel_err(C.to_numpy(), a @ b) < 1e-12
    assert other.to_numpy().shape == (96, 96)


# -- the job record, its run and heartbeat ------------------------------------------------------------------
def test_job_record_names_the_run_and_a_live_run_is_not_taken_over(local_store):
    rng = np.random.default_rng(5)
    A = _store_matrix(local_store, "A", rng.standard_normal((64, 64)))
    seen = {}

    class Watching(LocalExecutor):
        """Reads the job record and heartbeat as the first task is delivered: mid-run, whatever the timing."""

        def _invoke(self, event):
            if "record" not in seen:
                seen["record"] = json.loads(local_store.get("C/job.json"))
                seen["beat"] = json.loads(local_store.get(protocol.heartbeat_key(seen["record"]["run"])))
            super()._invoke(event)

    with Watching(2, local_store) as ex:
        C = numpywren.matmul(A, A, out="C", executor=ex)
    record = json.loads(local_store.get("C/job.json"))
    assert seen["record"]["state"] == "running" and seen["record"]["run"] == record["run"] == C.report.run
    assert seen["beat"]["driver"] == record["driver"] and record["state"] == "done"
    assert record["generation"] == C.generation == json.loads(local_store.get("C/meta.json"))["generation"]
    assert not list(local_store.list(f"jobs/{record['run']}/"))  # scratch, leases, heartbeat: gone
    # a run that is still alive (fresh heartbeat, another host) is never taken over
    record.update(state="running", run="matmul-live")
    local_store.put("C/job.json", json.dumps(record).encode())
    local_store.put(protocol.heartbeat_key("matmul-live"),
                    json.dumps({"time": time.time(), "driver": "elsewhere:1"}).encode())
    with pytest.raises(JobFailedError, match="being computed by run 'matmul-live'"):
        numpywren.matmul(A, A, out="C", executor=numpywren.LocalExecutor(1, local_store))


# -- item 11: the linear-algebra path carries no pickles ---------------------------------------------------
class _Recorder(LocalExecutor):
    def _invoke(self, event):
        self.events = getattr(self, "events", []) + [event]
        super()._invoke(event)


def test_tile_jobs_send_json_events_and_never_unpickle_results(local_store):
    rng = np.random.default_rng(6)
    a = rng.standard_normal((64, 64))
    A = _store_matrix(local_store, "A", a)
    with _Recorder(2, local_store) as ex:
        C = numpywren.matmul(A, A.T, out="C", executor=ex, split_k=2)
        numpywren.kernel(A, kind="rbf", executor=ex)
        assert {e["kind"] for e in ex.events} == {"tile"} and all(json.dumps(e) for e in ex.events)
        assert all(e["result"].endswith(".json") and "func" not in e for e in ex.events)
        pickled = [k for k in local_store.list("") if k.endswith(".pkl")]
        assert pickled == []
    assert rel_err(C.to_numpy(), a @ a.T) < 1e-12
    # a pickle planted under a tile result key is not unpickled: it is an unreadable result
    planted = []

    class Bomb:
        def __reduce__(self):
            return (planted.append, ("ran",))

    event = protocol.tile_event(local_store.url, "s/00000", "00000", {})
    local_store.put(event["result"], pickle.dumps({"ok": True, "value": Bomb()}))
    future = Future(local_store, event)
    with pytest.raises(protocol.RemoteError, match="cannot be unpickled|not a numpywren result|JSON"):
        future.result(timeout=5)
    assert planted == []


def test_errors_cross_as_allow_listed_types_only():
    err = protocol.rebuild_error({"ok": False, "type": "LinAlgError", "message": "not positive definite"})
    assert isinstance(err, np.linalg.LinAlgError) and "positive definite" in str(err)
    err = protocol.rebuild_error({"ok": False, "type": "SystemExit", "message": "3"})
    assert isinstance(err, protocol.RemoteError) and "SystemExit: 3" in str(err)
    err = protocol.rebuild_error({"ok": False, "type": "os.system", "message": "rm -rf"})
    assert type(err) is protocol.RemoteError


# -- item 14: store gc removes what dead or finished owners left, never a live one's objects ----------------
def test_store_gc_removes_dead_runs_and_keeps_live_ones(local_store, capsys):
    from numpywren import cli, gc

    now = time.time()
    local_store.put("jobs/dead-run/leases/x@1", b"{}")
    local_store.put("jobs/dead-run/scratch/p/tiles/0_0", b"x")
    local_store.put("jobs/old-session/00000/results/00000.pkl", b"x")
    local_store.put("jobs/live-run/leases/y@1", b"{}")
    local_store.put("A/tiles/0_0", b"user data")
    for key in ("jobs/dead-run/leases/x@1", "jobs/dead-run/scratch/p/tiles/0_0",
                "jobs/old-session/00000/results/00000.pkl", "jobs/live-run/leases/y@1", "A/tiles/0_0"):
        os.utime(local_store.root / key, (now - 7200, now - 7200))
    local_store.put("jobs/live-run/heartbeat", b"{}")  # fresh: the run is alive
    dry = gc.collect(local_store, older_than=3600, dry_run=True)
    assert dry.removed == {"dead-run": 2, "old-session": 1} and dry.kept == ["live-run"]
    assert len(list(local_store.list("jobs/"))) == 5  # a dry run removes nothing
    assert cli.main(["store", "gc", "--store", str(local_store.root), "--older-than", "1h"]) == 0
    assert "removed 3 objects of 2 finished or dead runs/sessions; kept 1 live" in capsys.readouterr().out
    assert sorted(local_store.list("")) == ["A/tiles/0_0", "jobs/live-run/heartbeat", "jobs/live-run/leases/y@1"]
    assert not (local_store.root / "jobs" / "dead-run").exists()  # no empty folders left behind
    with pytest.raises(ValueError, match="at least"):
        gc.collect(local_store, older_than=10)


KILLED_DRIVER = """
import os, sys
import numpywren
from numpywren import BigMatrix
from numpywren.executors.inline import InlineExecutor
root = sys.argv[1]
A, B = BigMatrix.open(root, "A"), BigMatrix.open(root, "B")
with InlineExecutor(2, root) as ex, numpywren.using(ex):
    C = numpywren.matmul(A, B)          # unnamed: a temporary
    D = (A + B).keep()                  # kept: permanent
    E = numpywren.matmul(A, B, out="E")  # named: permanent
    print(C.key, D.key, flush=True)
    os.kill(os.getpid(), 9)             # killed: no finalizer deletes C
"""


def test_store_gc_removes_a_killed_drivers_unnamed_temporaries(local_store):
    from numpywren import BigMatrix, gc

    a = np.arange(16.0).reshape(4, 4)
    BigMatrix.from_numpy(a, 2, local_store, "A")
    BigMatrix.from_numpy(a.T, 2, local_store, "B")
    proc = subprocess.run([sys.executable, "-c", KILLED_DRIVER, str(local_store.root)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr
    c_key, d_key = proc.stdout.split()
    assert local_store.exists(f"{c_key}/meta.json")  # left behind by the killed driver
    assert gc.collect(local_store, older_than=3600).removed == {}  # its heartbeat is fresh: kept for now
    later = time.time() + 2 * 3600  # as gc would see it two hours later
    removed = gc.collect(local_store, older_than=3600, now=later).removed
    drivers = [owner for owner in removed if owner.startswith("driver-")]
    assert len(drivers) == 1 and removed[drivers[0]] == 2  # its heartbeat and C's registration
    assert not list(local_store.list(f"{c_key}/"))
    np.testing.assert_array_equal(BigMatrix.open(local_store, d_key).to_numpy(), a + a.T)
    np.testing.assert_array_equal(BigMatrix.open(local_store, "E").to_numpy(), a @ a.T)
    np.testing.assert_array_equal(BigMatrix.open(local_store, "A").to_numpy(), a)
