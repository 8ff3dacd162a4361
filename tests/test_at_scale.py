"""At scale without surprises: lost and frozen calls found without a task timeout, backup tasks for stragglers.

Faults are real: a worker process stops itself with SIGSTOP (``freeze`` fault) before or after it claims
its lease, one task sleeps ten times (and more) longer than the others. Results are checked against
numpy; assertions are on outcomes (exact, a backup launched and won, the job ended before the slow
attempt could have), never on tight timings.
"""
import time

import numpy as np
import pytest

import numpywren
from numpywren import BigMatrix, LocalExecutor, scheduler
from numpywren.dag import DAG, Task
from numpywren.executors.simulated import SimulatedExecutor


def rel_err(got, want):
    return np.linalg.norm(got - want) / np.linalg.norm(want)


def _spd(n, seed):
    x = np.random.default_rng(seed).standard_normal((n, n))
    return x @ x.T + n * np.eye(n)


@pytest.mark.parametrize("point, why", [("received", "sent but not started"),
                                        ("start", "stopped renewing its lease")])
def test_a_frozen_worker_does_not_stall_cholesky_without_a_task_timeout(local_store, point, why):
    """SIGSTOP a worker as it receives a tile task (before its lease) or just after it claimed it; no
    task_timeout: the attempt is re-issued once it shows no sign of life, and the result is exact."""
    a = _spd(96, seed=1)
    A = BigMatrix.from_numpy(a, 32, local_store, "A")
    with LocalExecutor(workers=2, store=local_store, faults=f"freeze:task=*/L1_1:attempt=1:at={point}") as ex:
        assert ex.task_timeout is None
        L = numpywren.cholesky(A, out="L", executor=ex, silence_seconds=2.0, backups=None)
        frozen = [f for f in L.report.failures if "L1_1" in f[0]]
    r = L.report
    assert rel_err(np.tril(L.to_numpy()), np.linalg.cholesky(a)) < 1e-12
    assert r.lost >= 1 and why in frozen[0][2]  # (a slow start under load may be re-sent too: harmless)


def test_a_slow_task_gets_a_backup_that_wins_on_real_processes(local_store):
    """One GEMM task sleeps 60 s (> 10x any other): a backup attempt runs elsewhere and wins."""
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((128, 96)), rng.standard_normal((96, 128))
    A, B = BigMatrix.from_numpy(a, 32, local_store, "A"), BigMatrix.from_numpy(b, 32, local_store, "B")
    slow = 60.0
    with LocalExecutor(workers=2, store=local_store,
                       faults=f"delay:seconds=0.1; hang:task=*/C2_1:attempt=1:seconds={slow}") as ex:
        start = time.monotonic()
        C = numpywren.matmul(A, B, out="C", executor=ex, backups=1.5)
        elapsed = time.monotonic() - start
    r = C.report
    assert rel_err(C.to_numpy(), a @ b) < 1e-12
    assert r.backups >= 1 and r.backups_won >= 1
    assert elapsed < slow  # ended before the slow attempt could have
    assert "backups" in str(r)


def test_without_backups_the_slow_task_is_waited_for(local_store):
    """The knob works both ways: backups=None launches none (the slow attempt is short here)."""
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((64, 64)), rng.standard_normal((64, 64))
    A, B = BigMatrix.from_numpy(a, 32, local_store, "A"), BigMatrix.from_numpy(b, 32, local_store, "B")
    with LocalExecutor(workers=2, store=local_store, faults="hang:task=*/C1_1:attempt=1:seconds=3") as ex:
        C = numpywren.matmul(A, B, out="C", executor=ex, backups=None)
    assert C.report.backups == 0 and rel_err(C.to_numpy(), a @ b) < 1e-12


class _OneSlowAttempt:
    """Durations for the simulated executor: every attempt 1 s, the first attempt of ``slow`` ``factor`` s."""

    def __init__(self, slow: str, factor: float):
        self.slow, self.factor, self.seen = slow, factor, set()

    def __call__(self, spec):
        first = spec["id"] == self.slow and spec["attempt"] == 1
        return self.factor if first else 1.0


