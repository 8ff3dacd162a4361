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

The driver lists the leases of the attempts it is waiting for. An attempt whose
lease it first saw more than ``lease_seconds`` ago, and which still has no
result, is declared *lost* (the worker was killed without a word, as Lambda does
at its timeout) and re-issued as the next attempt. Expiry is measured on the
driver's clock from when it first saw the lease, so clock skew between workers
and driver cannot expire a lease early; the ``expires`` field in the record is
for people reading the store. ``lease_seconds`` must exceed the longest task:
by default the executor's ``task_timeout`` plus a margin, else 15 minutes
(Lambda's limit).
"""
from __future__ import annotations

import json
import os
import socket
import time

from numpywren.protocol import lease_key, lease_prefix
from numpywren.storage import Store

DEFAULT_LEASE_SECONDS = 900.0   # Lambda's maximum function timeout
TIMEOUT_MARGIN = 10.0           # start-up and result write on top of the executor's task timeout


def default_lease_seconds(executor) -> float:
    """How long a task may run before the driver calls it lost (see the module docstring)."""
    timeout = executor.task_timeout
    return float(timeout) + TIMEOUT_MARGIN if timeout else DEFAULT_LEASE_SECONDS


def claim(store: Store, job: str, task_id: str, attempt: int, seconds: float) -> bool:
    """Create this attempt's lease; False means another run of the same attempt holds it."""
    now = time.time()
    record = {"task": task_id, "attempt": attempt, "worker": f"{socket.gethostname()}:{os.getpid()}",
              "start": now, "expires": now + seconds}
    return store.put_if_absent(lease_key(job, task_id, attempt), json.dumps(record).encode())


class LeaseWatch:
    """Driver side: which running attempts have held their lease too long without a result."""

    def __init__(self, job: str, seconds: float, clock=time.monotonic):
        if seconds <= 0:
            raise ValueError(f"lease_seconds must be positive, got {seconds}")
        self.job, self.seconds, self.clock = job, seconds, clock
        self._stores: dict[str, Store] = {}
        self.check_every = min(5.0, max(0.1, seconds / 4))
        self._first_seen: dict[str, float] = {}
        self._last_check = clock()

    def due(self) -> bool:
        """Is a check due (one per ``check_every``)? Lets the caller skip building its running set."""
        return self.clock() - self._last_check >= self.check_every

    def expired(self, running: dict[str, tuple[int, Store]]) -> list[str]:
        """Ids of the ``running`` tasks (id -> (attempt, store of its lease)) whose lease expired.

        Costs one listing per store and check period, never a read per task.
        """
        now = self.clock()
        if now - self._last_check < self.check_every or not running:
            return []
        self._last_check = now
        for _attempt, store in running.values():
            self._stores.setdefault(store.url, store)
        present: set[str] = set()
        for store in self._stores.values():
            present.update(store.list(lease_prefix(self.job)))
        lost = []
        for task_id, (attempt, _store) in running.items():
            key = lease_key(self.job, task_id, attempt)
            if key in present:
                seen = self._first_seen.setdefault(key, now)
                if now - seen > self.seconds:
                    lost.append(task_id)
        return lost

    def clear(self, stores) -> None:
        """Delete the job's leases in ``stores`` (the job is over; a straggler may add one: harmless)."""
        for store in {s.url: s for s in (*stores, *self._stores.values())}.values():
            store.delete_prefix(lease_prefix(self.job))
