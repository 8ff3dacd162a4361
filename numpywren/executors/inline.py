"""In-process workers: threads calling the same ``worker.handle`` (PyWren's dummy executor, done honestly).

Every event still goes through JSON and every byte through the store, so the
scheduler, the DAG builders and the worker code run exactly as with worker
processes; only process isolation is gone. That makes scheduler behaviour
(retries, backoff, lost leases, resume, priorities, composed plans) testable
in milliseconds. Faults are per executor (``faults=``): a ``crash`` cannot
kill a thread, so the call is reported as a dead worker's instead, with no
result written by the worker. A thread cannot be stopped either, so there is
no ``task_timeout``: a hung call is found by its lease (numpywren.worker.leases).
"""
from __future__ import annotations

import contextvars
import json
import queue
import threading
from concurrent.futures import CancelledError

from numpywren.worker import faults
from numpywren.executors.base import Executor, check_options
from numpywren.futures import WorkerDiedError
from numpywren.storage import Store
from numpywren.worker.handler import handle


class InlineExecutor(Executor):
    """``workers`` threads in this process, each running one call at a time."""

    reports_completions = True

    def __init__(self, workers: int = 2, store: "Store | str | None" = None, faults: str | None = None):
        super().__init__(store)
        check_options(workers)
        if faults is not None:
            from numpywren.worker.faults import parse

            parse(faults)  # a typo should fail here
        self.faults = faults
        self.wakeup = threading.Event()
        self._events: queue.Queue = queue.Queue()
        self._closed = False
        self._threads = [threading.Thread(target=self._serve, name=f"numpywren-inline-{i}", daemon=True)
                         for i in range(workers)]
        for thread in self._threads:
            thread.start()

    @property
    def workers(self) -> int:
        return len(self._threads)

    def _invoke(self, event: dict) -> None:
        if self._closed:
            raise RuntimeError("this executor has been shut down")
        self._events.put(json.dumps(event))  # what crosses the wire is JSON, as for every backend

    def cancel(self, callsets) -> int:
        """Drop the queued (not yet started) calls of ``callsets``; their futures fail. Returns how many."""
        callsets, keep, dropped = set(callsets), [], []
        while True:
            try:
                raw = self._events.get_nowait()
            except queue.Empty:
                break
            event = json.loads(raw) if raw is not None else None
            (dropped if event is not None and event["callset"] in callsets else keep).append(raw)
        for raw in keep:
            self._events.put(raw)
        for raw in dropped:
            event = json.loads(raw)
            self.record_failure(event, CancelledError(f"call {event['callset']}/{event['call']} was cancelled"))
        return len(dropped)

    def shutdown(self) -> None:
        """Cancel queued calls and stop the threads once their running calls end."""
        if self._closed:
            return
        self._closed = True
        super().shutdown()
        self.cancel({json.loads(raw)["callset"] for raw in list(self._events.queue) if raw is not None})
        for _ in self._threads:
            self._events.put(None)

    def _serve(self) -> None:
        while True:
            raw = self._events.get()
            if raw is None:
                return
            event = json.loads(raw)
            context = contextvars.Context()
            try:
                context.run(self._call, event)
            except faults.InjectedCrash as crash:
                self.record_failure(event, WorkerDiedError(f"worker thread crashed (injected): {crash}"),
                                    worker="inline")
            except Exception as exc:  # noqa: BLE001 - the store failed under the worker: say so
                self.record_failure(event, WorkerDiedError(f"call {event['callset']}/{event['call']}: the "
                                                           f"worker could not write its result: {exc!r}"))
            finally:
                self.wakeup.set()
                self._call_ended(event)

    def _call(self, event: dict) -> None:
        faults.spec_in_context.set(self.faults)
        handle(event)
