"""A simulated serverless backend: a virtual clock, W workers, no real compute and no data.

It runs the real scheduler on the real DAG builders' tasks: each delivered
tile event occupies a simulated worker for ``duration(spec)`` virtual seconds,
then completes with the stats a worker would report (in memory: nothing is
read or written). ``wait_for`` advances the clock to the next completion, so a
million tasks "run" in seconds of real time and what is measured is the
driver itself (scheduler, DAG, protocol). The simulator's own CPU time is
counted in ``cpu_seconds`` so a benchmark can subtract it from the driver's.

A richer model (numpywren.simulate) gets more than the spec: if ``duration``
has a ``task_seconds(spec, now, running)`` method it is called with the
virtual time and the number of calls running (this one included), so shared
limits (store bandwidth, request rates, cold starts) can slow a task down (it
may return ``(start-up, body)`` seconds: the call counts as started, as a
worker claiming its lease, after the start-up); a
``failed(spec)`` method, if present, decides whether the call fails (the
driver then sees a WorkerDiedError and retries). A running call reports its
progress as a worker does (numpywren.worker.progress): every ``spec["report"]``
(else ``spec["beat"]``) seconds of its body, the share of the body done, which
advances at the call's own speed (a straggler's slowly); ``progress_reads``
counts the reports the driver read that were new, as its lease reads would be
(numpywren.liveness). ``driver_time`` makes the
driver's own work take virtual time, so a driver bottleneck shows: a float
is seconds per submitted task, ``"measured"`` the driver thread's CPU time
between two waits (minus the simulator's own).
"""
from __future__ import annotations

import heapq
import time
from collections import deque
from typing import Callable

from numpywren.executors.base import Executor
from numpywren.storage import Store


def constant(seconds: float) -> Callable[[dict], float]:
    """A duration model: every task takes ``seconds``."""
    return lambda spec: seconds


