"""Runs a DAG of tile tasks on an executor: ready set, submission, completions, retries, progress.

The driver holds no tile data. It submits every task whose dependencies are
done, learns of completions through the store (futures), resubmits a failed
task up to ``retries`` times with exponential backoff (tile tasks are
idempotent: the output tile is written atomically under its final key, bound
to its run and generation),
re-issues an attempt that was lost (never started, stopped renewing its lease,
or held it too long: numpywren.liveness), gives an attempt that runs far
longer than its kind usually takes a backup attempt (numpywren.backups), and
aggregates the workers' stats into a :class:`Report`.

An attempt given up on (lost, or beaten by another attempt of its task) is
not cancelled while the run goes on: it may be held by a frozen worker that
would not answer, and if it runs after all it writes the same bytes under the
same key, or finds the tile there and skips it. When the run ends, a backend
that can stop calls (``Executor.stops_calls``: local processes) stops those
still out, so nothing of the run is written after it returns. Every accepted
task is reported to the run's scratch (numpywren.scratch), which frees each
scratch tile after its last reader.
"""
from __future__ import annotations

import gc
import heapq
import logging
import queue
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from tqdm.auto import tqdm

from numpywren import liveness, pricing, protocol
from numpywren.backups import BACKUP_FACTOR, MAX_COPIES, BackupPolicy
from numpywren.worker import leases
from numpywren.dag import DAG, Task
from numpywren.executors.base import Executor
from numpywren.futures import ALL_COMPLETED, ANY_COMPLETED, Future, wait
from numpywren.matrix import IO_THREADS
from numpywren.scratch import ScratchTiles, tile_readers
from numpywren.tile import CorruptTileError

logger = logging.getLogger(__name__)

#: Failures that a retry cannot fix: the job stops at the first one. A worker out of memory fails again
#: on a worker of the same size (numpywren.memory).
PERMANENT_ERRORS = (CorruptTileError, np.linalg.LinAlgError, MemoryError)
#: After a failure, how long to wait at most for attempts already started.
DRAIN_SECONDS = 60.0
#: Per-task records a Report keeps for its timeline (a small tuple each); later tasks are only counted.
TIMELINE_MAX_TASKS = 200_000
#: Attempts in flight per worker: enough to keep every worker busy between two driver turns, few enough
#: that the critical-path order decides what runs next (an executor's queue would otherwise).
WINDOW_PER_WORKER = 2


class JobFailedError(RuntimeError):
    """A task kept failing after its retries; the job stopped.

    Its ``__cause__`` is the task's own exception, carrying the remote traceback
    as a note; ``task_id`` and ``attempts`` say which task and how often it ran.
    """

    def __init__(self, message: str, task_id: str | None = None, attempts: int = 0):
        super().__init__(message)
        self.task_id, self.attempts = task_id, attempts


class LostTaskError(TimeoutError):
    """An attempt was lost: never started, went silent, or held its lease past ``lease_seconds``
    without a result (see numpywren.liveness)."""


class TaskRecord(NamedTuple):
    """One executed task, for :meth:`Report.timeline`: wall times (POSIX seconds) and where they went."""

    worker: str
    start: float
    end: float
    read_seconds: float
    compute_seconds: float
    write_seconds: float
    flops: float