def _independent(store, n):
    M = BigMatrix.create((32 * n, 32), 32, "float64", store, "M")
    return DAG([Task(f"t/M{i}_0", "zeros", (M, i, 0), ()) for i in range(n)])


@pytest.mark.parametrize("factor", [10.0, 50.0])
def test_backups_on_the_simulated_executor(local_store, factor):
    """40 one-second tasks on 8 simulated workers, one attempt ``factor`` x slower: a backup wins and the
    job ends long before that attempt; with backups off it lasts as long as the slow attempt."""
    dag = _independent(local_store, 40)
    with SimulatedExecutor(8, local_store, duration=_OneSlowAttempt("t/M3_0", factor)) as ex:
        on = scheduler.run(dag, ex, run="on", progress=False)
    with SimulatedExecutor(8, local_store, duration=_OneSlowAttempt("t/M3_0", factor)) as ex:
        off = scheduler.run(dag, ex, run="off", progress=False, backups=None)
    assert on.backups >= 1 and on.backups_won >= 1 and on.executed == 40
    assert off.backups == 0 and off.wall_seconds >= factor
    assert on.wall_seconds < factor


def test_a_kind_with_no_finished_sample_uses_its_predicted_time(local_store):
    """Every task of the job is slow: no sample ever finishes first, the model's prediction triggers backups."""

    class Model:
        def task_seconds(self, spec, now, running):
            return (0.0, 30.0 if spec["attempt"] == 1 else 1.0)

        def predicted_seconds(self, spec):
            return 1.0

    dag = _independent(local_store, 4)
    with SimulatedExecutor(8, local_store, duration=Model()) as ex:
        r = scheduler.run(dag, ex, run="p", progress=False)
    assert r.backups == 4 == r.backups_won and r.wall_seconds < 30


def test_backup_and_silence_options_are_checked(local_store):
    dag = _independent(local_store, 2)
    with SimulatedExecutor(2, local_store) as ex:
        with pytest.raises(ValueError, match="backups must be a factor above 1"):
            scheduler.run(dag, ex, run="x", progress=False, backups=0.5)
        with pytest.raises(ValueError, match="silence_seconds must be positive"):
            scheduler.run(dag, ex, run="y", progress=False, silence_seconds=0)


def test_output_tiles_are_verified_on_the_workers_and_an_overwrite_is_caught(local_store):
    """64 output tiles (> jobs.VERIFY_ON_WORKERS_ABOVE): the workers read the headers, one batch each;
    a tile rewritten afterwards by another run is named, as the driver's own check names it."""
    from numpywren import jobs

    rng = np.random.default_rng(6)
    a, b = rng.standard_normal((128, 64)), rng.standard_normal((64, 128))
    A, B = BigMatrix.from_numpy(a, 16, local_store, "A"), BigMatrix.from_numpy(b, 16, local_store, "B")
    with LocalExecutor(workers=2, store=local_store) as ex:
        C = numpywren.matmul(A, B, out="C", executor=ex, progress=False)
        assert len(C.stored_blocks()) > jobs.VERIFY_ON_WORKERS_ABOVE
        run = C.report.run
        assert jobs._bad_tiles_on_workers(C, run, C.stored_blocks(), ex) == []
        assert rel_err(C.to_numpy(), a @ b) < 1e-12
        C.put_block(3, 4, np.zeros((16, 16)), run="intruder")
        for executor in (ex, None):
            with pytest.raises(numpywren.JobFailedError, match=r"1 tiles .*block \(3, 4\) is written by run "
                                                               r"'intruder'"):
                jobs._verify(C, run, executor)


class _Slow:
    """Simulated durations: every attempt ``usual`` s (the model predicts so), but the attempts of ``slow`` in
    ``numbers`` take ``factor`` times longer."""

    def __init__(self, slow: str, numbers, usual: float, factor: float):
        self.slow, self.numbers, self.usual, self.factor = slow, set(numbers), usual, factor

    def task_seconds(self, spec, now, running):
        late = spec["id"] == self.slow and spec["attempt"] in self.numbers
        return (0.0, self.usual * (self.factor if late else 1.0))

    def predicted_seconds(self, spec):
        return self.usual


