"""The completion monitor of ``numpywren.executors.aws_lambda.LambdaExecutor`` (the Lithops "monitor" role).

``LambdaMonitor`` learns which calls ended from their done-markers (listed at most once per
``poll_interval`` from the newest seen, now and then re-listing the clock-skew window), looks
directly at calls that run long for their kind (a missed marker, a lost or killed call: re-sent
or failed), reads Lambda's own failure records (numpywren.executors.lambda_failures: a sandbox
killed for memory fails its call at once, naming memory), and hands each future its result (decoded
from the marker when it carries one). It
owns no call: it reads the executor's table of calls in flight (numpywren.executors.lambda_calls)
and reports through the callbacks it was given. The executor's module docstring states the
promises this keeps.
"""
from __future__ import annotations

import json
import logging
import threading
import time

from typing import Callable

from numpywren import protocol
from numpywren.executors import lambda_failures
from numpywren.executors.lambda_calls import Deliveries, _Call
from numpywren.futures import Future, WorkerDiedError
from numpywren.storage import Store, open_store

log = logging.getLogger(__name__)

#: Seconds between the listings that re-list the clock-skew window (the others start at the newest marker).
RELIST_EVERY = 2.0
#: A call is looked at directly (a HEAD of its result key) once it has run this many times longer than
#: the completed calls' average (and at least ``sweep_seconds``): the look is for a missed marker, rare.
SWEEP_FACTOR = 3.0