@dataclass
class Report:
    """What a run did and how fast: the numbers a benchmark or a curious user wants.

    ``run`` is the run's id (one execution of a plan; ``job`` is its old, deprecated name).
    """

    run: str
    workers: int
    tasks: int = 0
    executed: int = 0
    skipped: int = 0          # outputs already present (resume), not recomputed
    retried: int = 0          # attempts re-issued after a failure or a lost lease
    lost: int = 0             # attempts whose lease expired without a result
    duplicates: int = 0       # runs that found their attempt's lease taken (event delivered twice)
    backups: int = 0          # backup attempts launched for slow attempts (numpywren.backups)
    backups_won: int = 0      # tasks a backup attempt finished first
    backups_projected: int = 0  # backups launched on a progress projection, before the attempt was overdue
    backups_withheld: int = 0   # late tasks given no backup: it could not have won (numpywren.backups)
    wall_seconds: float = 0.0
    flops: float = 0.0
    bytes_read: int = 0
    bytes_written: int = 0
    read_seconds: float = 0.0      # store reads + checksums (partly hidden by prefetch)
    io_wait_seconds: float = 0.0   # the part of reads the kernels waited for
    compute_seconds: float = 0.0
    write_seconds: float = 0.0
    throttled: int = 0        # store requests answered "slow down" (S3 SlowDown/503) and retried
    failures: list = field(default_factory=list)
    blas: list = field(default_factory=list)  # the BLAS the tile kernels used (blocks.blas.describe()), per worker kind
    tiles_read: int = 0            # store GETs of tiles (for cost())
    task_seconds: float = 0.0      # sum of the tasks' wall times on the workers (for cost())
    records: list = field(default_factory=list, repr=False)  # TaskRecord per executed task, for timeline()
    values: dict = field(default_factory=dict, repr=False)  # task id -> the accepted attempt's "value" (protocol.VALUE_PARAM)
    scratch_peak_bytes: int = 0    # most scratch held at once (accepted tiles not yet freed; numpywren.scratch)
    scratch_freed_bytes: int = 0   # scratch freed during the run, after its last reader

    @property
    def job(self) -> str:
        """Deprecated: the run id, now ``run``."""
        warnings.warn("Report.job is deprecated: use Report.run (the run id)", DeprecationWarning, stacklevel=2)
        return self.run

    @property
    def gflops(self) -> float:
        return self.flops / self.wall_seconds / 1e9 if self.wall_seconds else 0.0

    @property
    def kernel_gflops_per_worker(self) -> float:
        """Throughput of the tile kernels themselves, per worker (excludes I/O and scheduling)."""
        return self.flops / self.compute_seconds / 1e9 if self.compute_seconds else 0.0

    @property
    def io_fraction(self) -> float:
        """Share of task time spent waiting on the store (reads not hidden, plus writes)."""
        io = self.io_wait_seconds + self.write_seconds
        total = io + self.compute_seconds
        return io / total if total else 0.0

    def add(self, stats: dict, flops: float = 0.0) -> None:
        """Count one finished task: its workers' stats, and the flops the driver planned for it."""
        if stats.get("skipped"):
            self.skipped += 1
            self.throttled += stats.get("throttled", 0)
            return
        self.executed += 1
        self.duplicates += bool(stats.get("duplicate"))
        self.flops += flops
        self.blas += [stats["blas"]] if stats.get("blas") and stats["blas"] not in self.blas else []
        for name in ("bytes_read", "bytes_written", "read_seconds", "io_wait_seconds",
                     "compute_seconds", "write_seconds", "tiles_read", "throttled"):
            setattr(self, name, getattr(self, name) + stats.get(name, 0))
        if "start" in stats:
            self.task_seconds += stats["end"] - stats["start"]
            if len(self.records) < TIMELINE_MAX_TASKS:
                self.records.append(TaskRecord(str(stats.get("worker", "?")), stats["start"], stats["end"],
                                               stats.get("read_seconds", 0.0), stats.get("compute_seconds", 0.0),
                                               stats.get("write_seconds", 0.0), flops))

    def timeline(self) -> list[TaskRecord]:
        """The executed tasks (at most TIMELINE_MAX_TASKS), in start order; plot with numpywren.plot_timeline."""
        return sorted(self.records, key=lambda r: r.start)

    @property
    def invocations(self) -> int:
        """Attempts that ran on a worker: executed, skipped (found done) and failed ones."""
        return self.executed + self.skipped + len(self.failures)

    def cost(self, memory_mb: int = 3008, arch: str = "x86_64") -> pricing.Cost:
        """What this job would cost on AWS Lambda with S3 (numpywren.pricing list prices): the tasks' wall time
        at ``memory_mb``, one invocation per attempt, a GET per tile read and per result, and a PUT per
        tile written, per lease and per result. For a local run, an estimate of the same job on Lambda
        (whose workers may be slower or faster than this machine's)."""
        n = self.invocations
        return pricing.estimate(self.task_seconds, n, puts=self.executed + 2 * n, gets=self.tiles_read + n,
                                memory_mb=memory_mb, arch=arch)

    def compare(self, prediction):
        """Predicted (numpywren.simulate.predict) against this run, phase by phase (numpywren.compare)."""
        from numpywren.compare import compare

        return compare(self, prediction)

    def __str__(self) -> str:
        mb = 1e6
        return (f"run {self.run}: {self.tasks} tasks ({self.executed} run, {self.skipped} already done, "
                f"{self.retried} retried, {self.lost} lost, {self.backups} backups of which {self.backups_won} "
                f"won) on {self.workers} workers in {self.wall_seconds:.2f} s\n"
                f"  {self.gflops:.2f} GFLOPS overall, {self.kernel_gflops_per_worker:.2f} GFLOPS per worker "
                f"in kernels\n"
                f"  store: read {self.bytes_read / mb:.1f} MB ({self.read_seconds:.2f} s, "
                f"{self.io_wait_seconds:.2f} s not hidden), wrote {self.bytes_written / mb:.1f} MB "
                f"({self.write_seconds:.2f} s); compute {self.compute_seconds:.2f} s; "
                f"I/O share {self.io_fraction:.0%}"
                + (f"\n  on Lambda this would cost about {self.cost()}" if self.task_seconds else ""))


