"""Scratch freed after its last reader (numpywren.scratch), and what a run leaves behind when it ends.

Real runs on the local store: a scratch tile is gone from the store while the run still runs, a driver
killed mid-run resumes to the same bytes without any task needing a freed tile, a late attempt that reads a
freed tile fails without failing the job; a beaten backup on local processes is stopped when the job ends,
and a computing attempt on this machine gets no backup. Results are checked against numpy/scipy or
against an uninterrupted run, bit for bit.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import scipy.linalg

import numpywren
from numpywren import BigMatrix, LocalExecutor, protocol, scheduler
from numpywren.dag import DAG, Task
from numpywren.executors.inline import InlineExecutor
from numpywren.memory import read_refs
from numpywren.scratch import ScratchTiles
from numpywren.storage import KeyNotFoundError


def rel_err(got, want):
    return np.linalg.norm(got - want) / np.linalg.norm(want)


def _jobs_keys(store):
    """Objects a run may leave under jobs/ (an executor's own heartbeat aside)."""
    return [k for k in store.list("jobs/") if not k.endswith("/heartbeat")]


# -- the plan says how much scratch it holds at once; a run holds no more -------------------------------
@pytest.mark.parametrize("op", ["svdvals", "lu", "qr"])
def test_scratch_is_freed_during_the_run_and_the_plan_says_its_peak(local_store, op):
    a = np.random.default_rng(0).standard_normal((256, 256))
    A = BigMatrix.from_numpy(a, 64, local_store, "A")
    with InlineExecutor(2, local_store) as ex:
        build = {"svdvals": lambda **k: numpywren.linalg.svd(A, compute_uv=False, **k),
                 "lu": lambda **k: numpywren.lu_factor(A, **k),
                 "qr": lambda **k: numpywren.linalg.qr(A, mode="r", **k)}[op]
        plan = build(executor=ex, compute=False)
        stats = plan.stats()
        assert 0 < stats["scratch_peak_bytes"] < stats["scratch_bytes_written"]
        assert "at most" in repr(plan) and "after its last reader" in repr(plan)
        report = numpywren.run(plan, ex, progress=False)
    value = plan.value
    if op == "svdvals":
        assert np.max(np.abs(value - np.linalg.svd(a, compute_uv=False))) <= 1e-12 * np.linalg.norm(a, 2)
    elif op == "lu":
        lu, piv = value
        lu0, piv0 = scipy.linalg.lu_factor(a)
        np.testing.assert_array_equal(piv, piv0)
        assert rel_err(lu.to_numpy(), lu0) < 1e-12
    else:
        r0 = np.linalg.qr(a, mode="r")
        assert rel_err(np.abs(np.asarray(value)), np.abs(r0)) < 1e-12
    # every scratch tile had readers: all of it was freed during the run, never more held than written
    assert report.scratch_freed_bytes == stats["scratch_bytes_written"]
    assert 0 < report.scratch_peak_bytes < stats["scratch_bytes_written"]
    assert not _jobs_keys(local_store)


def test_tiles_without_readers_or_with_two_writers_are_kept_until_the_end(local_store):
    """Only a tile whose every reader is accepted goes: an unread scratch tile, and a tile two tasks write,
    stay (the end of the run removes them); output tiles are never freed."""
    a = np.arange(16.0).reshape(4, 4)
    A = BigMatrix.from_numpy(a, 2, local_store, "A")
    S = BigMatrix.create((4, 4), 2, "float64", local_store, protocol.scratch_key("r", "s"))
    C = BigMatrix.create((4, 4), 2, "float64", local_store, "C")
    gemm = lambda out, x: ((((x, out[1], 0), (A, 0, out[2])), ((x, out[1], 1), (A, 1, out[2]))))  # noqa: E731
    dag = DAG([Task("s00", "gemm", (S, 0, 0), gemm((S, 0, 0), A)),
               Task("s01", "gemm", (S, 0, 1), gemm((S, 0, 1), A)),        # nobody reads it
               Task("s10", "gemm", (S, 1, 0), gemm((S, 1, 0), A)),
               Task("s10b", "gemm", (S, 1, 0), gemm((S, 1, 0), A), deps=("s10",)),  # a second writer
               Task("c00", "gemm", (C, 0, 0), (((S, 0, 0), (A, 0, 0)), ((S, 1, 0), (A, 0, 0))),
                    deps=("s00", "s10b"))])
    tiles = ScratchTiles(dag, [S], delete=False)
    freed = tiles.accepted(["s00", "s01", "s10", "s10b", "c00"])
    assert [key for _, _, key in freed] == [S.tile_key(0, 0)]


def test_a_tile_read_by_a_task_that_leaves_no_tile_is_kept_and_a_resume_runs_that_task_again(local_store):
    """A reduction's shape: partial sums (scratch S1), their combination (scratch S2), and tasks returning
    S2's blocks as values (protocol.VALUE_PARAM: no stored tile, so a resume runs them again). S1 is freed
    after its readers; S2 is kept, since a value task reads it: the resumed run (same run id) re-runs only
    the value tasks, and they find S2 (had S2 been freed, its writer would run again and find S1 gone)."""
    a = np.random.default_rng(8).standard_normal((64, 64))
    A = BigMatrix.from_numpy(a, 32, local_store, "A")
    S1 = BigMatrix.create((64, 2), (32, 1), "float64", local_store, protocol.scratch_key("v", "s1"))
    S2 = BigMatrix.create((64, 1), (32, 1), "float64", local_store, protocol.scratch_key("v", "s2"))
    R = BigMatrix.create((64, 1), (32, 1), "float64", local_store, "R")
    tasks = []
    for b in range(2):
        parts = [Task(f"r{b}_{k}", "reduce", (S1, b, k), (((A, b, k),),), {"kind": "sum"}) for k in range(2)]
        both = Task(f"s{b}", "combine", (S2, b, 0), tuple((S1, b, k) for k in range(2)), {"kind": "sum"},
                    deps=tuple(t.id for t in parts))
        value = Task(f"v{b}", "combine", (R, b, 0), ((S2, b, 0),), {"kind": "sum", protocol.VALUE_PARAM: True},
                     deps=(both.id,))
        tasks += [*parts, both, value]
    dag = DAG(tasks)

    def sums(report):
        blocks = [protocol.decode_value(report.values[f"v{b}"], R.dtype, (32, 1))[0] for b in range(2)]
        return np.concatenate(blocks)[:, 0]

    with InlineExecutor(2, local_store) as ex:
        first = scheduler.run(dag, ex, run="v", progress=False, scratch=ScratchTiles(dag, [S1, S2]))
        assert not any(local_store.exists(S1.tile_key(*ij)) for ij in S1.stored_blocks())
        assert all(local_store.exists(S2.tile_key(*ij)) for ij in S2.stored_blocks())
        resumed = scheduler.run(dag, ex, run="v", progress=False, skip_existing=True, retries=0,
                                scratch=ScratchTiles(dag, [S1, S2]))
    assert resumed.executed == 2 and resumed.skipped == len(dag) - 2   # the two value tasks, nothing else
    np.testing.assert_allclose(sums(first), a.sum(axis=1), rtol=1e-12)
    np.testing.assert_array_equal(sums(resumed), sums(first))


def test_a_resume_after_a_failure_reruns_a_task_whose_side_outputs_are_still_needed(local_store):
    """T writes scratch X (its output) and scratch W beside it (``params["writes"]``); R reads X, Q reads W.
    A failed run deletes its scratch whole; R finished, Q did not. Resuming, T is not done: X's readers are
    all done, but Q needs W, which only T writes (a rule looking at X's readers alone would skip T, and Q
    would find no W)."""
    X = BigMatrix.create((8, 8), 8, "float64", local_store, protocol.scratch_key("f", "x"))
    W = BigMatrix.create((8, 8), 8, "float64", local_store, protocol.scratch_key("f", "w"))
    Y = BigMatrix.create((8, 8), 8, "float64", local_store, "Y")
    Z = BigMatrix.create((8, 8), 8, "float64", local_store, "Z")
    dag = DAG([Task("T", "zeros", (X, 0, 0), (), {"writes": ((W, 0, 0),)}),
               Task("R", "copy", (Y, 0, 0), ((X, 0, 0),), deps=("T",)),
               Task("Q", "copy", (Z, 0, 0), ((W, 0, 0),), deps=("T",))])
    Y.put_block(0, 0, np.zeros((8, 8)), run="f")   # R's output, of this run; X and W deleted with the scratch
    done = scheduler._already_done(dag, "f")
    assert done == {"R"}, done


def test_inv_failed_then_resumed_gives_the_same_bytes(local_store):
    """inv (LU, its panel records scratch of the run): a task of the back substitution fails; the run deletes
    its scratch whole (the LU panels' multipliers and blocks beside the records included). The resumed run
    re-runs the panels whose side outputs are still needed, not only those whose records' readers are not
    done, and gives an uninterrupted run's bytes."""
    a = np.random.default_rng(10).standard_normal((128, 128))
    A = BigMatrix.from_numpy(a, 32, local_store, "A")
    with InlineExecutor(1, local_store) as ex:
        want = numpywren.inv(A, out="I0", executor=ex, progress=False).to_numpy()
    with InlineExecutor(1, local_store, faults="error:task=*/B0_0:attempt=1") as ex:
        with pytest.raises(scheduler.JobFailedError):
            numpywren.inv(A, out="I", executor=ex, progress=False, retries=0)
    with InlineExecutor(1, local_store) as ex:
        got = numpywren.inv(A, out="I", executor=ex, progress=False, resume=True, retries=0)
    assert got.report.skipped > 0
    np.testing.assert_array_equal(got.to_numpy(), want)


# -- mid-run: a freed tile is gone; a driver killed then resumed gives the same bytes --------------------
DRIVER = """
import sys, numpywren
from numpywren import BigMatrix
from numpywren.executors.inline import InlineExecutor
root, hang = sys.argv[1], sys.argv[2]
A = BigMatrix.open(root, "A")
ex = InlineExecutor(2, root, faults=f"hang:task={hang}:seconds=600")   # the last task never ends
numpywren.lu_factor(A, out="LU", executor=ex, progress=False)
"""


def test_a_freed_tile_is_gone_mid_run_and_a_resumed_run_never_needs_one(local_store, tmp_path):
    """LU of 4 x 4 tiles; the driver hangs in the last task that reads scratch. While it hangs, every scratch
    tile all of whose readers ran before that task is gone from the store, and the tiles it reads are there. The driver
    is killed; the resumed run runs only what was not accepted (no freed tile is read: a task that read one
    would fail) and its factor is bit for bit an uninterrupted run's."""
    a = np.random.default_rng(3).standard_normal((128, 128))
    A = BigMatrix.from_numpy(a, 32, local_store, "A")
    with InlineExecutor(2, tmp_path / "reference") as ex:   # the uninterrupted run, in another store
        lu_ref, piv_ref = numpywren.lu_factor(BigMatrix.from_numpy(a, 32, ex.store, "A"), executor=ex)
        lu_ref = lu_ref.to_numpy()
    plan = numpywren.lu_factor(A, out="LU", executor=InlineExecutor(2, local_store), compute=False)
    scratch_keys = {m.key for m in plan.scratch.values()}
    reading = [t for t in plan.dag if any(m.key in scratch_keys for m, _, _ in read_refs(t))]
    last = max(reading, key=lambda t: len(_ancestors(plan.dag, t.id)))   # the last task that reads scratch
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, str(local_store.root), last.id],
                            start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        lease = protocol.spread(last.id.replace("/", "~")) + "@1"
        deadline = time.monotonic() + 240
        while not any(k.endswith(lease) for k in local_store.list("jobs/")):   # the last task has started
            assert proc.poll() is None, f"the driver ended: {proc.communicate()}"
            assert time.monotonic() < deadline, "the last task never started"
            time.sleep(0.02)
        run = numpywren.jobs._read_record(plan.result)["run"]
        for name, m in plan.scratch.items():   # the plan's scratch, at this run's keys
            m.key = protocol.scratch_key(run, name)
        before = _ancestors(plan.dag, last.id)
        readers: dict = {}
        for task in plan.dag:
            for m, i, j in read_refs(task):
                if any(m.key == s.key for s in plan.scratch.values()):
                    readers.setdefault(m.tile_key(i, j), set()).add(task.id)
        gone = {key for key, tids in readers.items() if tids <= before}
        needed = {key for key, tids in readers.items() if last.id in tids}
        assert gone and needed
        while True:   # deletes run on the driver's background thread: wait for them (no timing margin)
            present = {key for key in gone | needed if local_store.exists(key)}
            if present == needed:
                break
            assert proc.poll() is None and time.monotonic() < deadline, f"still there: {sorted(present - needed)}"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    with InlineExecutor(2, local_store) as ex:
        lu, piv = numpywren.lu_factor(A, out="LU", executor=ex, resume=True, retries=0, progress=False)
    report = lu.report
    assert report.executed >= 1 and report.skipped >= len(before)   # everything accepted before the kill
    np.testing.assert_array_equal(piv, piv_ref)
    np.testing.assert_array_equal(lu.to_numpy(), lu_ref)
    assert not [k for k in _jobs_keys(local_store) if "/scratch/" in k]