def test_a_task_that_writes_side_tiles_gets_no_backup(local_store):
    """A task writing tiles besides its output (the LU panel's multipliers, a band task's vectors) is never
    backed up, even 50x slow: two live attempts on different CPUs could interleave tiles that disagree (other
    pivots, other eigenvector signs). The same slowness on a plain task is backed up."""
    M = BigMatrix.create((32 * 4, 32), 32, "float64", local_store, "M")
    S = BigMatrix.create((32 * 4, 32), 32, "float64", local_store, "S")
    tasks = [Task(f"t/M{i}_0", "zeros", (M, i, 0), (), {"writes": [(S, i, 0)]} if i == 1 else None)
             for i in range(4)]
    with SimulatedExecutor(8, local_store, duration=_Slow("t/M1_0", (1,), 1.0, 50.0)) as ex:
        side = scheduler.run(DAG(tasks), ex, run="side", progress=False, backups=1.5)
    assert side.backups == 0 and side.executed == 4 and side.wall_seconds >= 50
    plain = [Task(f"t/M{i}_0", "zeros", (M, i, 0), ()) for i in range(4)]
    with SimulatedExecutor(8, local_store, duration=_Slow("t/M1_0", (1,), 1.0, 50.0)) as ex:
        r = scheduler.run(DAG(plain), ex, run="plain", progress=False, backups=1.5)
    assert r.backups >= 1 and r.backups_won >= 1


def test_a_backup_that_straggles_too_gets_one_more(local_store):
    """The first attempt and its backup are both 50x slow: a third attempt wins, long before either."""
    dag = _independent(local_store, 4)
    with SimulatedExecutor(8, local_store, duration=_Slow("t/M1_0", (1, 2), 1.0, 50.0)) as ex:
        r = scheduler.run(dag, ex, run="third", progress=False)
    assert r.backups >= 2 and r.backups_won >= 1 and r.wall_seconds < 50


def test_idle_workers_back_up_sooner(local_store):
    """Nothing else to run (8 workers, 4 tasks of 10 s): the slow attempt is backed up at IDLE_FACTOR times its
    usual time, so the job ends before a backup sent at the busy factor (1.5) could have finished."""
    from numpywren.backups import IDLE_FACTOR

    dag = _independent(local_store, 4)
    with SimulatedExecutor(8, local_store, duration=_Slow("t/M2_0", (1,), 10.0, 10.0)) as ex:
        r = scheduler.run(dag, ex, run="idle", progress=False, backups=1.5)
    assert IDLE_FACTOR < 1.5 and r.backups_won == 1
    assert r.wall_seconds < 1.5 * 10.0 + 10.0


def test_a_straggler_projected_late_from_its_progress_is_backed_up_before_it_is_overdue(local_store):
    """Tasks of 10 s, one attempt 5x slower: its progress reports (numpywren.worker.progress) show it at a
    fifth of the usual rate long before it has run its usual time, so its backup starts at its first report
    and the job ends before a backup sent once it was overdue (1.5 x 10 s) could even have begun to end."""
    dag = _independent(local_store, 4)
    with SimulatedExecutor(8, local_store, duration=_Slow("t/M2_0", (1,), 10.0, 5.0)) as ex:
        r = scheduler.run(dag, ex, run="projected", progress=False, backups=1.5)
    assert r.backups_projected >= 1 and r.backups_won >= 1
    assert r.wall_seconds < 1.5 * 10.0  # the overdue rule's backup would start only then


def test_progress_reports_do_not_back_up_attempts_on_time(local_store):
    """Every attempt runs at its usual rate: reports project each on time, so none gets a backup."""
    dag = _independent(local_store, 16)
    with SimulatedExecutor(4, local_store, duration=_Slow("none", (), 10.0, 1.0)) as ex:
        r = scheduler.run(dag, ex, run="steady", progress=False, backups=1.5)
    assert r.backups == 0 and r.executed == 16


