"""AWS Lambda as the backend: one asynchronous ``invoke`` per call, completions read from S3.

The worker on Lambda is the same ``numpywren.worker.handle`` as locally (see
``numpywren.worker.lambda_handler``). This executor only delivers events, and keeps
these promises:

* throttling (429 TooManyRequestsException) and 5xx answers are retried:
  botocore's retries back off each request with jitter (``retry_mode``
  "standard"; "adaptive" also rate-limits the whole client after a throttle,
  which protects a shared account but slows a burst of invokes to a crawl
  before it ramps up again), and a bounded outer backoff covers throttling
  that outlasts botocore's attempts;
* at most ``max_concurrency`` calls are in flight, capped at start to what
  Lambda grants (the function's reserved concurrency, else the account's
  unreserved concurrency; a warning says so): later calls wait in a queue and
  are invoked as earlier ones complete;
* completions cost O(1) requests each: every event asks its worker for a
  done-marker (numpywren.protocol.done_key), keyed by completion time, and the
  dispatcher lists the markers, at most once per ``poll_interval``, from the
  newest it has seen (``StartAfter``), every ``RELIST_EVERY`` seconds from
  ``relist_seconds`` before it, for clock skew between workers and late
  writes; nothing re-lists
  ``results/``. A call still running ``sweep_seconds`` after its invoke, and
  ``SWEEP_FACTOR`` times longer than the calls that completed so far took on
  average (long tasks are not all checked), has its result key checked
  directly, then at doubling intervals, so a marker the listings missed
  delays its completion, never loses it. A marker that
  carries its call's (short) result hands it to the future, decoded as the
  result object would be, so a completion costs no read at all: the driver's
  requests per task are its invoke (and a ``map`` call's argument upload);
* every invoke carries a ``not_after`` time, ``event_age`` seconds later: an
  event Lambda has queued longer is dropped by the handler unrun (set the
  function's maximum event age to match: ``numpywren deploy`` does);
* ``task_timeout`` counts from when a call *starts*, never the time its event
  waited in Lambda's queue: for a tile task from its lease (its record holds
  the start time); a call with no lease is given until ``not_after`` to start.
  A call that has not finished by then (lost by Lambda, or killed by
  timeout/out of memory), or never started by ``not_after``, is invoked
  again, at most ``max_reinvokes`` times, then reported failed. A duplicate
  run is harmless: workers write only final keys.

``cancel`` (and ``Future.cancel``) drops calls not yet invoked; a call already
invoked cannot be recalled from Lambda, so a failed job drains it.

``map`` uploads the arguments of its calls on a thread pool (the main thread
only pickles them), so the driver starts calls as fast as Lambda accepts them;
small arguments travel in bundles (numpywren.protocol.args_bundle_key: up to
``BUNDLE_CALLS`` calls or ``BUNDLE_BYTES`` per upload, each worker unpickling
only its own slice), so a call costs the driver one request, its invoke, which
``numpywren.executors.lambda_invoke`` sends signed by botocore but without the
client's per-call machinery (under half its CPU; anything but "accepted" goes
through the client and its retries).
A call that cannot be delivered at all (unknown function, no permission) is
reported under its result key, so its future fails with the reason.
"""
from __future__ import annotations

import collections
import concurrent.futures
import json
import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import boto3
import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from numpywren import protocol
from numpywren.executors.base import Executor
from numpywren.executors.lambda_invoke import EventInvoker
from numpywren.futures import Future, WorkerDiedError
from numpywren.serialize import dumps
from numpywren.storage import Store, open_store
from numpywren.storage.s3 import USER_AGENT

log = logging.getLogger(__name__)

#: Codes that mean "slow down" rather than "this will never work".
THROTTLE_CODES = ("TooManyRequestsException", "ThrottlingException", "Throttling",
                  "EC2ThrottledException", "ENILimitReachedException")