class _Crash(BaseException):
    """The driver dies here (not an Exception: nothing of the run handles it)."""


@pytest.mark.parametrize("left", [2, 12, 30])
def test_a_solve_killed_late_resumes_to_the_same_bytes(local_store, monkeypatch, left):
    """solve (LU in one job, the panel records an output under the call's own key, new at each call) dies
    with ``left`` tasks not accepted, its last deletes not sent, everything in the store left as a killed
    driver leaves it. The resumed call writes its records again (a plan output is never skipped for its
    readers being done) and never needs a freed tile: the same bytes as an uninterrupted run."""
    from numpywren.storage.local import LocalStore

    rng = np.random.default_rng(9)
    a, b = rng.standard_normal((128, 128)), rng.standard_normal((128, 128))
    A, B = BigMatrix.from_numpy(a, 32, local_store, "A"), BigMatrix.from_numpy(b, 32, local_store, "B")
    with InlineExecutor(1, local_store) as ex:
        want = numpywren.solve(A, B, assume_a="gen", out="X0", executor=ex, progress=False).to_numpy()
        tasks = len(numpywren.solve(A, B, assume_a="gen", out="X", executor=ex, compute=False).dag)
        accepted, real = [0], ScratchTiles.accepted

        def dies(self, tids):
            tids = list(tids)
            accepted[0] += len(tids)
            if tids and accepted[0] == tasks - left:   # the task is accepted; its deletes are never sent
                raise _Crash()
            return real(self, tids)

        with monkeypatch.context() as m:   # a killed driver deletes nothing
            m.setattr(ScratchTiles, "accepted", dies)
            m.setattr(BigMatrix, "delete", lambda self: None)
            m.setattr(LocalStore, "delete_prefix", lambda self, prefix: None)
            with pytest.raises(_Crash):
                numpywren.solve(A, B, assume_a="gen", out="X", executor=ex, progress=False)
        x = numpywren.solve(A, B, assume_a="gen", out="X", executor=ex, resume=True, retries=0, progress=False)
    assert x.report.skipped > 0
    np.testing.assert_array_equal(x.to_numpy(), want)
    assert rel_err(a @ want, b) < 1e-10


