"""Backup tasks: a second attempt for an attempt that runs much longer than its kind usually takes.

One slow worker (a noisy neighbour, a throttled connection) holds the
critical path of a job; MapReduce's and Cubed's answer is to run the slow task
again elsewhere and take whichever finishes first. Here an attempt that has
run more than ``factor`` times the median of the finished attempts of its
kind (tile operation), or of its predicted time while none has finished, and
at least ``MIN_SECONDS``, gets a backup attempt; ``IDLE_FACTOR`` times instead
while workers are idle (nothing else to run: the backup delays no task), and
a task whose backup is overdue too gets one more (``MAX_COPIES``).

An attempt need not wait until it is overdue: its worker reports its progress
with its lease renewals (the share of its input read, after how long:
numpywren.worker.progress), ``REPORTS`` times per usual duration, and an
attempt whose projected time (seconds run / fraction read, the rate LATE
projects with, Zaharia et al., OSDI 2008) exceeds the same deadline, with more
left to run than a fresh attempt would take, is backed up at once: a 5x
straggler shows at its first report, not after its usual time. The first successful
result wins; the other attempt is left alone and its result ignored (it may
sit on a frozen worker that would not answer a cancellation). Running a task
twice is harmless: tiles are written
atomically under their final key and bound to their run and generation
(numpywren.tile), so both attempts write the same bytes. A task that writes
tiles besides its output (``protocol.SIDE_OUTPUT_PARAMS``: the LU panel's
multipliers, a band task's vectors) gets no backup: on workers with other CPUs
two attempts could pick other pivots or eigenvector signs, and their
interleaved tiles would not agree.

A backup is not started when it cannot win (:meth:`BackupPolicy.could_win`, ``Report.backups_withheld``):

* a task predicted to run ``LONG_SECONDS`` or more, none of whose kind has finished yet: only the model says
  it is late, and a backup needs as long again (the one-worker band step of an SVD: a second attempt of
  650 s, and twice its memory, on a machine where the first was on time, just slower than the model);
  unless the backend knows the attempt is stalled (``Executor.stalled``: a local process asleep or hung,
  which without a backup would hold the job forever);
* on workers that share one machine's cores (LocalExecutor), an attempt whose process computes: a backup
  would run no faster and only take CPU from it (``Executor.backup_could_win``). A stalled attempt (asleep,
  hung) still gets one.

An attempt that still runs when its run ends (beaten, or lost) is stopped where the backend can
(``Executor.stop``: local processes are killed), so nothing is written after the job returns. On Lambda an
invocation cannot be stopped: its late lease and result land under the ended run's and session's keys,
which no one reads (a new run has a new id; a resume clears its leases first), and ``numpywren store gc``
removes them; a late output tile is bound to its run and generation, so it is the same bytes or, under a
newer run, a stale tile (an error, never a value: numpywren.tile).
"""
from __future__ import annotations

import statistics
from collections import defaultdict, deque

from numpywren.dag import Task
from numpywren.sim_params import LOCAL_GFLOPS_PER_CORE, rate

#: Default multiple of a kind's median time after which an attempt gets a backup (``backups=`` of every
#: operation and of numpywren.run; 0 or None turns backups off).
BACKUP_FACTOR = 1.5
#: Attempts shorter than this never get a backup: starting one costs about as much as waiting.
MIN_SECONDS = 1.0
#: Finished attempts per kind the median is taken over (the most recent ones).
SAMPLES = 101
#: At most this share of the workers runs backups at once (at least one), unless workers are idle.
MAX_SHARE = 0.1
#: At most this many attempts of one task at once: the first and two backups (a backup straggles too, now
#: and then: once all of a task's attempts are overdue, it gets one more).
MAX_COPIES = 3
#: While workers are idle (no task ready to send), an attempt gets a backup at this multiple of its usual
#: time instead (if lower than the factor): the backup takes no worker a waiting task could use.
IDLE_FACTOR = 1.1
#: A task predicted to run at least this long gets no backup until one of its kind has finished (the model
#: alone does not call it late): a backup would take as long again (module docstring).
LONG_SECONDS = 30.0
#: Progress reports per usual duration of a task (its worker rewrites its lease this often, at most every
#: heartbeat, at least ``MIN_REPORT_SECONDS`` apart): the sooner a straggler reports, the sooner its backup.
REPORTS = 8
MIN_REPORT_SECONDS = 0.5