def test_a_worker_reports_its_progress_in_its_lease_and_the_driver_reads_it(local_store, monkeypatch):
    """A real attempt whose every tile read is slow: its lease record says how much of its input it has read
    and after how long, and the driver's CallWatch reads that report from the store."""
    import threading
    import types

    from numpywren import liveness, protocol
    from numpywren.worker import ops

    rng = np.random.default_rng(7)
    A = BigMatrix.from_numpy(rng.standard_normal((32, 32 * 8)), 32, local_store, "A")
    B = BigMatrix.from_numpy(rng.standard_normal((32 * 8, 32)), 32, local_store, "B")
    C = BigMatrix.create((32, 32), 32, "float64", local_store, "C")
    task = Task("t/C0_0", "gemm", (C, 0, 0), tuple(((A, 0, k), (B, k, 0)) for k in range(8)))
    monkeypatch.setenv("NUMPYWREN_FAULTS", f"delay:task={task.id}:at=read:seconds=0.3")
    spec = {**task.spec("progress-run", 1, 900.0), "beat": 60.0, "report": 0.2}
    worker = threading.Thread(target=ops.run_spec, args=(spec,))
    worker.start()
    key = protocol.lease_key("progress-run", task.id, 1)
    watch = liveness.CallWatch("progress-run", 900.0, 60.0, types.SimpleNamespace(clock=time.monotonic, workers=1))
    watch.add("result", task.id, 1, local_store)
    report = None
    while worker.is_alive() and (report is None or report[1] == 0):  # no timing margin: it ends either way
        watch.check()
        report = watch.progress(["result"]).get("result")
        time.sleep(0.1)
    worker.join()
    assert report is not None, "no progress report while the attempt ran"
    assert np.allclose(C.get_block(0, 0), A.to_numpy() @ B.to_numpy())
    ran, fraction = report
    assert 0 < fraction <= 1 and ran > 0  # < 1 would need the driver to look within the 4.8 s of reads: a margin
    assert protocol.lease_progress(local_store.get(key)) is not None  # the last renewal carries one too


def test_a_reduction_reports_the_progress_of_its_reads(local_store):
    """A reduce task reads its tiles piece by piece (TileReader.read_rows): those reads count towards the
    attempt's progress, as every other runner's, or a straggling reduction would never be projected late."""
    from numpywren import protocol
    from numpywren.worker import progress
    from numpywren.worker.elementwise_tasks import reduce_tile
    from numpywren.worker.ops import load_matrix

    a = np.random.default_rng(9).standard_normal((64, 96))
    A = BigMatrix.from_numpy(a, 32, local_store, "A")
    R = BigMatrix.create((64, 1), (64, 1), "float64", local_store, "R")
    task = Task("t/r0_0", "reduce", (R, 0, 0), tuple(((A, i, j),) for i in range(2) for j in range(3)),
                {"kind": "sum"})
    spec = task.spec("reduce-progress", 1, 900.0)
    tile_task = protocol.decode_task(spec, load_matrix)
    tracked = progress.Progress(progress.block_bytes((tile_task.inputs, tile_task.params)), task.id, 1)
    with progress.tracking(tracked):
        reduce_tile(tile_task)
    assert np.allclose(R.get_block(0, 0)[:, 0], a.sum(axis=1))
    assert tracked.done == a.nbytes and tracked.fraction() > 0.99


def test_a_slow_reader_gets_a_backup_that_wins_on_real_processes(local_store):
    """One GEMM task reads each of its 128 input tiles 0.1 s late (>= 10x its usual time): its progress shows
    it, a backup runs elsewhere and wins, and the job ends before the slow attempt could have."""
    rng = np.random.default_rng(8)
    a, b = rng.standard_normal((64, 32 * 64)), rng.standard_normal((32 * 64, 64))
    A, B = BigMatrix.from_numpy(a, 32, local_store, "A"), BigMatrix.from_numpy(b, 32, local_store, "B")
    with LocalExecutor(workers=2, store=local_store,
                       faults="delay:task=*/C1_0:attempt=1:at=read:seconds=0.1") as ex:
        C = numpywren.matmul(A, B, out="C", executor=ex, backups=1.5, split_k=1, silence_seconds=2.0)
    r = C.report
    assert rel_err(C.to_numpy(), a @ b) < 1e-12
    # the backup won: the job ended before the slow attempt (>= 12.8 s of reads) did; no wall-clock bound,
    # which a loaded CI machine could break while the outcome holds
    assert r.backups >= 1 and r.backups_won >= 1