def _ancestors(dag: DAG, tid: str) -> set[str]:
    seen, stack = set(), list(dag.tasks[tid].deps)
    while stack:
        t = stack.pop()
        if t not in seen:
            seen.add(t)
            stack.extend(dag.tasks[t].deps)
    return seen


# -- a late attempt of an accepted reader fails to read a freed tile: the job does not fail ------------
def test_a_late_attempt_reading_a_freed_tile_fails_and_the_job_does_not(local_store, monkeypatch):
    """W writes scratch S; R reads it, X reads R's output. R's first attempt is held before it reads; its
    backup wins, S is freed; then the held attempt reads: the tile is gone (KeyNotFoundError), its result
    is ignored, and the job ends exact. X waits for that, so it happens mid-run, whatever the timing."""
    from numpywren.worker import ops

    a = np.random.default_rng(4).standard_normal((32, 32)) / 8
    A = BigMatrix.from_numpy(a, 32, local_store, "A")
    S = BigMatrix.create((32, 32), 32, "float64", local_store, protocol.scratch_key("late", "s"))
    C = BigMatrix.create((32, 32), 32, "float64", local_store, "C")
    D = BigMatrix.create((32, 32), 32, "float64", local_store, "D")
    dag = DAG([Task("W", "gemm", (S, 0, 0), (((A, 0, 0), (A, 0, 0)),)),
               Task("R", "gemm", (C, 0, 0), (((S, 0, 0), (A, 0, 0)),), deps=("W",)),
               Task("X", "gemm", (D, 0, 0), (((C, 0, 0), (A, 0, 0)),), deps=("R",))])
    release_r, release_x, late_errors = threading.Event(), threading.Event(), []
    real = ops.OPS["gemm"]

    def gated(task):
        if task.id == "R" and task.attempt == 1:
            release_r.wait(120)
            try:
                return real(task)
            except Exception as exc:
                late_errors.append(exc)
                raise
        if task.id == "X":
            release_x.wait(120)
        return real(task)

    monkeypatch.setitem(ops.OPS, "gemm", gated)

    def control():
        deadline = time.monotonic() + 120
        for there in (False, True):   # W wrote S, then R's backup won and S was freed
            while local_store.exists(S.tile_key(0, 0)) is there and time.monotonic() < deadline:
                time.sleep(0.02)
        release_r.set()
        while not late_errors and time.monotonic() < deadline:
            time.sleep(0.02)
        release_x.set()

    controller = threading.Thread(target=control, daemon=True)
    controller.start()
    with InlineExecutor(6, local_store) as ex:
        report = scheduler.run(dag, ex, run="late", progress=False, backups=1.5, scratch=ScratchTiles(dag, [S]))
    controller.join()
    assert report.backups >= 1 and report.scratch_freed_bytes == 32 * 32 * 8
    assert late_errors and isinstance(late_errors[0], KeyNotFoundError), late_errors
    assert rel_err(D.get_block(0, 0), a @ a @ a @ a) < 1e-12


