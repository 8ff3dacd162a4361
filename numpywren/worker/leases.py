"""Task leases: how a worker says "I am running this task" and the driver notices one that was lost.

Before running attempt ``n`` of a task, the worker creates
``jobs/<run>/leases/<task>@<n>`` (numpywren.protocol) with an atomic put-if-absent; the object is a
small JSON record (worker id, attempt, start, expiry). Rules, kept simple:

* A retry is a new attempt with its own lease key, so it never waits for a dead one.
* The lease of its attempt already exists: the event was delivered twice (Lambda
  may run an event more than once).
* A retry or a duplicate whose output tile already exists returns at once
  (counted as *skipped*, not recomputed). A first attempt owning its lease does
  not look: in a fresh job its tile cannot exist yet, and a resumed driver
  submits only tasks whose tiles are missing.
* Otherwise a duplicate simply computes too (counted as a *duplicate*): tiles
  are written atomically under their final key and every run writes the same
  bytes, so the late write is harmless. Waiting for the owner would only trade
  one task's compute for worker time spent idle.

The driver (numpywren.liveness) lists the leases of the attempts it is waiting
for. An attempt whose lease it first saw more than ``lease_seconds`` ago, and
which still has no result, is declared *lost* (the worker was killed without a
word, as Lambda does at its timeout) and re-issued as the next attempt. Expiry is measured on the
driver's clock from when it first saw the lease, so clock skew between workers
and driver cannot expire a lease early; the ``expires`` field in the record is
for people reading the store. ``lease_seconds`` must exceed the longest task:
by default the executor's ``task_timeout`` plus a margin, else 15 minutes
(Lambda's limit).

While the attempt runs, its worker *renews* the lease (rewrites the record) every
``spec["beat"]`` seconds, so a frozen or vanished worker shows as a lease that
stopped changing; numpywren.liveness has the driver's rules. Each renewal also
carries the attempt's progress (the share of its input read, and after how many
seconds: numpywren.worker.progress), every ``spec["report"]`` seconds when that is
shorter (protocol.renew_seconds), so the driver can project a straggler's end
(numpywren.backups).
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time

from numpywren.protocol import lease_key, lease_record
from numpywren.storage import Store
from numpywren.worker.progress import Progress

log = logging.getLogger(__name__)

DEFAULT_LEASE_SECONDS = 900.0   # Lambda's maximum function timeout
TIMEOUT_MARGIN = 10.0           # start-up and result write on top of the executor's task timeout


def default_lease_seconds(executor) -> float:
    """How long a task may run before the driver calls it lost (see the module docstring)."""
    timeout = executor.task_timeout
    return float(timeout) + TIMEOUT_MARGIN if timeout else DEFAULT_LEASE_SECONDS


def _record(task_id: str, attempt: int, seconds: float, start: float, beats: int = 0,
            progress: Progress | None = None) -> bytes:
    fraction = progress.fraction() if progress is not None else None
    return lease_record(task_id, attempt, f"{socket.gethostname()}:{os.getpid()}", start, seconds, beats,
                        fraction, progress.seconds() if fraction is not None else None)


def claim(store: Store, job: str, task_id: str, attempt: int, seconds: float) -> bool:
    """Create this attempt's lease; False means another run of the same attempt holds it."""
    return store.put_if_absent(lease_key(job, task_id, attempt), _record(task_id, attempt, seconds, time.time()))


@contextlib.contextmanager
def renewing(store: Store, job: str, task_id: str, attempt: int, seconds: float, every: float | None,
             progress: Progress | None = None):
    """Rewrite the attempt's lease every ``every`` seconds while the block runs (its heartbeat), with the
    attempt's ``progress`` (numpywren.worker.progress) when given.

    A thread does it, so a kernel holding the CPU does not silence it, and a
    frozen process (SIGSTOP) or a dead one does: that is the point.
    """
    if not every or every <= 0:
        yield
        return
    stop, start, key = threading.Event(), time.time(), lease_key(job, task_id, attempt)

    def beat():
        beats = 0
        while not stop.wait(every):
            beats += 1
            try:
                store.put(key, _record(task_id, attempt, seconds, start, beats, progress))
            except Exception:  # noqa: BLE001 - a missed beat only risks a harmless duplicate attempt
                log.warning("could not renew lease %s", key, exc_info=True)

    thread = threading.Thread(target=beat, name=f"numpywren-lease-{task_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