def run(dag: DAG, executor: Executor, *, run: str, retries: int = 2, backoff: float = 0.25,
        max_backoff: float = 30.0, lease_seconds: float | None = None, progress: bool | None = None,
        skip_existing: bool = False, desc: str = "tasks", window: int | None = None,
        backups: float | None = BACKUP_FACTOR, silence_seconds: float = liveness.SILENCE_SECONDS,
        scratch: ScratchTiles | None = None) -> Report:
    """Execute ``dag`` on ``executor`` and return its report; raise JobFailedError on a lasting failure.

    Ready tasks are submitted longest remaining path first (the DAG's critical
    path, weighted by flops), at most ``window`` in flight (default
    ``WINDOW_PER_WORKER`` per worker), so the order means something. A failed
    (or lost) attempt is re-issued after ``backoff * 2**(attempt - 1)`` seconds
    (at most ``max_backoff``), up to ``retries`` times; a permanent error (a
    corrupt or stale tile, a matrix that is not positive definite) fails the
    job at once. ``lease_seconds`` (default: from the executor's task timeout,
    see numpywren.worker.leases) is how long an attempt may hold its lease without a
    result before it is declared lost and re-issued; ``silence_seconds`` how
    long it may show no sign of life (not started while a worker was free, or
    its lease not renewed) before the same happens (numpywren.liveness).
    ``backups`` (a factor, 0 or None for none) gives an attempt running longer
    than that many times its kind's median a backup attempt; the first to
    finish wins (numpywren.backups). ``skip_existing`` treats a
    task whose output tile already exists, bound to this run and its matrix's
    generation (header and length checked), as done (resume after a driver
    crash), and with it every task whose dependents are all done. ``run`` is
    the run id (numpywren.jobs): leases, tile bindings and the report carry it.
    ``progress=None`` shows a bar only on a terminal. ``scratch`` (numpywren.scratch, from numpywren.jobs)
    is told of every accepted task and frees the scratch tiles no task needs any more.
    """
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries}")
    if backoff < 0 or max_backoff < 0:
        raise ValueError(f"backoff and max_backoff must be >= 0, got {backoff} and {max_backoff}")
    if window is not None and window < 1:
        raise ValueError(f"window must be at least 1, got {window}")
    policy = BackupPolicy(backups, executor) if backups else None
    state = _Run(dag, executor, run, retries=retries, backoff=backoff, max_backoff=max_backoff,
                 lease_seconds=lease_seconds, progress=progress, skip_existing=skip_existing, desc=desc,
                 window=window, backups=policy, silence_seconds=silence_seconds, scratch=scratch)
    # The DAG and the run's state are long-lived: leave them out of the cyclic GC's full collections,
    # which would otherwise traverse them over and over (measured: 1.5x the per-task cost at 3,000
    # tasks in flight, 1.0x frozen; benchmarks/scheduler.py). Nothing becomes garbage by freezing.
    gc.freeze()
    try:
        return state.execute()
    finally:
        gc.unfreeze()


def critical_path(dag: DAG, per_task: float = 1.0) -> dict[str, float]:
    """Each task's longest path to the end of the DAG, in flops (each task adds ``per_task`` more).

    Submitting the task with the longest remaining path first keeps the
    critical path moving (what list scheduling by "bottom level" does).
    """
    level: dict[str, float] = {}
    dependents = dag.dependents()
    for task in reversed(list(dag)):  # tasks are stored in dependency order
        below = max((level[d] for d in dependents[task.id]), default=0.0)
        level[task.id] = below + task.flops + per_task
    return level