# -- the end of a job: attempts still running are stopped; backups that cannot win are not started -------
def test_a_beaten_backup_is_stopped_when_the_job_ends_and_writes_nothing_after(local_store):
    """The first attempt of one task sleeps 600 s; its backup wins. When the job returns, the process of the
    slow attempt is dead (stopped, not left to write its lease and result later) and the run left no key."""
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((64, 64)), rng.standard_normal((64, 64))
    A, B = BigMatrix.from_numpy(a, 32, local_store, "A"), BigMatrix.from_numpy(b, 32, local_store, "B")
    with LocalExecutor(workers=2, store=local_store, faults="hang:task=*/C1_1:attempt=1:seconds=600") as ex:
        pids = set(ex.worker_pids())
        C = numpywren.matmul(A, B, out="C", executor=ex, backups=1.5, silence_seconds=2.0, progress=False)
        dead = [pid for pid in pids if not _alive(pid)]
        left = _jobs_keys(local_store)
    assert C.report.backups_won >= 1 and rel_err(C.to_numpy(), a @ b) < 1e-12
    assert dead, "the slow attempt's process still runs after the job returned"
    assert not left, left


def test_an_attempt_that_computes_on_this_machine_gets_no_backup(local_store):
    """One task computes 6 s (a busy loop; the plan predicts milliseconds): late by the model, but its process
    uses its core, so a backup on the same cores could not finish first: none is started (and a sleeping
    attempt still gets one: test_at_scale)."""
    rng = np.random.default_rng(6)
    a, b = rng.standard_normal((64, 64)), rng.standard_normal((64, 64))
    A, B = BigMatrix.from_numpy(a, 32, local_store, "A"), BigMatrix.from_numpy(b, 32, local_store, "B")
    with LocalExecutor(workers=2, store=local_store, faults="spin:task=*/C1_1:attempt=1:seconds=6") as ex:
        C = numpywren.matmul(A, B, out="C", executor=ex, backups=1.5, silence_seconds=2.0, progress=False)
    r = C.report
    assert r.backups == 0 and r.backups_withheld >= 1
    assert rel_err(C.to_numpy(), a @ b) < 1e-12