class SimulatedExecutor(Executor):
    """``workers`` simulated workers; ``duration(spec) -> seconds`` models each task (default 1 s)."""

    reports_completions = True
    tracks_calls = True  # it knows when each call starts, and loses none (numpywren.liveness)

    def __init__(self, workers: int, store: "Store | str | None" = None,
                 duration: Callable[[dict], float] = constant(1.0), start_time: float = 0.0,
                 record: bool = False, driver_time: "float | str | None" = None):
        super().__init__(store)
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        if not (driver_time is None or driver_time == "measured"
                or (isinstance(driver_time, (int, float)) and driver_time >= 0)):
            raise ValueError(f"driver_time must be None, 'measured' or seconds >= 0, got {driver_time!r}")
        self._workers, self.duration = workers, duration
        self._model = duration if hasattr(duration, "task_seconds") else None
        self.driver_time = driver_time
        self.driver_seconds = 0.0       # virtual seconds the driver's own work took (with driver_time)
        self._turn_began = time.thread_time()
        self.now = start_time
        self.cpu_seconds = 0.0          # the simulator's own CPU time (not the driver's)
        self.started = 0                # calls that began running
        self.max_in_flight = 0
        self._busy = 0
        self._queued: deque = deque()
        self._ends: list = []           # heap of (end time, seq, event)
        self._started: dict[str, float] = {}  # result key -> start time, of the calls running
        self._bodies: dict[str, tuple[float, float, float]] = {}  # result key -> (body start, end, report every)
        self._read: dict[str, int] = {}  # result key -> the last report the driver read
        self.progress_reads = 0
        self._seq = 0
        #: with ``record=True``: (task id, start, end) of every simulated call, for timelines and tests
        self.history: list[tuple[str, float, float]] | None = [] if record else None

    @property
    def workers(self) -> int:
        return self._workers

    def clock(self) -> float:
        return self.now

    def _invoke(self, event: dict) -> None:
        began = time.thread_time()
        if event["kind"] != "tile":
            raise TypeError("the simulated backend runs tile tasks only (no Python calls)")
        self._charge_driver(began, per_task=True)
        self._queued.append(event)
        self._start_queued()
        self._turn_began = time.thread_time()
        self.cpu_seconds += self._turn_began - began

    def _start_queued(self) -> None:
        while self._queued and self._busy < self._workers:
            event = self._queued.popleft()
            self._busy += 1
            self.started += 1
            self._seq += 1
            spec = event["task"]
            startup = 0.0
            if self._model is None:
                seconds, ok = self.duration(spec), True
            else:
                seconds = self._model.task_seconds(spec, now=self.now, running=self._busy)
                ok = not (hasattr(self._model, "failed") and self._model.failed(spec))
            if isinstance(seconds, tuple):
                startup, seconds = seconds[0], seconds[0] + seconds[1]
            end = self.now + seconds
            self._started[event["result"]] = self.now + startup
            every = spec.get("report") or spec.get("beat")
            if every and getattr(self._model, "reports_progress", True):
                self._bodies[event["result"]] = (self.now + startup, end, float(every))
            heapq.heappush(self._ends, (end, self._seq, event, ok))
            if self.history is not None:
                self.history.append((event["task"]["id"], self.now, end))
        self.max_in_flight = max(self.max_in_flight, self._busy)

    def predicted_seconds(self, spec: dict) -> float | None:
        """The model's uncontended time for the task, if it has one (``predicted_seconds(spec)``)."""
        if self._model is not None and hasattr(self._model, "predicted_seconds"):
            return self._model.predicted_seconds(spec)
        return None  # a plain duration function is what happens, not a prediction

    def call_started(self, result_key: str) -> float | None:
        return self._started.get(result_key)

    def call_progress(self, result_key: str) -> tuple[float, float] | None:
        """The call's last progress report (seconds run, share done), as of now; None before its first."""
        body = self._bodies.get(result_key)
        if body is None:
            return None
        began, end, every = body
        reports = int((min(self.now, end) - began) / every)
        if began + reports * every >= end:  # a report at the very end is its result instead
            reports -= 1
        if reports < 1:
            return None
        if self._read.get(result_key) != reports:
            self._read[result_key] = reports
            self.progress_reads += 1
        ran = reports * every
        return ran, ran / (end - began)

    def _cancel_call(self, event: dict) -> bool:
        queued = len(self._queued)
        self._queued = deque(e for e in self._queued if e["result"] != event["result"])
        if len(self._queued) == queued:
            return False
        self._complete(event, ok=False)
        return True

    def cancel(self, callsets) -> int:
        callsets = set(callsets)
        dropped = [e for e in self._queued if e["callset"] in callsets]
        self._queued = deque(e for e in self._queued if e["callset"] not in callsets)
        for event in dropped:
            self._complete(event, ok=False)
        return len(dropped)

    def wait_for(self, completions, timeout: float | None):
        """Advance the virtual clock to the next completion (or by ``timeout``); return one finished future."""
        began = time.thread_time()
        self._charge_driver(began)
        try:
            if not completions.empty():
                return completions.get_nowait()
            if not self._ends:
                self.now += timeout or 0.0
                return None
            end = self._ends[0][0]
            if timeout is not None and end > self.now + timeout:
                self.now += timeout
                return None
            self.now = max(self.now, end)
            while self._ends and self._ends[0][0] <= self.now:
                _, _, event, ok = heapq.heappop(self._ends)
                self._busy -= 1
                self._complete(event, ok=ok, failure="WorkerDiedError")
            self._start_queued()
            return completions.get_nowait() if not completions.empty() else None
        finally:
            self._turn_began = time.thread_time()
            self.cpu_seconds += self._turn_began - began

    def _charge_driver(self, began: float, per_task: bool = False) -> None:
        """Advance the clock by the driver's work since its last wait (see the module docstring)."""
        if self.driver_time is None:
            return
        if self.driver_time == "measured":
            spent = max(0.0, began - self._turn_began)
            self._turn_began = began  # the simulator's own time from here on is not the driver's
        else:
            spent = float(self.driver_time) if per_task else 0.0
        self.now += spent
        self.driver_seconds += spent

    def _complete(self, event: dict, ok: bool, failure: str = "CancelledError") -> None:
        self._started.pop(event["result"], None)
        self._bodies.pop(event["result"], None)
        self._read.pop(event["result"], None)
        listener = self._on_done.get(event["result"])
        if listener is not None:
            future = listener[0]
            future._payload = ({"ok": True, "value": {}, "stats": {"worker": "simulated"}} if ok else
                               {"ok": False, "type": failure, "message": f"simulated {failure}",
                                "traceback": ""})
        self._call_ended(event)

    def cleanup(self, callsets=None) -> None:
        """Nothing was stored: forget the callsets without listing the store."""
        callsets = list(self._mine if callsets is None else callsets)
        gone = set(callsets)
        self._mine = [c for c in self._mine if c not in gone]
        for callset in gone:
            self._calls_in.pop(callset, None)