def compute_seconds(task: Task) -> float:
    """A task's compute time on one core of this machine kind (numpywren.sim_params' calibrated kernel rates):
    its predicted time on a backend that has no model of its own (``Executor.predicted_seconds``)."""
    matrix = task.output[0]
    tile = max(matrix.tile_shape) if getattr(matrix, "tile_shape", None) else None
    return task.flops / (rate(LOCAL_GFLOPS_PER_CORE, task.op, tile) * 1e9)


class BackupPolicy:
    """Decides when an attempt deserves a backup (module docstring); fed the finished attempts' times.

    Tasks of one kind differ in size (a reduction of 2 partials or of 16), so times are compared
    through each task's predicted time: the median of ``seconds / predicted`` over the finished
    attempts of a kind, times this task's prediction, is what it "usually takes". Before any sample,
    that is its prediction; a kind predicted to take no time at all is compared in plain seconds.
    """

    def __init__(self, factor: float, executor):
        if factor <= 1:
            raise ValueError(f"backups must be a factor above 1 (or 0/None for none), got {factor}")
        self.factor = float(factor)
        self.limit = max(1, int(executor.workers * MAX_SHARE))
        self.executor = executor
        self._samples: dict[str, deque] = defaultdict(lambda: deque(maxlen=SAMPLES))
        self._median: dict[str, float] = {}
        self._predicted: dict[str, float] = {}

    def predicted(self, task: Task, spec: dict) -> float:
        """The task's predicted seconds: the backend's model, else its compute time (cached per task)."""
        seconds = self._predicted.get(task.id)
        if seconds is None:
            seconds = self.executor.predicted_seconds(spec)
            seconds = self._predicted[task.id] = compute_seconds(task) if seconds is None else seconds
        return seconds

    def finished(self, task: Task, spec: dict, seconds: float) -> None:
        """Record how long a successful attempt of ``task`` ran."""
        predicted = self.predicted(task, spec)
        self._samples[task.op].append(seconds / predicted if predicted > 0 else seconds)
        self._median.pop(task.op, None)
        self._predicted.pop(task.id, None)

    def usual(self, task: Task, spec: dict) -> float:
        """Seconds an attempt of ``task`` usually takes: its kind's median (per predicted second) times its
        prediction, or its prediction while none of its kind has finished."""
        predicted = self.predicted(task, spec)
        typical = self._median.get(task.op)
        if typical is None and self._samples.get(task.op):
            typical = self._median[task.op] = statistics.median(self._samples[task.op])
        if typical is None:
            return predicted
        return typical * predicted if predicted > 0 else typical

    def deadline(self, task: Task, spec: dict, idle: bool = False) -> float:
        """Seconds an attempt of ``task`` (sent as ``spec``) may run before it gets a backup (``idle``:
        while workers are idle)."""
        return max(MIN_SECONDS, (min(self.factor, IDLE_FACTOR) if idle else self.factor) * self.usual(task, spec))

    def could_win(self, task: Task, spec: dict) -> bool:
        """False for a long task none of whose kind has finished: only the model says it is late (``LONG_SECONDS``)."""
        return bool(self._samples.get(task.op)) or self.predicted(task, spec) < LONG_SECONDS

    def report_seconds(self, task: Task, spec: dict, beat: float) -> float:
        """How often the worker of this attempt should report its progress (``spec["report"]``)."""
        return min(beat, max(MIN_REPORT_SECONDS, self.usual(task, spec) / REPORTS))

    def lateness(self, task: Task, spec: dict, elapsed: float, idle: bool = False,
                 report: tuple[float, float] | None = None) -> float:
        """How late an attempt that has run ``elapsed`` seconds is, as a multiple of its deadline (above 1:
        back it up): overdue, or projected past its deadline by its progress ``report`` (seconds run,
        fraction of input read) with more left to run than a fresh attempt would take."""
        deadline = self.deadline(task, spec, idle)
        late = elapsed / deadline
        if report is not None and report[1] > 0:
            ran, fraction = report
            projected = ran / fraction
            if projected - max(ran, elapsed) > self.usual(task, spec):
                late = max(late, projected / deadline)
        return late