def test_a_long_task_late_only_by_the_model_gets_no_backup(local_store):
    """Simulated: a task predicted 100 s (the model's only word on it: none of its kind finished) runs 300 s
    while workers idle; its backup would need as long again: none is started. A short one is backed up."""
    from numpywren.backups import LONG_SECONDS
    from numpywren.executors.simulated import SimulatedExecutor

    class Model:
        def __init__(self, predicted):
            self.predicted = predicted

        def task_seconds(self, spec, now, running):
            return (0.0, 3 * self.predicted if spec["attempt"] == 1 else self.predicted)

        def predicted_seconds(self, spec):
            return self.predicted

    M = BigMatrix.create((32, 32), 32, "float64", local_store, "M")
    dag = DAG([Task("t/M0_0", "zeros", (M, 0, 0), ())])
    with SimulatedExecutor(4, local_store, duration=Model(100.0)) as ex:
        long = scheduler.run(dag, ex, run="long", progress=False, backups=1.5)
    assert 100.0 >= LONG_SECONDS and long.backups == 0 and long.backups_withheld == 1
    with SimulatedExecutor(4, local_store, duration=Model(2.0)) as ex:
        short = scheduler.run(dag, ex, run="short", progress=False, backups=1.5)
    assert short.backups >= 1 and short.backups_won >= 1


