"""How far a running attempt has got: the share of its input bytes read, reported with its lease.

A straggler looks like any other attempt until it has run its usual time, unless it says how far it
is: so a worker counts the bytes its runner has read (every runner reads through
``numpywren.worker.tasks.TileReader``) against the bytes its task's tile references add up to, and
its lease renewal (numpywren.worker.leases) carries that fraction with the seconds the attempt has
run on the worker's own clock. The driver projects the attempt's end from that rate
(numpywren.backups) and backs up an attempt projected late, long before it is overdue.

Reading is most of a tile task's time on a serverless store (GEMM and the factor updates stream
their inputs, compute overlapping the next read), so the fraction moves at the attempt's own
speed; a kernel that reads everything first and then computes for long reports its reads done
early, which only makes its projection optimistic (the overdue rule still applies to it).
"""
from __future__ import annotations

import threading
import time

from numpywren.protocol import SIDE_OUTPUT_PARAMS

_current = threading.local()


def block_bytes(value) -> int:
    """Bytes of every (matrix, i, j) block reference inside a decoded task's inputs or params."""
    if isinstance(value, tuple) and len(value) == 3 and hasattr(value[0], "block_shape") \
            and isinstance(value[1], int):
        matrix, i, j = value
        rows, cols = matrix.block_shape(i, j)
        return rows * cols * matrix.dtype.itemsize
    if isinstance(value, (tuple, list)):
        return sum(block_bytes(v) for v in value)
    if isinstance(value, dict):
        return sum(block_bytes(v) for v in value.values())
    return 0


#: Task params naming tiles the task writes, not reads: no part of the input whose share read is the
#: attempt's progress.
WRITTEN_PARAMS = SIDE_OUTPUT_PARAMS


def input_bytes(inputs, params) -> int:
    """Bytes of the tiles a task reads: its inputs and the references in its params but those it writes."""
    read = {k: v for k, v in (params or {}).items() if k not in WRITTEN_PARAMS}
    return block_bytes((inputs, read))


class Progress:
    """Bytes read of bytes to read by one attempt (thread-safe: a prefetch thread reads too)."""

    def __init__(self, total_bytes: int, task_id: str = "", attempt: int = 0):
        self.total, self.task_id, self.attempt = int(total_bytes), task_id, attempt
        self.done = 0
        self.start = time.time()
        self._lock = threading.Lock()

    def read(self, nbytes: int) -> None:
        with self._lock:
            self.done += int(nbytes)

    def fraction(self) -> float | None:
        """Share of the input read, in [0, 1) while running (None: the task reads nothing)."""
        if self.total <= 0:
            return None
        return min(self.done / self.total, 0.999)

    def seconds(self) -> float:
        """How long the attempt has run, on this worker's clock."""
        return time.time() - self.start


def current() -> Progress | None:
    """The progress of the attempt this thread runs (None outside an attempt)."""
    return getattr(_current, "progress", None)


class tracking:
    """``with tracking(progress):`` makes ``progress`` this thread's current one for the block."""

    def __init__(self, progress: Progress | None):
        self.progress = progress

    def __enter__(self):
        self._before = current()
        _current.progress = self.progress
        return self.progress

    def __exit__(self, *exc):
        _current.progress = self._before
