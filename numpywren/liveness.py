"""Driver side: every attempt in flight is accounted for, with or without a task timeout.

An attempt the driver sent is in one of three states, read from the store's
lease objects (numpywren.worker.leases) with one listing per store and check period:

* **not started**: no lease yet. Waiting in a queue is normal while every
  worker is busy, so this clock runs only while fewer attempts hold a lease
  than there are workers (less those declared lost whose result never came:
  a frozen worker may still hold its call). Past ``silence_seconds`` of it the call is taken as
  lost on its way (an event dropped by the platform, a worker frozen before it
  claimed the lease) and re-sent.
* **running**: its lease exists and its worker rewrites it every
  ``beat_seconds(silence_seconds)`` (the heartbeat). A lease that stops
  changing for ``silence_seconds`` means a frozen or vanished worker: the
  attempt is re-issued.
* **over its lease**: running for more than ``lease_seconds`` (the longest a
  task may take, Lambda's 15 minutes by default) without a result, heartbeat
  or not: re-issued too (a hung kernel).

Times are the driver's clock (when it first saw a lease, when it saw the lease
change), never the workers', so clock skew cannot declare an attempt lost. A
re-issued attempt that was merely slow still finishes harmlessly: tiles are
bound to their run and generation and written atomically under final keys.

A backend that knows itself when each call started and never loses one (the
simulated executor: ``Executor.tracks_calls``) is asked instead of the store,
and none of its calls is declared lost.

The lease also carries the attempt's progress (numpywren.worker.progress); the
scheduler asks for it (``CallWatch.progress``) for the attempts it may back up,
and a lease is read (one GET) only when its listing shows it rewritten since
the last read: at most one read per renewal, and none for a short attempt.
"""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from numpywren.protocol import lease_key, lease_prefix, lease_progress
from numpywren.storage import Store

#: Default for how long an attempt may show no sign of life (not started while a worker was free, or its
#: lease not renewed) before it is re-issued. Lambda's cold starts take seconds; a worker's beat is
#: a quarter of this, one PUT per running task each time (3,000 workers: 200 PUT/s).
SILENCE_SECONDS = 60.0
#: Lease records the driver reads at once (progress reports; each a small GET).
READ_THREADS = 16

log = logging.getLogger(__name__)


def beat_seconds(silence_seconds: float) -> float:
    """How often a worker renews its lease: four beats fit in the silence that declares it lost."""
    return silence_seconds / 4


@dataclass
class _Attempt:
    task: str
    number: int
    store: Store
    started: float | None = None     # driver clock when its lease was first seen
    alive: float | None = None       # driver clock when its lease was last seen to change
    etag: str | None = None
    waited: float = 0.0              # not-started seconds counted while a worker was free
    read_etag: str | None = None     # the lease version whose progress was last read
    report: tuple[float, float] | None = None  # its progress: (seconds run, fraction of input read)