class _Run:
    """The state of one scheduler run; every step costs O(1) (or O(log n)) per task, and each
    liveness check O(in flight), never more often than ``CallWatch.check_every``."""

    def __init__(self, dag: DAG, executor: Executor, run: str, *, retries, backoff, max_backoff, lease_seconds,
                 progress, skip_existing, desc, window, backups, silence_seconds, scratch=None):
        self.dag, self.executor, self.run = dag, executor, run
        self.retries, self.backoff, self.max_backoff = retries, backoff, max_backoff
        self.window = window or max(1, WINDOW_PER_WORKER * executor.workers)
        self.report = Report(run=run, workers=executor.workers, tasks=len(dag))
        self.lease_seconds = (leases.default_lease_seconds(executor) if lease_seconds is None
                              else float(lease_seconds))
        self.watch = liveness.CallWatch(run, self.lease_seconds, float(silence_seconds), executor)
        self.beat = liveness.beat_seconds(float(silence_seconds))
        self.policy = backups
        self.stores = {t.output[0].store.url: t.output[0].store for t in dag}.values()
        self._clear_leases()  # leases of an earlier driver of this run (resume) mean nothing now
        self.done: set[str] = _already_done(dag, run) if skip_existing else set()
        self.report.skipped = len(self.done)
        self.scratch = scratch
        if scratch is not None:
            scratch.accepted(self.done)  # a resume: what the interrupted run freed, or would have
        self.dependents = dag.dependents()
        self.waiting = {t.id: sum(d not in self.done for d in t.deps) for t in dag if t.id not in self.done}
        self.priority = critical_path(dag)
        self.ready: list = []              # heap of (-priority, seq, task id)
        self.delayed: list = []            # heap of (due time, seq, task id): retries waiting out their backoff
        self.attempts: dict[str, int] = {}     # task id -> attempts sent (retries and backups included)
        self.failures: dict[str, int] = {}     # task id -> failed or lost attempts (the retry budget)
        self.running: dict[str, tuple[str, int, Future]] = {}  # result key -> (task id, attempt, future)
        self.live: dict[str, dict[int, str]] = {}  # task id -> {attempt: result key} that may still finish it
        self.outstanding: dict[str, Future] = {}  # attempts given up on (beaten, lost) whose outcome has not come
        self.in_flight = 0                 # attempts in self.live
        self.backup_keys: set[str] = set()  # result keys of backup attempts in flight
        self.withheld: set[str] = set()     # tasks late but not backed up: a backup could not have won
        self.completions: queue.SimpleQueue = queue.SimpleQueue()
        self.push = executor.reports_completions
        self.callset = executor.new_callset()
        self.seq = 0
        self.desc, self.progress = desc, progress
        for tid, deps in self.waiting.items():
            if not deps:
                self._make_ready(tid)

    def execute(self) -> Report:
        clock = self.executor.clock
        start = clock()
        bar = tqdm(total=len(self.dag), initial=len(self.done), desc=self.desc, unit="task",
                   disable=_hide(self.progress), dynamic_ncols=True, leave=False)
        try:
            self._submit_ready()
            while self.live or self.delayed:
                for future in self._next_finished():
                    self._finished(future, bar)
                self._check_attempts()
                now = clock()
                while self.delayed and self.delayed[0][0] <= now:
                    self._make_ready(heapq.heappop(self.delayed)[2])
                self._submit_ready()
                elapsed = clock() - start
                if elapsed > 0:
                    bar.set_postfix_str(f"{self.report.flops / elapsed / 1e9:.1f} GFLOPS", refresh=False)
        except Exception:
            _drain(self.executor, [self.callset], [f for _, _, f in self.running.values()], self.lease_seconds)
            raise
        finally:
            bar.close()
            self.report.wall_seconds = clock() - start
            if self.executor.stops_calls and any(not f.done() for f in self.outstanding.values()):
                try:  # attempts still out (beaten, lost) end here, writing nothing more
                    self.executor.stop([self.callset])
                except Exception:  # noqa: BLE001 - never hide the run's own result or error; gc removes late keys
                    logger.warning("could not stop the attempts of run %s still out", self.run, exc_info=True)
            self.executor.cleanup([self.callset])
            self._clear_leases()
            if self.scratch is not None:
                self.scratch.close()
                self.report.scratch_peak_bytes = self.scratch.peak_bytes
                self.report.scratch_freed_bytes = self.scratch.freed_bytes
        if len(self.done) != len(self.dag):  # only possible with a malformed DAG
            raise JobFailedError(f"job {self.run} stalled: {len(self.dag) - len(self.done)} tasks never became ready")
        return self.report

    # -- steps -------------------------------------------------------------------------------------
    def _make_ready(self, tid: str) -> None:
        self.seq += 1
        heapq.heappush(self.ready, (-self.priority[tid], self.seq, tid))

    def _submit_ready(self) -> None:
        """Submit the highest-priority ready tasks while fewer than ``window`` attempts are in flight."""
        batch = []
        while self.ready and self.in_flight + len(batch) < self.window:
            batch.append(heapq.heappop(self.ready)[2])
        self._submit(batch)

    def _submit(self, batch: list[str], backup: bool = False) -> None:
        """Send the next attempt of each task in ``batch``."""
        if not batch:
            return
        specs = []
        for tid in batch:
            self.attempts[tid] = attempt = self.attempts.get(tid, 0) + 1
            spec = self.dag.tasks[tid].spec(self.run, attempt, self.lease_seconds)
            spec["beat"] = self.beat  # how often the worker renews its lease (numpywren.liveness)
            if self.policy is not None:  # and reports its progress, if more often (numpywren.backups)
                spec["report"] = self.policy.report_seconds(self.dag.tasks[tid], spec, self.beat)
            specs.append(spec)
        futures = self.executor.submit_tasks(specs, on_done=self.completions.put if self.push else None,
                                             callset=self.callset)
        for tid, spec, future in zip(batch, specs, futures):
            key, attempt = future.result_key, spec["attempt"]
            self.running[key] = (tid, attempt, future)
            self.live.setdefault(tid, {})[attempt] = key
            self.in_flight += 1
            self.watch.add(key, tid, attempt, self.dag.tasks[tid].output[0].store)
            if backup:
                self.backup_keys.add(key)

    def _next_finished(self) -> list[Future]:
        """Futures that ended: from the backend's completion reports, else by polling (O(in flight))."""
        timeout = self.watch.check_every
        if self.delayed:
            timeout = max(0.0, min(timeout, self.delayed[0][0] - self.executor.clock()))
        if not self.push:
            pending = [f for _, _, f in self.running.values()]
            if not pending:
                time.sleep(timeout)
                return []
            return wait(pending, ANY_COMPLETED, timeout=timeout)[0]
        first = self.executor.wait_for(self.completions, timeout)
        finished = [] if first is None else [first]
        while True:
            try:
                finished.append(self.completions.get_nowait())
            except queue.Empty:
                return finished

    def _end_attempt(self, key: str) -> tuple[str, int, dict[int, str], bool] | None:
        """Forget attempt ``key``; return (task id, attempt, the task's other live attempts, was it a
        backup), or None if the attempt no longer counts (lost or beaten, answering late)."""
        tid, attempt, future = self.running.pop(key, (None, 0, None))
        if future is not None:
            self.outstanding[key] = future   # until its outcome arrives (_finished)
        self.watch.remove(key)
        is_backup = key in self.backup_keys
        self.backup_keys.discard(key)
        others = self.live.get(tid) if tid is not None else None
        if others is None or others.get(attempt) != key:
            return None
        del others[attempt]
        self.in_flight -= 1
        if not others:
            del self.live[tid]
        return tid, attempt, others, is_backup

    def _finished(self, future: Future, bar) -> None:
        started = self.watch.started_at(future.result_key)
        ended = self._end_attempt(future.result_key)
        self.outstanding.pop(future.result_key, None)
        if ended is None:
            return
        tid, attempt, others, is_backup = ended
        spending = getattr(self.executor, "budget", None)  # numpywren.budget: the run's max_cost tally
        if not future.succeeded():
            if spending is not None:
                spending.settle(future.result_key, None)
            return self._failed(tid, attempt, future.exception(), others)
        stats = future.result()
        task = self.dag.tasks[tid]
        if spending is not None:  # (the executor settles it first when the done-marker carried the result)
            spending.settle(future.result_key, {"stats": future.stats, "value": stats})
        if self.policy is not None and not stats.get("skipped"):
            seconds = self._seconds(started, stats)
            if seconds is not None:
                self.policy.finished(task, future.event["task"], seconds)
        self.report.backups_won += is_backup and not stats.get("skipped")
        for key in list(others.values()):  # the slower attempts: ignored, and harmless (module docstring)
            self._end_attempt(key)
        self.report.add(stats, task.flops)
        if "value" in stats:  # the accepted attempt's output block, returned instead of written (jobs checks it)
            self.report.values[tid] = stats["value"]
        self.done.add(tid)
        if self.scratch is not None:
            self.scratch.accepted((tid,))
        bar.update(1)
        for child in self.dependents[tid]:
            if child in self.done:  # resume: a re-run input of a task already complete
                continue
            self.waiting[child] -= 1
            if not self.waiting[child]:
                self._make_ready(child)

    def _seconds(self, started: float | None, stats: dict) -> float | None:
        """How long a finished attempt ran: the worker's own account, else the driver's since it started."""
        if "start" in stats and "end" in stats:
            return stats["end"] - stats["start"]
        return None if started is None else self.executor.clock() - started

    def _failed(self, tid: str, attempt: int, exc: BaseException, others: dict | None = None) -> None:
        self.report.failures.append((tid, attempt, repr(exc)))
        permanent = isinstance(exc, PERMANENT_ERRORS)
        spending = getattr(self.executor, "budget", None)
        stopped = spending is not None and spending.stopped
        if others and not permanent and not stopped:
            return  # another attempt of the task (a backup, or the one it backs up) carries on
        n = self.failures[tid] = self.failures.get(tid, 0) + 1
        if permanent or n > self.retries or stopped:
            why = "failed with an error retrying cannot fix" if permanent else f"failed {n} times"
            if isinstance(exc, MemoryError):
                why = (f"ran out of memory on its worker (limit {self.executor.worker_memory_mb} MB): "
                       "use smaller tiles or workers with more memory")
            raise JobFailedError(f"task {tid!r} of job {self.run} {why}; last error: {exc!r}",
                                 task_id=tid, attempts=self.attempts[tid]) from exc
        self.report.retried += 1
        delay = min(self.max_backoff, self.backoff * 2 ** (n - 1))
        self.seq += 1
        heapq.heappush(self.delayed, (self.executor.clock() + delay, self.seq, tid))

    def _check_attempts(self) -> None:
        """Re-issue lost attempts and back up slow ones (at most once per ``CallWatch.check_every``)."""
        if not self.live or not self.watch.due():
            return
        for key, why in self.watch.check():
            ended = self._end_attempt(key)
            self.watch.lost(key)
            if ended is None:
                continue
            tid, attempt, others, _ = ended
            self.report.lost += 1
            self._failed(tid, attempt, LostTaskError(why), others)
        if self.policy is not None:
            self._back_up_slow()

    def _back_up_slow(self) -> None:
        """Back up tasks whose every live attempt is late (numpywren.backups: overdue, or projected late
        from its progress report), at most ``MAX_COPIES`` attempts of a task at once, the latest first.
        While workers are idle (nothing ready to send) the bar is the policy's idle factor and every idle
        worker may take a backup."""
        idle = 0 if self.ready else self.executor.workers - self.in_flight
        room = max(self.policy.limit - len(self.backup_keys), idle)
        if room <= 0:
            return
        now = self.executor.clock()
        candidates = {tid: attempts for tid, attempts in self.live.items()
                      if len(attempts) < MAX_COPIES and not protocol.has_side_outputs(self.dag.tasks[tid].params)}
        reports = self.watch.progress(self._reporting(candidates, now))
        slow = []
        for tid, attempts in candidates.items():
            late, overdue = self._lateness(tid, attempts.values(), now, idle > 0, reports)
            if late > 1.0 and self._could_win(tid, attempts.values()):
                slow.append((late, not overdue, tid))
        chosen = heapq.nlargest(room, slow)
        self.report.backups += len(chosen)
        self.report.backups_projected += sum(projected for _, projected, _ in chosen)
        self._submit([tid for _, _, tid in chosen], backup=True)

    def _could_win(self, tid: str, keys) -> bool:
        """Whether a backup of ``tid`` could finish before every live attempt of it (numpywren.backups): not for
        a long task whose only sign of lateness is the model's, nor while an attempt computes at the speed a
        backup would (the backend says: local workers share one machine's cores), unless the backend knows
        every attempt is stalled (a hung attempt of a long task would otherwise never end). Counted once per task."""
        keys = list(keys)
        if all(self.executor.stalled(k) for k in keys):  # hung (asleep): only a backup ends it, long task or not
            return True
        spec = self.running[keys[0]][2].event["task"]
        if self.policy.could_win(self.dag.tasks[tid], spec) and all(self.executor.backup_could_win(k) for k in keys):
            return True
        if tid not in self.withheld:
            self.withheld.add(tid)
            self.report.backups_withheld += 1
        return False

    def _reporting(self, candidates: dict, now: float) -> list[str]:
        """Result keys of the attempts that may have reported progress: started at least one report ago."""
        keys = []
        for attempts in candidates.values():
            for key in attempts.values():
                started = self.watch.started_at(key)
                spec = self.running[key][2].event["task"]
                if started is not None and now - started >= spec.get("report", self.beat):
                    keys.append(key)
        return keys

    def _lateness(self, tid: str, keys, now: float, idle: bool, reports: dict) -> tuple[float, bool]:
        """(lateness of the task's least late live attempt (0: one has not started), whether that attempt
        is overdue by time alone): numpywren.backups.BackupPolicy.lateness."""
        least, overdue = float("inf"), True
        task = self.dag.tasks[tid]
        for key in keys:
            started = self.watch.started_at(key)
            if started is None:
                return 0.0, False
            spec = self.running[key][2].event["task"]
            elapsed = now - started
            late = self.policy.lateness(task, spec, elapsed, idle, reports.get(key))
            if late < least:
                least = late
                overdue = elapsed >= self.policy.deadline(task, spec, idle)
        return least, overdue

    def _clear_leases(self) -> None:
        """Delete the run's leases (a straggler may add one after the job: harmless, and gc removes it)."""
        for store in self.stores:
            store.delete_prefix(protocol.lease_prefix(self.run))


