"""Runs a DAG of tile tasks on an executor: ready set, submission, completions, retries, progress.

The driver holds no tile data. It submits every task whose dependencies are
done, learns of completions through the store (futures), resubmits a failed
task up to ``retries`` times with exponential backoff (tile tasks are
idempotent: the output tile is written atomically under its final key),
re-issues a task whose lease expired without a result (numpywren.leases), and
aggregates the workers' stats into a :class:`Report`.
"""
from __future__ import annotations

import heapq
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from tqdm.auto import tqdm

from numpywren import leases
from numpywren.dag import DAG, Task
from numpywren.executors.base import Executor
from numpywren.futures import ALL_COMPLETED, ANY_COMPLETED, Future, wait
from numpywren.matrix import IO_THREADS
from numpywren.tile import CorruptTileError

#: Failures that a retry cannot fix: the job stops at the first one.
PERMANENT_ERRORS = (CorruptTileError,)
#: After a failure, how long to wait at most for attempts already started.
DRAIN_SECONDS = 60.0


class JobFailedError(RuntimeError):
    """A task kept failing after its retries; the job stopped.

    Its ``__cause__`` is the task's own exception, carrying the remote traceback
    as a note; ``task_id`` and ``attempts`` say which task and how often it ran.
    """

    def __init__(self, message: str, task_id: str | None = None, attempts: int = 0):
        super().__init__(message)
        self.task_id, self.attempts = task_id, attempts


class LostTaskError(TimeoutError):
    """An attempt held its lease past ``lease_seconds`` without a result (see numpywren.leases)."""


@dataclass
class Report:
    """What a job did and how fast: the numbers a benchmark or a curious user wants."""

    job: str
    workers: int
    tasks: int = 0
    executed: int = 0
    skipped: int = 0          # outputs already present (resume), not recomputed
    retried: int = 0          # attempts re-issued after a failure or a lost lease
    lost: int = 0             # attempts whose lease expired without a result
    duplicates: int = 0       # runs that found their attempt's lease taken (event delivered twice)
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

    def add(self, stats: dict) -> None:
        if stats.get("skipped"):
            self.skipped += 1
            self.throttled += stats.get("throttled", 0)
            return
        self.executed += 1
        self.duplicates += bool(stats.get("duplicate"))
        for name in ("flops", "bytes_read", "bytes_written", "read_seconds", "io_wait_seconds",
                     "compute_seconds", "write_seconds", "throttled"):
            setattr(self, name, getattr(self, name) + stats.get(name, 0))

    def __str__(self) -> str:
        mb = 1e6
        return (f"job {self.job}: {self.tasks} tasks ({self.executed} run, {self.skipped} already done, "
                f"{self.retried} retried, {self.lost} lost) on {self.workers} workers in {self.wall_seconds:.2f} s\n"
                f"  {self.gflops:.2f} GFLOPS overall, {self.kernel_gflops_per_worker:.2f} GFLOPS per worker "
                f"in kernels\n"
                f"  store: read {self.bytes_read / mb:.1f} MB ({self.read_seconds:.2f} s, "
                f"{self.io_wait_seconds:.2f} s not hidden), wrote {self.bytes_written / mb:.1f} MB "
                f"({self.write_seconds:.2f} s); compute {self.compute_seconds:.2f} s; "
                f"I/O share {self.io_fraction:.0%}")