class CallWatch:
    """Which attempts in flight are lost: not started, silent, or over their lease (module docstring)."""

    def __init__(self, run: str, lease_seconds: float, silence_seconds: float, executor):
        if lease_seconds <= 0:
            raise ValueError(f"lease_seconds must be positive, got {lease_seconds}")
        if silence_seconds <= 0:
            raise ValueError(f"silence_seconds must be positive, got {silence_seconds}")
        self.run, self.lease_seconds, self.silence_seconds = run, lease_seconds, silence_seconds
        self.executor, self.clock = executor, executor.clock
        # a backend that tracks its calls costs no listing: look often, for timely backups
        most = 1.0 if getattr(executor, "tracks_calls", False) else 5.0
        self.check_every = min(most, max(0.05, min(lease_seconds, silence_seconds) / 4))
        self._attempts: dict[str, _Attempt] = {}   # result key -> attempt
        self._held: set[str] = set()  # attempts declared lost, no result yet: they may still occupy a worker
        self._last_check = self.clock()
        self._listable = True
        self.progress_reads = 0  # lease records read for their progress (GETs)

    def add(self, result_key: str, task_id: str, attempt: int, store: Store) -> None:
        self._attempts[result_key] = _Attempt(task_id, attempt, store)

    def remove(self, result_key: str) -> None:
        """The attempt ended (a result, even a late one) or was declared lost (it may still hold a worker)."""
        if self._attempts.pop(result_key, None) is None:
            self._held.discard(result_key)

    def lost(self, result_key: str) -> None:
        """The caller gave up on this attempt: count it as holding a worker until its result comes."""
        self._attempts.pop(result_key, None)
        self._held.add(result_key)

    def started_at(self, result_key: str) -> float | None:
        """When the attempt was first seen running (driver clock), or None."""
        attempt = self._attempts.get(result_key)
        if attempt is None:
            return None
        if attempt.started is None and getattr(self.executor, "tracks_calls", False):
            attempt.started = self.executor.call_started(result_key)
        return attempt.started

    def progress(self, result_keys) -> dict[str, tuple[float, float]]:
        """The last progress report, (seconds run, fraction of input read), of each attempt that has one.

        From the backend if it tracks its calls; else each lease rewritten since its last read is read
        again (concurrently), as of the last ``check``'s listing."""
        if getattr(self.executor, "tracks_calls", False):
            found = {}
            for key in result_keys:
                report = self.executor.call_progress(key)
                if report is not None:
                    found[key] = report
            return found
        attempts = [(key, a) for key, a in ((k, self._attempts.get(k)) for k in result_keys) if a is not None]
        stale = [a for _, a in attempts if a.etag and a.etag != a.read_etag]
        if stale:
            with ThreadPoolExecutor(min(READ_THREADS, len(stale))) as pool:
                for a, data in zip(stale, pool.map(self._read_lease, stale)):
                    a.read_etag = a.etag
                    a.report = lease_progress(data) if data is not None else a.report
        return {key: a.report for key, a in attempts if a.report is not None}

    def _read_lease(self, a: _Attempt) -> bytes | None:
        self.progress_reads += 1
        try:
            return a.store.get(lease_key(self.run, a.task, a.number))
        except Exception:  # noqa: BLE001 - gone (the attempt ended) or unreadable: no report this time
            log.debug("could not read the lease of attempt %d of %r", a.number, a.task, exc_info=True)
            return None

    def due(self) -> bool:
        return self.clock() - self._last_check >= self.check_every

    def check(self) -> list[tuple[str, str]]:
        """(result key, why) of the attempts to re-issue now; updates start times. One listing per store."""
        now = self.clock()
        elapsed, self._last_check = now - self._last_check, now
        if not self._attempts:
            return []
        if getattr(self.executor, "tracks_calls", False):
            return self._check_tracked(now)
        leases = self._leases()
        holding = sum(lease_key(self.run, a.task, a.number) in leases for a in self._attempts.values())
        free_worker = holding < max(1, self.executor.workers - len(self._held))
        lost = []
        for key, a in self._attempts.items():
            etag = leases.get(lease_key(self.run, a.task, a.number))
            if etag is None:
                if a.started is None and free_worker:
                    a.waited += elapsed
                    if a.waited > self.silence_seconds:
                        lost.append((key, f"attempt {a.number} of task {a.task!r} was sent but not started "
                                          f"within {self.silence_seconds:g} s while a worker was free "
                                          f"(call lost or worker frozen before it began)"))
                continue
            if a.started is None:
                a.started = a.alive = now
            elif etag != a.etag and self._listable:
                a.alive = now
            a.etag = etag
            if now - a.started > self.lease_seconds:
                lost.append((key, f"attempt {a.number} of task {a.task!r} held its lease for more than "
                                  f"{self.lease_seconds:g} s without a result (worker lost)"))
            elif self._listable and now - a.alive > self.silence_seconds:
                lost.append((key, f"attempt {a.number} of task {a.task!r} stopped renewing its lease for more "
                                  f"than {self.silence_seconds:g} s (worker frozen or gone)"))
        return lost

    def _check_tracked(self, now: float) -> list[tuple[str, str]]:
        """The backend loses no call (its model decides what a call does): only note when each started."""
        for key, a in self._attempts.items():
            if a.started is None:
                a.started = self.executor.call_started(key)
        return []

    def _leases(self) -> dict[str, str]:
        """Lease key -> etag (changes when the worker renews it) over the stores of the attempts in flight."""
        stores = {a.store.url: a.store for a in self._attempts.values()}.values()
        found: dict[str, str] = {}
        for store in stores:
            if self._listable:
                try:
                    found.update((info.key, info.etag) for info in store.list_info(lease_prefix(self.run)))
                    continue
                except NotImplementedError:  # a store without etags: no heartbeats, starts and leases only
                    self._listable = False
            found.update((key, "") for key in store.list(lease_prefix(self.run)))
        return found