def _drain(executor: Executor, batches: list[str], running: list[Future], lease_seconds: float) -> None:
    """After a failure: cancel queued calls and stop started ones (or, where the backend cannot, let them
    finish), so none writes after we return.

    This is what lets the caller delete a failed job's intermediate matrices
    knowing no straggler of this driver will recreate them.
    """
    if executor.stop(batches):  # the backend ended them (local processes): nothing runs any more
        return
    wait(running, ALL_COMPLETED, timeout=min(lease_seconds, DRAIN_SECONDS))


def _already_done(dag: DAG, run: str) -> set[str]:
    """Tasks whose output tile is in the store and this run's, plus scratch-writing tasks whose dependents,
    or the readers of whose output tile, are all done.

    One listing per output matrix, then a header-and-length read of each tile
    found (a truncated tile, or one of another run, is recomputed, never
    trusted). The second rule keeps a resumed split-k job from recomputing
    partial products whose sum was already written, and a resumed run from
    re-running a task whose scratch tile was freed after its last reader
    (numpywren.scratch): such a task's inputs may have been freed too.
    """
    present: set[str] = set()
    for matrix in dag.outputs():
        present.update(matrix.store.list(f"{matrix.key}/tiles/"))
    found = [t for t in dag if t.output_key in present]

    def valid(task: Task) -> bool:
        matrix, i, j = task.output
        return matrix.written_by(i, j) == run

    with ThreadPoolExecutor(IO_THREADS) as pool:
        done = {t.id for t, ok in zip(found, pool.map(valid, found)) if ok}
    dependents = dag.dependents()
    readers = tile_readers(dag)
    own = protocol.owner_prefix(run)
    for task in reversed(list(dag)):  # tasks are stored in dependency order
        key = task.output[0].key
        if not (protocol.is_scratch_key(key) and key.startswith(own)):  # a missing final tile is always redone,
            continue   # and so is a plan output under another owner's scratch prefix (solve's panel records)
        matrix, i, j = task.output
        # its output tile's readers, unless it writes other tiles too (their readers may not be done, and a
        # failed run deletes its scratch whole): then only its dependents, which read those too
        needed_by = () if protocol.has_side_outputs(task.params) else readers.get(
            (matrix.store.url, matrix.key, matrix.tile_key(i, j)), ())
        if any(all(d in done for d in tids) for tids in (dependents[task.id], needed_by) if tids):
            done.add(task.id)
    return done


def _hide(progress: bool | None):
    return None if progress is None else not progress  # tqdm: None hides the bar off a terminal