#: Default seconds an event may wait in Lambda's queue (``numpywren deploy`` sets the function's maximum
#: event age to this): long enough for a burst to drain, short enough that no event outlives its driver long.
DEFAULT_EVENT_AGE = 300
#: Seconds between the listings that re-list the clock-skew window (the others start at the newest marker).
RELIST_EVERY = 2.0
#: A ``map``'s arguments go up in bundles of at most this many calls and bytes; a call whose pickled
#: arguments exceed SOLO_BYTES gets its own object (a worker reads its whole bundle: keep that small).
BUNDLE_CALLS = 64
BUNDLE_BYTES = 256 * 1024
SOLO_BYTES = 16 * 1024
#: A call is looked at directly (a HEAD of its result key) once it has run this many times longer than
#: the completed calls' average (and at least ``sweep_seconds``): the look is for a missed marker, rare.
SWEEP_FACTOR = 3.0


class _Bundle:
    """The pickled arguments of consecutive calls of one callset, uploaded as one object once full."""

    __slots__ = ("key", "parts", "size", "upload")

    def __init__(self, key: str):
        self.key = key
        self.parts: list[bytes] = []
        self.size = 0
        self.upload: concurrent.futures.Future = concurrent.futures.Future()  # done once uploaded


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


class LambdaExecutor(Executor):
    """Runs calls on the Lambda function ``function_name`` (deployed by ``numpywren deploy``).

    ``store`` must be an S3 store the function can read and write.
    ``task_timeout`` should exceed the function's timeout (it counts from a call's start).
    ``max_concurrency`` also sizes task graphs (``workers``); it is capped to the
    concurrency Lambda grants (``check_concurrency``). ``event_age`` (seconds) is
    how long an event may wait in Lambda's queue before the handler drops it;
    ``stale_grace`` covers clock skew between driver and Lambda. ``shutdown``
    drops calls still queued, so wait for the futures first.
    """

    reports_completions = True  # the dispatcher sees every result appear (or records the failure)

    def __init__(self, function_name: str, store: Store | str | None = None, *,
                 region: str | None = None, max_concurrency: int = 1000,
                 task_timeout: float = 960.0, max_reinvokes: int = 2,
                 endpoint_url: str | None = None, invoke_threads: int = 16, upload_threads: int = 16,
                 invoke_attempts: int = 8, retry_mode: str = "standard", throttle_rounds: int = 4,
                 poll_interval: float = 0.5, event_age: float = DEFAULT_EVENT_AGE, stale_grace: float = 10.0,
                 relist_seconds: float = 5.0, sweep_seconds: float = 30.0, check_concurrency: bool = True):
        if not function_name:
            raise ValueError("LambdaExecutor needs the name of the deployed function (function_name=...)")
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
        if task_timeout <= 0:
            raise ValueError(f"task_timeout must be positive, got {task_timeout}")
        if event_age <= 0 or sweep_seconds <= 0 or stale_grace < 0 or relist_seconds < 0:
            raise ValueError(f"event_age and sweep_seconds must be positive, stale_grace and relist_seconds "
                             f">= 0, got {event_age}, {sweep_seconds}, {stale_grace}, {relist_seconds}")
        super().__init__(store)
        if not self.store.url.startswith("s3://"):
            raise ValueError(f"Lambda workers reach data only through S3, but the store is {self.store.url!r}; "
                             f"pass store='s3://bucket/prefix'")
        self.function_name = function_name
        self.max_concurrency = max_concurrency
        self.task_timeout = task_timeout
        self.max_reinvokes = max_reinvokes
        self.throttle_rounds = throttle_rounds
        self.poll_interval = poll_interval
        self.event_age = float(event_age)
        self.stale_grace = float(stale_grace)
        self.relist_seconds = float(relist_seconds)
        self.sweep_seconds = float(sweep_seconds)
        region = region or getattr(self.store, "region", None)  # default: the store's region
        # The driver's CPU per task is mostly this client's per-request work: a fixed User-Agent (botocore
        # otherwise rebuilds and sanitizes it twice per request, ~15% of an invoke) and no client-side
        # validation of the parameters this module builds itself (benchmarks/lambda_driver.py).
        session = botocore.session.get_session()
        self.client = boto3.session.Session(botocore_session=session).client(
            "lambda", region_name=region, endpoint_url=endpoint_url,
            config=Config(retries={"max_attempts": invoke_attempts, "mode": retry_mode},
                          max_pool_connections=invoke_threads, connect_timeout=10, read_timeout=30,
                          user_agent=USER_AGENT, parameter_validation=False))
        # ... and asynchronous invokes sent without the client's per-call machinery (numpywren.executors.
        # lambda_invoke: under half the CPU), which hands anything but "accepted" back to the client
        self._invoker = EventInvoker(session, self.client, function_name)
        #: Counters for tests and monitoring.
        self.stats: collections.Counter = collections.Counter()
        #: What Lambda grants (None: unknown), read at start.
        self.granted_concurrency: int | None = None
        if check_concurrency:
            self._cap_concurrency()
        self._last_error: Exception | None = None
        self._queue: collections.deque[_Call] = collections.deque()
        self._inflight: dict[tuple[str, str], _Call] = {}  # (callset, call) -> call
        self._uploading: dict[str, object] = {}  # result key -> the upload of its arguments
        self._bundles: dict[str, _Bundle] = {}  # callset -> its argument bundle still filling
        self._newest_marker = 0.0  # completion time (epoch s) of the newest done-marker seen
        self._typical_seconds = 0.0  # moving average of invoke-to-marker seconds of completed calls
        self._listed_at = float("-inf")  # monotonic time of the last marker listing
        self._relisted_at = float("-inf")  # ... and of the last one that re-listed the skew window
        self._lease_stores: dict[str, Store] = {}
        self._futures: dict[str, Future] = {}  # result key -> future, until the call ends
        self.wakeup = threading.Event()  # futures.wait sleeps on it: it reads no store for tracked futures
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._pool = ThreadPoolExecutor(invoke_threads, thread_name_prefix="numpywren-invoke")
        self._uploads = ThreadPoolExecutor(upload_threads, thread_name_prefix="numpywren-upload")
        self._dispatcher = threading.Thread(target=self._dispatch, name="numpywren-lambda", daemon=True)
        self._dispatcher.start()

    @property
    def workers(self) -> int:
        return self.max_concurrency

    def _cap_concurrency(self) -> None:
        """Cap ``max_concurrency`` to the function's reserved concurrency, else the account's unreserved one."""
        granted, source = None, ""
        try:
            reply = self.client.get_function_concurrency(FunctionName=self.function_name)
            if reply.get("ReservedConcurrentExecutions") is not None:
                granted, source = int(reply["ReservedConcurrentExecutions"]), "the function's reserved concurrency"
        except (ClientError, BotoCoreError) as exc:
            log.debug("cannot read the reserved concurrency of %s: %s", self.function_name, exc)
        if granted is None:
            try:
                limit = self.client.get_account_settings().get("AccountLimit", {})
                if limit.get("UnreservedConcurrentExecutions") is not None:
                    granted = int(limit["UnreservedConcurrentExecutions"])
                    source = "the account's unreserved concurrency in this region"
            except (ClientError, BotoCoreError) as exc:
                log.debug("cannot read the account's Lambda settings: %s", exc)
        if granted is None:
            log.warning("could not read Lambda's concurrency limits (lambda:GetAccountSettings, "
                        "lambda:GetFunctionConcurrency); assuming max_concurrency=%d is granted",
                        self.max_concurrency)
            return
        if granted < 1:
            raise ValueError(f"Lambda function {self.function_name!r} can run no call: {source} is {granted} "
                             f"(put-function-concurrency, or delete the function's concurrency limit)")
        self.granted_concurrency = granted
        if granted < self.max_concurrency:
            log.warning("max_concurrency=%d exceeds %s (%d): using %d; ask AWS for a higher quota "
                        "(Service Quotas, 'Concurrent executions') to run more at once",
                        self.max_concurrency, source, granted, granted)
            self.max_concurrency = granted

    def _invoke(self, event: dict) -> None:
        if self._closed:
            raise RuntimeError("this executor has been shut down")
        event["done"] = True  # ask the worker for a done-marker (completion discovery, see the module doc)
        upload = self._uploading.pop(event["result"], None)
        with self._lock:
            self._queue.append(_Call(event, upload))
        self._wake.set()

    def _call_event(self, callset: str, func_key: str, index: int, args: tuple, kwargs: dict,
                    env: dict | None = None) -> dict:
        """Pickle the arguments now (later changes to them do not matter); upload them on a thread, alone
        if large, else in the callset's open bundle (uploaded once full, or when the map is delivered)."""
        call = f"{index:05d}"
        data = dumps((tuple(args), dict(kwargs)))
        if len(data) > SOLO_BYTES:
            args_key = protocol.args_key(callset, call)
            event = protocol.call_event(self.store.url, callset, call, func_key, args_key, env=env)
            upload = self._uploads.submit(self.store.put, args_key, data)
            upload.add_done_callback(lambda _: self._wake.set())
            self._uploading[event["result"]] = upload
            return event
        bundle = self._bundles.get(callset)
        if bundle is not None and (len(bundle.parts) >= BUNDLE_CALLS or bundle.size + len(data) > BUNDLE_BYTES):
            self._close_bundle(callset)
            bundle = None
        if bundle is None:
            bundle = self._bundles[callset] = _Bundle(protocol.args_bundle_key(callset, call))
        event = protocol.call_event(self.store.url, callset, call, func_key, bundle.key, env=env,
                                    args_at=(bundle.size, len(data)))
        bundle.parts.append(data)
        bundle.size += len(data)
        self._uploading[event["result"]] = bundle.upload
        return event

    def _close_bundle(self, callset: str) -> None:
        """Upload the callset's open argument bundle (on the upload pool); its calls may then be invoked."""
        bundle = self._bundles.pop(callset, None)
        if bundle is None:
            return
        data = b"".join(bundle.parts)

        def upload() -> None:
            try:
                self.store.put(bundle.key, data)
            except BaseException as exc:  # noqa: BLE001 - every call of the bundle reports it
                bundle.upload.set_exception(exc)
            else:
                bundle.upload.set_result(None)
            self._wake.set()

        self._uploads.submit(upload)

    def _deliver_batch(self, events, on_done=None) -> list[Future]:
        callsets: set[str] = set()

        def noted():
            for event in events:
                callsets.add(event["callset"])
                yield event

        try:
            return super()._deliver_batch(noted(), on_done)
        finally:  # the last, partial bundle of each callset goes up now
            for callset in callsets:
                self._close_bundle(callset)

    def _submit_call(self, callset: str, *args, **kwargs) -> Future:
        try:
            return super()._submit_call(callset, *args, **kwargs)
        finally:
            self._close_bundle(callset)

    def _future(self, event: dict, on_done=None) -> Future:
        future = super()._future(event, on_done)
        future.tracked = True  # the dispatcher tells it when it ended (done-markers): nobody polls for it
        self._futures[event["result"]] = future
        return future

    def _call_ended(self, event: dict, payload: dict | None = None) -> None:
        future = self._futures.pop(event["result"], None)
        if future is not None:
            future._ended(payload)
        super()._call_ended(event)
        self.wakeup.set()

    def cancel(self, callsets) -> int:
        """Drop the calls of ``callsets`` not yet invoked (their futures fail as cancelled); return how many.
        Calls already invoked cannot be recalled from Lambda: they run, and the caller drains them."""
        callsets = set(callsets)
        return self._drop_queued(lambda event: event["callset"] in callsets)

    def _cancel_call(self, event: dict) -> bool:
        return self._drop_queued(lambda queued: queued["result"] == event["result"]) == 1

    def _drop_queued(self, chosen) -> int:
        with self._lock:
            dropped = [c for c in self._queue if chosen(c.event)]
            if dropped:
                self._queue = collections.deque(c for c in self._queue if not chosen(c.event))
        for call in dropped:
            if call.upload is not None:
                call.upload.cancel()
            self.record_failure(call.event, concurrent.futures.CancelledError(
                f"call {call.event['callset']}/{call.event['call']} was cancelled before it was invoked"),
                worker=f"lambda:{self.function_name}")
        return len(dropped)

    def pending(self) -> int:
        """Calls queued or in flight (not yet seen completed)."""
        with self._lock:
            return len(self._queue) + len(self._inflight)

    def shutdown(self) -> None:
        """Stop delivering: queued calls are dropped, calls already on Lambda finish there."""
        if self._closed:
            return
        self._closed = True
        super().shutdown()
        self._wake.set()
        self._dispatcher.join(timeout=5)
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._uploads.shutdown(wait=True, cancel_futures=True)
        self._invoker.close()
        for future in list(self._futures.values()):  # no longer tracked: they poll the store again
            future.tracked = False
        self.wakeup.set()
        try:  # the markers matter only while this driver runs (store gc removes any written later)
            self.store.delete_prefix(protocol.done_prefix(self.session))
        except Exception as exc:  # noqa: BLE001
            log.debug("could not delete the done-markers of session %s: %s", self.session, exc)

    # -- the dispatcher thread ---------------------------------------------------
    def _dispatch(self) -> None:
        while not self._closed:
            self._wake.wait(self.poll_interval)
            self._wake.clear()
            try:
                self._reap()
                self._launch()
            except Exception as exc:  # noqa: BLE001 - e.g. S3 briefly unreachable: try again next round
                self._count("dispatch_errors")
                self._last_error = exc
                log.debug("dispatcher round failed: %r", exc)

    def _launch(self) -> None:
        """Invoke queued calls (in order, once their arguments are uploaded) while slots are free."""
        while not self._closed:
            with self._lock:
                if not self._queue or len(self._inflight) >= self.max_concurrency:
                    return
                call = self._queue[0]
                if call.upload is not None and not call.upload.done():
                    return  # its upload's callback wakes us
                self._queue.popleft()
                self._inflight[call.ident] = call
            if call.upload is not None and call.upload.exception() is not None:
                self._fail(call, RuntimeError(f"uploading the arguments of call {call.event['callset']}/"
                                              f"{call.event['call']} failed: {call.upload.exception()!r}"))
                continue
            call.upload = None
            self._pool.submit(self._send, call)

    def _reap(self) -> None:
        """Retire calls whose done-marker appeared; look at overdue calls (re-invoke or fail the lost)."""
        now = time.monotonic()
        with self._lock:
            if not self._inflight or now - self._listed_at < self.poll_interval:
                return  # wakes for free slots do not list: at most one listing per poll interval
        self._listed_at = now
        for ident, outcome in self._new_markers():
            with self._lock:
                call = self._inflight.get(ident)
            if call is not None:
                self._ended(call, outcome)
        now = time.monotonic()
        with self._lock:
            due = [c for c in self._inflight.values() if c.accepted_at is not None and c.check_at <= now]
        for call in due:
            self._check(call, now)

    def _new_markers(self) -> list[tuple[tuple[str, str], str | None]]:
        """((callset, call), outcome field) of the markers written since the newest seen, minus the re-list
        window."""
        prefix = protocol.done_prefix(self.session)
        now = time.monotonic()
        window = 0.0
        if now - self._relisted_at >= RELIST_EVERY:  # the skew window only now and then: fewer keys to parse
            window, self._relisted_at = self.relist_seconds, now
        start = protocol.done_cursor(self.session, self._newest_marker - window) if self._newest_marker else ""
        found = []
        keys = 0
        for key in self.store.list_after(prefix, start):
            keys += 1
            try:
                callset, call, when, outcome = protocol.parse_done_key(key)
            except ValueError:
                continue  # not ours to interpret
            self._newest_marker = max(self._newest_marker, when)
            found.append(((callset, call), outcome))
        with self._lock:
            self.stats["marker_lists"] += 1
            self.stats["marker_keys"] += keys
        return found

    def _ended(self, call: _Call, outcome: str | None = None) -> None:
        if call.accepted_at is not None:
            took = time.monotonic() - call.accepted_at
            self._typical_seconds += (took - self._typical_seconds) * (0.05 if self._typical_seconds else 1.0)
        self._forget(call)
        self._call_ended(call.event, self._outcome(call, outcome))

    def _outcome(self, call: _Call, outcome: str | None) -> dict | None:
        """The result a marker carried, decoded exactly as the result object would be (JSON for a tile task);
        None (the future reads the result key) if it carried none or one that does not decode."""
        if outcome is None:
            return None
        try:
            payload = protocol.decode_result(call.event["kind"], protocol.decode_outcome(outcome))
        except Exception as exc:  # noqa: BLE001 - input from the store: the result object decides
            self._count("bad_outcomes")
            log.debug("done-marker of call %s/%s carries an unreadable outcome (%s): reading its result key",
                      call.event["callset"], call.event["call"], exc)
            return None
        self._count("outcomes_in_markers")
        return payload

    def _check(self, call: _Call, now: float) -> None:
        """A call past its check time: done (marker missed), still running, still queued, or lost?"""
        # Calls have been taking longer than when this one was invoked: look (a request) only once it runs
        # long for its kind. Never past the earliest time it could be overdue (started + task_timeout,
        # or unstarted past event_age), so no deadline is noticed later.
        patience = call.accepted_at + min(SWEEP_FACTOR * self._typical_seconds, self.task_timeout,
                                          self.event_age + self.stale_grace)
        if now < patience:
            call.check_at = patience
            return
        self._count("checks")
        if self.store.exists(call.event["result"]):
            self._count("found_without_marker")
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
            self._count("reinvocations")
            call.accepted_at = call.started_at = None
            call.check_at = float("inf")
            self._pool.submit(self._send, call)

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

    def _count(self, name: str) -> None:
        with self._lock:
            self.stats[name] += 1

    def _forget(self, call: _Call) -> None:
        with self._lock:
            self._inflight.pop(call.ident, None)
        self._wake.set()  # a slot is free

    def _send(self, call: _Call) -> None:
        """Invoke once (botocore retries throttles and 5xx), with a bounded backoff on top for throttling."""
        for round_ in range(self.throttle_rounds + 1):
            if self._closed:
                return
            not_after = time.time() + self.event_age
            call.event["not_after"] = round(not_after, 3)
            payload = json.dumps(call.event).encode()
            try:
                fast = self._invoker.invoke(payload)
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
                if (code in THROTTLE_CODES or status == 429 or status >= 500) and round_ < self.throttle_rounds:
                    self._count("throttle_rounds")
                    time.sleep(min(30.0, 2.0 ** round_) * (0.5 + random.random() / 2))
                    continue
                return self._fail(call, RuntimeError(
                    f"invoking Lambda function {self.function_name!r} for call "
                    f"{call.event['callset']}/{call.event['call']} failed: {code or status}: {exc}"))
            except BotoCoreError as exc:  # connection errors after botocore's own retries
                return self._fail(call, RuntimeError(
                    f"cannot reach Lambda to invoke {self.function_name!r}: {exc}"))
            now = time.monotonic()
            call.invocations += 1
            call.accepted_at = now
            call.stale_at = now + (not_after - time.time()) + self.stale_grace
            # first look: when it could be overdue (run task_timeout, or gone stale unstarted), or earlier
            # to catch a marker the listings missed (written later than relist_seconds after its time), once
            # the call runs long for its kind (not every long task: each look is a request)
            call.recheck = max(self.sweep_seconds, SWEEP_FACTOR * self._typical_seconds)
            call.check_at = now + min(call.recheck, self.task_timeout, self.event_age + self.stale_grace)
            self._count("invocations")
            self._count("fast_invokes" if fast else "client_invokes")
            return

    def _fail(self, call: _Call, exc: BaseException) -> None:
        """Report a call the executor could not get run, unless a result got there first."""
        self.record_failure(call.event, exc, worker=f"lambda:{self.function_name}")
        self._count("failed")
        self._forget(call)
