"""Runs a DAG of tile tasks on an executor: ready set, submission, completions, retries, progress.

The driver holds no tile data. It submits every task whose dependencies are
done, learns of completions through the store (futures), resubmits a failed
task up to ``retries`` times (tile tasks are idempotent: the output tile is
written atomically under its final key), and aggregates the workers' stats
into a :class:`Report`.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

from tqdm.auto import tqdm

from numpywren.dag import DAG, Task
from numpywren.executors.base import Executor
from numpywren.futures import ANY_COMPLETED, Future, wait
from numpywren.tasks import execute


class JobFailedError(RuntimeError):
    """A task kept failing after its retries; the job stopped. Its cause is the task's own exception."""


@dataclass
class Report:
    """What a job did and how fast: the numbers a benchmark or a curious user wants."""

    job: str
    workers: int
    tasks: int = 0
    executed: int = 0
    skipped: int = 0          # outputs already present (resume)
    retried: int = 0
    wall_seconds: float = 0.0
    flops: float = 0.0
    bytes_read: int = 0
    bytes_written: int = 0
    read_seconds: float = 0.0      # store reads + checksums (partly hidden by prefetch)
    io_wait_seconds: float = 0.0   # the part of reads the kernels waited for
    compute_seconds: float = 0.0
    write_seconds: float = 0.0
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
        self.executed += 1
        for name in ("flops", "bytes_read", "bytes_written", "read_seconds", "io_wait_seconds",
                     "compute_seconds", "write_seconds"):
            setattr(self, name, getattr(self, name) + stats.get(name, 0))

    def __str__(self) -> str:
        mb = 1e6
        return (f"job {self.job}: {self.tasks} tasks ({self.executed} run, {self.skipped} already done, "
                f"{self.retried} retried) on {self.workers} workers in {self.wall_seconds:.2f} s\n"
                f"  {self.gflops:.2f} GFLOPS overall, {self.kernel_gflops_per_worker:.2f} GFLOPS per worker "
                f"in kernels\n"
                f"  store: read {self.bytes_read / mb:.1f} MB ({self.read_seconds:.2f} s, "
                f"{self.io_wait_seconds:.2f} s not hidden), wrote {self.bytes_written / mb:.1f} MB "
                f"({self.write_seconds:.2f} s); compute {self.compute_seconds:.2f} s; "
                f"I/O share {self.io_fraction:.0%}")


def run(dag: DAG, executor: Executor, *, job: str | None = None, retries: int = 2,
        progress: bool | None = None, skip_existing: bool = False, desc: str = "tasks") -> Report:
    """Execute ``dag`` on ``executor`` and return its report; raise JobFailedError on a lasting failure.

    ``skip_existing`` treats a task whose output tile already exists as done
    (resume after a driver crash). ``progress=None`` shows a bar only on a terminal.
    """
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries}")
    report = Report(job=job or uuid.uuid4().hex[:12], workers=executor.workers, tasks=len(dag))
    start = time.perf_counter()
    done: set[str] = _existing_outputs(dag) if skip_existing else set()
    report.skipped = len(done)
    waiting = {t.id: {d for d in t.deps if d not in done} for t in dag if t.id not in done}
    dependents = dag.dependents()
    attempts: dict[str, int] = {}
    running: dict[Future, Task] = {}
    batches: list[str] = []

    def submit(tasks: list[Task]) -> None:
        if not tasks:
            return
        futures = executor.map(execute, tasks)
        batches.append(futures[0].job)
        for task, future in zip(tasks, futures):
            attempts[task.id] = attempts.get(task.id, 0) + 1
            running[future] = task

    bar = tqdm(total=len(dag), initial=len(done), desc=desc, unit="task", disable=_hide(progress),
               dynamic_ncols=True, leave=False)
    try:
        submit([dag.tasks[tid] for tid, deps in waiting.items() if not deps])
        while running:
            finished, _ = wait(list(running), ANY_COMPLETED, timeout=5.0)
            ready: list[Task] = []
            for future in finished:
                task = running.pop(future)
                if not future.succeeded:
                    exc = future.exception()
                    report.failures.append((task.id, attempts[task.id], repr(exc)))
                    if attempts[task.id] > retries:
                        raise JobFailedError(f"task {task.id!r} of job {report.job} failed "
                                             f"{attempts[task.id]} times; last error: {exc!r}") from exc
                    report.retried += 1
                    ready.append(task)
                    continue
                report.add(future.result())
                done.add(task.id)
                bar.update(1)
                for child in dependents[task.id]:
                    deps = waiting[child]
                    deps.discard(task.id)
                    if not deps and child not in done:
                        ready.append(dag.tasks[child])
            elapsed = time.perf_counter() - start
            bar.set_postfix_str(f"{report.flops / elapsed / 1e9:.1f} GFLOPS", refresh=False)
            submit(ready)
    finally:
        bar.close()
        report.wall_seconds = time.perf_counter() - start
        executor.cleanup(batches)
    if len(done) != len(dag):  # only possible with a malformed DAG
        raise JobFailedError(f"job {report.job} stalled: {len(dag) - len(done)} tasks never became ready")
    return report


def _existing_outputs(dag: DAG) -> set[str]:
    """Tasks whose output tile is already in the store (one listing per output matrix)."""
    present: set[str] = set()
    for matrix in dag.outputs():
        present.update(matrix.store.list(f"{matrix.key}/tiles/"))
    return {t.id for t in dag if t.output_key in present}


def _hide(progress: bool | None):
    return None if progress is None else not progress  # tqdm: None hides the bar off a terminal