def run(dag: DAG, executor: Executor, *, run: str, retries: int = 2, backoff: float = 0.25,
        max_backoff: float = 30.0, lease_seconds: float | None = None, progress: bool | None = None,
        skip_existing: bool = False, desc: str = "tasks") -> Report:
    """Execute ``dag`` on ``executor`` and return its report; raise JobFailedError on a lasting failure.

    A failed (or lost) attempt is re-issued after ``backoff * 2**(attempt - 1)``
    seconds (at most ``max_backoff``), up to ``retries`` times; a corrupt input
    tile fails the job at once (retrying cannot fix it). ``lease_seconds``
    (default: from the executor's task timeout, see numpywren.leases) is how
    long an attempt may hold its lease without a result before it is declared
    lost and re-issued. ``skip_existing`` treats a task whose output tile already
    exists, bound to this run and its matrix's generation (header and length
    checked), as done (resume after a driver crash), and with it every task
    whose dependents are all done. ``run`` is the run id (numpywren.jobs):
    leases, tile bindings and the report carry it. ``progress=None`` shows a
    bar only on a terminal.
    """
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries}")
    if backoff < 0 or max_backoff < 0:
        raise ValueError(f"backoff and max_backoff must be >= 0, got {backoff} and {max_backoff}")
    report = Report(job=run, workers=executor.workers, tasks=len(dag))
    lease_seconds = leases.default_lease_seconds(executor) if lease_seconds is None else float(lease_seconds)
    watch = leases.LeaseWatch(report.job, lease_seconds)
    stores = {t.output[0].store.url: t.output[0].store for t in dag}.values()
    watch.clear(stores)  # leases of an earlier driver of this job (resume) mean nothing to this one
    start = time.perf_counter()
    done: set[str] = _already_done(dag, run) if skip_existing else set()
    report.skipped = len(done)
    waiting = {t.id: {d for d in t.deps if d not in done} for t in dag if t.id not in done}
    dependents = dag.dependents()
    attempts: dict[str, int] = {}
    running: dict[Future, Task] = {}   # every attempt the driver still listens to
    current: dict[str, Future] = {}    # task id -> its latest attempt
    delayed: list = []                 # heap of (due time, seq, task): retries waiting out their backoff
    batches: list[str] = []

    def submit(tasks: list[Task]) -> None:
        if not tasks:
            return
        for task in tasks:
            attempts[task.id] = attempts.get(task.id, 0) + 1
        futures = executor.submit_tasks([task.spec(run, attempts[task.id], lease_seconds) for task in tasks])
        batches.append(futures[0].callset)
        for task, future in zip(tasks, futures):
            running[future] = task
            current[task.id] = future

    def failed(task: Task, exc: BaseException) -> None:
        n = attempts[task.id]
        report.failures.append((task.id, n, repr(exc)))
        if isinstance(exc, PERMANENT_ERRORS) or n > retries:
            why = "failed with an error retrying cannot fix" if n <= retries else f"failed {n} times"
            raise JobFailedError(f"task {task.id!r} of job {report.job} {why}; last error: {exc!r}",
                                 task_id=task.id, attempts=n) from exc
        report.retried += 1
        delay = min(max_backoff, backoff * 2 ** (n - 1))
        heapq.heappush(delayed, (time.monotonic() + delay, len(report.failures), task))

    bar = tqdm(total=len(dag), initial=len(done), desc=desc, unit="task", disable=_hide(progress),
               dynamic_ncols=True, leave=False)
    try:
        submit([dag.tasks[tid] for tid, deps in waiting.items() if not deps])
        while current or delayed:
            timeout = watch.check_every
            if delayed:
                timeout = max(0.0, min(timeout, delayed[0][0] - time.monotonic()))
            if running:
                finished, _ = wait(list(running), ANY_COMPLETED, timeout=timeout)
            else:
                time.sleep(timeout)
                finished = []
            ready: list[Task] = []
            for future in finished:
                task = running.pop(future)
                if current.get(task.id) is not future:
                    continue  # a lost attempt answering late: its retry is already under way
                del current[task.id]
                if not future.succeeded:
                    failed(task, future.exception())
                    continue
                report.add(future.result())
                done.add(task.id)
                bar.update(1)
                for child in dependents[task.id]:
                    if child in done:  # resume: a re-run input of a task already complete
                        continue
                    deps = waiting[child]
                    deps.discard(task.id)
                    if not deps:
                        ready.append(dag.tasks[child])
            lost = watch.expired({tid: (attempts[tid], dag.tasks[tid].output[0].store) for tid in current})
            for tid in lost:
                running.pop(current.pop(tid))
                report.lost += 1
                failed(dag.tasks[tid], LostTaskError(
                    f"attempt {attempts[tid]} of task {tid!r} held its lease for more than "
                    f"{lease_seconds:g} s without a result (worker lost)"))
            while delayed and delayed[0][0] <= time.monotonic():
                ready.append(heapq.heappop(delayed)[2])
            elapsed = time.perf_counter() - start
            bar.set_postfix_str(f"{report.flops / elapsed / 1e9:.1f} GFLOPS", refresh=False)
            submit(ready)
    except Exception:
        _drain(executor, batches, list(running), lease_seconds)
        raise
    finally:
        bar.close()
        report.wall_seconds = time.perf_counter() - start
        executor.cleanup(batches)
        watch.clear(stores)
    if len(done) != len(dag):  # only possible with a malformed DAG
        raise JobFailedError(f"job {report.job} stalled: {len(dag) - len(done)} tasks never became ready")
    return report


def _drain(executor: Executor, batches: list[str], running: list[Future], lease_seconds: float) -> None:
    """After a failure: cancel queued calls and let started ones finish, so none writes after we return.

    This is what lets the caller delete a failed job's intermediate matrices
    knowing no straggler of this driver will recreate them.
    """
    executor.cancel(batches)
    wait(running, ALL_COMPLETED, timeout=min(lease_seconds, DRAIN_SECONDS))


def _already_done(dag: DAG, run: str) -> set[str]:
    """Tasks whose output tile is in the store and this run's, plus tasks whose dependents are all done.

    One listing per output matrix, then a header-and-length read of each tile
    found (a truncated tile, or one of another run, is recomputed, never
    trusted). The second rule keeps a resumed split-k job from recomputing
    partial products whose sum was already written.
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
    for task in reversed(list(dag)):  # tasks are stored in dependency order
        if dependents[task.id] and all(d in done for d in dependents[task.id]):
            done.add(task.id)
    return done


def _hide(progress: bool | None):
    return None if progress is None else not progress  # tqdm: None hides the bar off a terminal
