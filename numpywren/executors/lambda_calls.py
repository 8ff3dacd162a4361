"""The calls a ``LambdaExecutor`` is delivering: what its invoker and its completion monitor share.

The invoker (numpywren.executors.lambda_invoke) moves a call from the queue to in flight and sends it;
the monitor (numpywren.executors.lambda_monitor) moves it out once it ended (or re-sends or fails it).
Both work under the one lock of this table, count in its ``stats``, and wake the dispatcher through
``wake`` when a slot frees or an upload finishes.
"""
from __future__ import annotations

import collections
import threading


class _Call:
    """One call's delivery state (the driver side of an event). Times are on the monotonic clock."""

    __slots__ = ("event", "invocations", "accepted_at", "started_at", "stale_at", "check_at", "recheck", "upload")

    def __init__(self, event: dict, upload=None):
        self.event = event
        self.upload = upload            # the arguments' upload (a concurrent Future), if still running
        self.invocations = 0
        self.accepted_at: float | None = None  # Lambda accepted the latest invoke
        self.started_at: float | None = None   # a worker started it (from its lease)
        self.stale_at = 0.0             # after this the latest invoke can no longer start (not_after + grace)
        self.check_at = float("inf")    # when to look at it next if it has not completed
        self.recheck = 0.0              # seconds to the next look (doubles: O(log duration) looks per call)

    @property
    def ident(self) -> tuple[str, str]:
        return self.event["callset"], self.event["call"]


class Deliveries:
    """Calls queued (waiting for a slot or their arguments' upload) and in flight (sent, not seen ended)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.queue: collections.deque[_Call] = collections.deque()
        self.inflight: dict[tuple[str, str], _Call] = {}  # (callset, call) -> call
        #: Counters for tests and monitoring.
        self.stats: collections.Counter = collections.Counter()
        self.wake = threading.Event()  # the dispatcher's: a slot is free, an upload finished, a call queued

    def count(self, name: str) -> None:
        with self.lock:
            self.stats[name] += 1

    def forget(self, call: _Call) -> None:
        """The call is no longer in flight (ended or failed): its slot is free."""
        with self.lock:
            self.inflight.pop(call.ident, None)
        self.wake.set()

    def pending(self) -> int:
        with self.lock:
            return len(self.queue) + len(self.inflight)

    def take_queued(self, chosen) -> list[_Call]:
        """Remove and return the queued calls whose event ``chosen`` accepts (they will not be sent)."""
        with self.lock:
            taken = [c for c in self.queue if chosen(c.event)]
            if taken:
                kept = [c for c in self.queue if not chosen(c.event)]
                self.queue.clear()
                self.queue.extend(kept)
        return taken