class LambdaMonitor:
    """Watches the calls in flight of one executor ``session``: ``reap`` (every dispatcher round) retires
    those whose done-marker appeared and looks at overdue ones.

    ``on_end(call, payload)`` is told of a call that ended (``payload``: the result its marker carried, or
    None), ``fail(call, exc)`` of one given up on, and ``resend(call)`` asked to send a lost one again.
    """

    def __init__(self, calls: Deliveries, store: Store, session: str, *, function_name: str,
                 poll_interval: float, relist_seconds: float, sweep_seconds: float, task_timeout: float,
                 event_age: float, stale_grace: float, max_reinvokes: int,
                 on_end: Callable[[_Call, dict | None], None], fail: Callable[[_Call, BaseException], None],
                 resend: Callable[[_Call], None]):
        self.calls, self.store, self.session, self.function_name = calls, store, session, function_name
        self.poll_interval, self.relist_seconds, self.sweep_seconds = poll_interval, relist_seconds, sweep_seconds
        self.task_timeout, self.event_age, self.stale_grace = task_timeout, event_age, stale_grace
        self.max_reinvokes = max_reinvokes
        self._on_end, self._fail, self._resend = on_end, fail, resend
        self.newest_marker = 0.0  # completion time (epoch s) of the newest done-marker seen
        self.typical_seconds = 0.0  # moving average of invoke-to-marker seconds of completed calls
        self._listed_at = float("-inf")  # monotonic time of the last marker listing
        self._relisted_at = float("-inf")  # ... and of the last one that re-listed the skew window
        self._lease_stores: dict[str, Store] = {}
        self._futures: dict[str, Future] = {}  # result key -> future, until the call ends
        #: the bucket Lambda writes failure records to (its root), and the function's memory (for the message)
        self.failures: Store | None = None
        self.memory_mb: Callable[[], float | None] | None = None
        self._records_from = time.time() - stale_grace  # records older than this driver are not its calls'
        self._records_seen: set[str] = set()
        self._records_at = float("-inf")

    # -- futures ---------------------------------------------------------------------------
    def track(self, future: Future) -> Future:
        """The monitor tells ``future`` when its call ended (done-markers): nobody polls for it."""
        future.tracked = True
        self._futures[future.result_key] = future
        return future

    def hand_over(self, event: dict, payload: dict | None = None) -> None:
        """The call of ``event`` ended: its future learns so (with the result a marker carried)."""
        future = self._futures.pop(event["result"], None)
        if future is not None:
            future._ended(payload)

    def untrack_all(self) -> None:
        """The driver stops watching (shutdown): the futures poll the store again."""
        for future in list(self._futures.values()):
            future.tracked = False

    # -- the dispatcher's round ---------------------------------------------------------------
    def accepted(self, call: _Call, not_after: float, now: float) -> None:
        """Lambda accepted a send of ``call`` at ``now`` (monotonic), to be dropped unstarted after
        ``not_after`` (epoch): when to look at it first."""
        call.stale_at = now + (not_after - time.time()) + self.stale_grace
        # first look: when it could be overdue (run task_timeout, or gone stale unstarted), or earlier
        # to catch a marker the listings missed (written later than relist_seconds after its time), once
        # the call runs long for its kind (not every long task: each look is a request)
        call.recheck = max(self.sweep_seconds, SWEEP_FACTOR * self.typical_seconds)
        call.check_at = now + min(call.recheck, self.task_timeout, self.event_age + self.stale_grace)

    def reap(self) -> None:
        """Retire calls whose done-marker appeared; look at overdue calls (re-invoke or fail the lost)."""
        now = time.monotonic()
        with self.calls.lock:
            if not self.calls.inflight or now - self._listed_at < self.poll_interval:
                return  # wakes for free slots do not list: at most one listing per poll interval
        self._listed_at = now
        for ident, outcome in self._new_markers():
            with self.calls.lock:
                call = self.calls.inflight.get(ident)
            if call is not None:
                self._ended(call, outcome)
        if self.failures is not None and now - self._records_at >= RELIST_EVERY:
            self._records_at = now
            self._read_failure_records()
        now = time.monotonic()
        with self.calls.lock:
            due = [c for c in self.calls.inflight.values() if c.accepted_at is not None and c.check_at <= now]
        for call in due:
            self.check(call, now)

    def _new_markers(self) -> list[tuple[tuple[str, str], str | None]]:
        """((callset, call), outcome field) of the markers written since the newest seen, minus the re-list
        window."""
        prefix = protocol.done_prefix(self.session)
        now = time.monotonic()
        window = 0.0
        if now - self._relisted_at >= RELIST_EVERY:  # the skew window only now and then: fewer keys to parse
            window, self._relisted_at = self.relist_seconds, now
        start = protocol.done_cursor(self.session, self.newest_marker - window) if self.newest_marker else ""
        found = []
        keys = 0
        for key in self.store.list_after(prefix, start):
            keys += 1
            try:
                callset, call, when, outcome = protocol.parse_done_key(key)
            except ValueError:
                continue  # not ours to interpret
            self.newest_marker = max(self.newest_marker, when)
            found.append(((callset, call), outcome))
        with self.calls.lock:
            self.calls.stats["marker_lists"] += 1
            self.calls.stats["marker_keys"] += keys
        return found

    def _read_failure_records(self) -> None:
        """Fail the calls in flight that Lambda reported failed (numpywren.executors.lambda_failures)."""
        start = lambda_failures.records_cursor(self.function_name, self._records_from)
        for key in self.failures.list_after(lambda_failures.records_prefix(self.function_name), start):
            if key in self._records_seen:
                continue
            self._records_seen.add(key)
            self.calls.count("failure_records")
            try:
                parsed = lambda_failures.parse_record(self.failures.get(key))
            except Exception:  # noqa: BLE001 - gone or unreadable: not a report we can act on
                continue
            if parsed is None:
                continue
            event, condition, error_type, message = parsed
            with self.calls.lock:
                call = self.calls.inflight.get((event["callset"], event["call"]))
            if call is None:
                continue  # another driver's call, or one that ended since
            memory = self.memory_mb() if self.memory_mb is not None else None
            error = lambda_failures.failure_error(self.function_name, memory, condition, error_type, message)
            if error is not None:
                self._fail(call, error)

    def _ended(self, call: _Call, outcome: str | None = None) -> None:
        if call.accepted_at is not None:
            took = time.monotonic() - call.accepted_at
            self.typical_seconds += (took - self.typical_seconds) * (0.05 if self.typical_seconds else 1.0)
        self._on_end(call, self._outcome(call, outcome))

    def _outcome(self, call: _Call, outcome: str | None) -> dict | None:
        """The result a marker carried, decoded exactly as the result object would be (JSON for a tile task);
        None (the future reads the result key) if it carried none or one that does not decode."""
        if outcome is None:
            return None
        try:
            payload = protocol.decode_result(call.event["kind"], protocol.decode_outcome(outcome))
        except Exception as exc:  # noqa: BLE001 - input from the store: the result object decides
            self.calls.count("bad_outcomes")
            log.debug("done-marker of call %s/%s carries an unreadable outcome (%s): reading its result key",
                      call.event["callset"], call.event["call"], exc)
            return None
        self.calls.count("outcomes_in_markers")
        return payload

    def check(self, call: _Call, now: float) -> None:
        """A call past its check time: done (marker missed), still running, still queued, or lost?"""
        # Calls have been taking longer than when this one was invoked: look (a request) only once it runs
        # long for its kind. Never past the earliest time it could be overdue (started + task_timeout,
        # or unstarted past event_age), so no deadline is noticed later.
        patience = call.accepted_at + min(SWEEP_FACTOR * self.typical_seconds, self.task_timeout,
                                          self.event_age + self.stale_grace)
        if now < patience:
            call.check_at = patience
            return
        self.calls.count("checks")
        if self.store.exists(call.event["result"]):
            self.calls.count("found_without_marker")
            return self._ended(call)
        if call.started_at is None:
            call.started_at = self._lease_start(call, now)
        if call.started_at is not None:
            deadline = call.started_at + self.task_timeout  # counted from the start, not the invoke
            why = f"running longer than task_timeout={self.task_timeout} s"
        elif protocol.task_lease(call.event) is not None:
            deadline = call.stale_at  # no lease yet: it may start until its event goes stale
            why = f"not started within event_age={self.event_age} s"
        else:
            deadline = call.stale_at + self.task_timeout  # start unknown: assume the latest possible
            why = f"no result within event_age + task_timeout = {self.event_age + self.task_timeout} s"
        if now < deadline:  # look again (a marker may have been missed) before the deadline, less and less often
            call.check_at = min(deadline, now + call.recheck)
            call.recheck *= 2
            return
        if call.invocations > self.max_reinvokes:
            self._fail(call, WorkerDiedError(
                f"call {call.event['callset']}/{call.event['call']} left no result after {call.invocations} "
                f"invocations of Lambda function {self.function_name!r} (last one {why}): lost, killed by the "
                f"function timeout, or out of memory (see its CloudWatch logs)"))
        else:
            self.calls.count("reinvocations")
            call.accepted_at = call.started_at = None
            call.check_at = float("inf")
            self._resend(call)

    def _lease_start(self, call: _Call, now: float) -> float | None:
        """Monotonic time the latest attempt's worker started (from its lease record), or None."""
        lease = protocol.task_lease(call.event)
        if lease is None:
            return None
        url, key = lease
        try:
            store = self._lease_stores.get(url)
            if store is None:
                store = self._lease_stores[url] = open_store(url)
            record = json.loads(store.get(key))
        except Exception:  # noqa: BLE001 - no lease yet (or unreadable: then it is not a start we can trust)
            return None
        started = now - max(0.0, time.time() - float(record.get("start", time.time())))
        # a lease older than this invoke belongs to an earlier delivery of the same attempt
        return max(started, call.accepted_at or started)