def test_a_hung_attempt_of_a_long_task_still_gets_a_backup(local_store, monkeypatch):
    """A task the model calls long (``LONG_SECONDS``; none of its kind has finished, as the one band step of an
    SVD) whose first attempt hangs asleep (no CPU: its process is not computing, lease renewed): without a
    backup the job would wait for the hang to end (forever on a stuck BLAS call, local workers have no
    task timeout). A stalled attempt is backed up whatever the model says."""
    from numpywren import backups

    monkeypatch.setattr(backups, "LONG_SECONDS", 0.0)   # every task is "long"
    M = BigMatrix.create((32, 32), 32, "float64", local_store, "M")
    dag = DAG([Task("t/M0_0", "zeros", (M, 0, 0), ())])
    with LocalExecutor(workers=2, store=local_store, faults="hang:task=t/M0_0:attempt=1:seconds=60") as ex:
        report = scheduler.run(dag, ex, run="hung", progress=False, backups=1.5, silence_seconds=2.0)
    assert report.backups >= 1 and report.backups_won == 1, report
    np.testing.assert_array_equal(M.to_numpy(), np.zeros((32, 32)))


def test_a_late_write_after_the_job_never_becomes_a_result(local_store):
    """What Lambda cannot prevent (an invocation cannot be stopped): an attempt of a finished run writes after
    the job returned. Replayed here by hand: its lease and result land under the ended run's and session's
    keys, which nothing reads; its output tile is the same bytes, and under a newer run of the same output a
    stale tile that reading refuses, never a value. ``store gc`` removes the late keys."""
    from numpywren import gc
    from numpywren.tile import StaleTileError
    from numpywren.worker.handler import handle

    rng = np.random.default_rng(7)
    a, b, b2 = (rng.standard_normal((64, 64)) for _ in range(3))
    A, B = BigMatrix.from_numpy(a, 32, local_store, "A"), BigMatrix.from_numpy(b, 32, local_store, "B")
    B2 = BigMatrix.from_numpy(b2, 32, local_store, "B2")
    with InlineExecutor(2, local_store) as ex:
        plan = numpywren.matmul(A, B, out="C", executor=ex, compute=False)
        report = numpywren.run(plan, ex, progress=False)
        c = plan.result.to_numpy()
        task = next(iter(plan.dag))
        late = protocol.tile_event(local_store.url, f"{ex.session}/late", "00000", task.spec(report.run, 1, 900.0))
        handle(late)   # a first attempt answering late: it recomputes and writes its tile, lease and result
        np.testing.assert_array_equal(BigMatrix.open(local_store, "C").to_numpy(), c)  # same bytes
        assert any(k.startswith(f"jobs/{report.run}/") for k in local_store.list("jobs/"))
        numpywren.matmul(A, B2, out="C", executor=ex, progress=False)   # a newer run of the same output
        handle(late)   # ...and the old run's attempt again, after it
        with pytest.raises(StaleTileError, match=report.run):
            BigMatrix.open(local_store, "C").to_numpy()
    removed = gc.collect(local_store, older_than=3600, now=time.time() + 7200).removed
    assert report.run in removed
    assert not [k for k in local_store.list("jobs/") if k.startswith(f"jobs/{report.run}/")]


def _alive(pid) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False
