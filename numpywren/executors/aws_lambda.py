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
  again, at most ``max_reinvokes`` times, then reported failed; a call Lambda
  reports failed to its on-failure destination (the store's bucket:
  numpywren.executors.lambda_failures) fails at once, out of memory as a
  MemoryError, which no retry repeats. A duplicate
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

The executor owns two objects in the roles Lithops separates, and the table of calls they share
(numpywren.executors.lambda_calls): its invoker (``numpywren.executors.lambda_invoke.LambdaInvoker``:
bundles, queue, concurrency cap, sends and throttling) and its completion monitor
(``numpywren.executors.lambda_monitor.LambdaMonitor``: done-markers, direct looks, re-sends, results).
This class runs the dispatcher thread that drives both, and keeps the executor contract: futures,
cancel, failures, the budget, shutdown.
"""
from __future__ import annotations

import concurrent.futures
import logging
import threading

import boto3
import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from numpywren import protocol
from numpywren.executors.base import Executor
from numpywren.executors.lambda_calls import Deliveries, _Call
from numpywren.executors.lambda_invoke import (  # noqa: F401 - names the tests and tools import from here
    BUNDLE_BYTES, BUNDLE_CALLS, SOLO_BYTES, THROTTLE_CODES, EventInvoker, LambdaInvoker, _Bundle)
from numpywren.executors.lambda_monitor import RELIST_EVERY, SWEEP_FACTOR, LambdaMonitor  # noqa: F401
from numpywren.futures import Future
from numpywren.storage import Store
from numpywren.storage.s3 import USER_AGENT, S3Store

log = logging.getLogger(__name__)

#: Default seconds an event may wait in Lambda's queue (``numpywren deploy`` sets the function's maximum
#: event age to this): long enough for a burst to drain, short enough that no event outlives its driver long.
DEFAULT_EVENT_AGE = 300


class LambdaExecutor(Executor):
    """Runs calls on the Lambda function ``function_name`` (deployed by ``numpywren deploy``).

    ``store`` must be an S3 store the function can read and write.
    ``task_timeout`` should exceed the function's timeout (it counts from a call's start).
    ``max_concurrency`` also sizes task graphs (``workers``); it is capped to the
    concurrency Lambda grants (``check_concurrency``). ``event_age`` (seconds) is
    how long an event may wait in Lambda's queue before the handler drops it;
    ``stale_grace`` covers clock skew between driver and Lambda. ``failure_records``: read the
    records Lambda writes to the function's on-failure destination, the store's bucket
    (numpywren.executors.lambda_failures: a sandbox killed for memory fails its call at once, as a
    MemoryError naming the function's memory, instead of being re-invoked into the same death). ``shutdown``
    drops calls still queued, so wait for the futures first.
    """

    reports_completions = True  # the dispatcher sees every result appear (or records the failure)
    #: a run's numpywren.budget.Budget while it runs with max_cost (set by numpywren.jobs.run): every send asks it
    budget = None
    #: the platform profile (name, numpywren.sim_params.Platform, or a calibrated profile) costs are predicted with
    platform = "lambda"

    def __init__(self, function_name: str, store: Store | str | None = None, *,
                 region: str | None = None, max_concurrency: int = 1000,
                 task_timeout: float = 960.0, max_reinvokes: int = 2,
                 endpoint_url: str | None = None, invoke_threads: int = 16, upload_threads: int = 16,
                 invoke_attempts: int = 8, retry_mode: str = "standard", throttle_rounds: int = 4,
                 poll_interval: float = 0.5, event_age: float = DEFAULT_EVENT_AGE, stale_grace: float = 10.0,
                 relist_seconds: float = 5.0, sweep_seconds: float = 30.0, check_concurrency: bool = True,
                 failure_records: bool = True):
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
        self.task_timeout = task_timeout
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
        self._calls = Deliveries()
        #: Counters for tests and monitoring.
        self.stats = self._calls.stats
        self._lock, self._inflight = self._calls.lock, self._calls.inflight  # (tests look at these)
        self.wakeup = threading.Event()  # futures.wait sleeps on it: it reads no store for tracked futures
        self._monitor = LambdaMonitor(
            self._calls, self.store, self.session, function_name=function_name, poll_interval=poll_interval,
            relist_seconds=float(relist_seconds), sweep_seconds=float(sweep_seconds), task_timeout=task_timeout,
            event_age=float(event_age), stale_grace=float(stale_grace), max_reinvokes=max_reinvokes,
            on_end=self._ended, fail=self._fail, resend=lambda call: self._invoker.resend(call))
        if failure_records and hasattr(self.store, "bucket"):  # Lambda's on-failure destination is the store's bucket (numpywren deploy)
            self._monitor.failures = S3Store(self.store.bucket, "", endpoint_url=self.store.endpoint_url,
                                             region=getattr(self.store, "region", None), check=False)
            self._monitor.memory_mb = lambda: self.worker_memory_mb
        # asynchronous invokes are sent without the client's per-call machinery (numpywren.executors.
        # lambda_invoke: under half the CPU), which hands anything but "accepted" back to the client
        self._invoker = LambdaInvoker(
            self._calls, self.store, session, self.client, function_name, max_concurrency=max_concurrency,
            event_age=float(event_age), throttle_rounds=throttle_rounds, invoke_threads=invoke_threads,
            upload_threads=upload_threads, accepted=self._monitor.accepted, fail=self._fail,
            budget=lambda: self.budget)
        #: What Lambda grants (None: unknown), read at start.
        self.granted_concurrency: int | None = None
        if check_concurrency:
            try:
                self.granted_concurrency = self._invoker.cap_concurrency()
            except BaseException:
                self._invoker.close()
                raise
        self._last_error: Exception | None = None
        self._closed = False
        self._dispatcher = threading.Thread(target=self._dispatch, name="numpywren-lambda", daemon=True)
        self._dispatcher.start()

    @property
    def max_concurrency(self) -> int:
        """Calls in flight at most (capped at start to what Lambda grants)."""
        return self._invoker.max_concurrency

    @property
    def _typical_seconds(self) -> float:  # (tests set it: the monitor's average call duration)
        return self._monitor.typical_seconds

    @_typical_seconds.setter
    def _typical_seconds(self, seconds: float) -> None:
        self._monitor.typical_seconds = seconds

    def _check(self, call: _Call, now: float) -> None:  # (tests call it: the monitor's look at one call)
        self._monitor.check(call, now)

    @property
    def workers(self) -> int:
        return self.max_concurrency

    def _configuration(self) -> dict:
        """The function's configuration (lambda:GetFunctionConfiguration), read once."""
        if getattr(self, "_function_configuration", None) is None:
            self._function_configuration = self.client.get_function_configuration(FunctionName=self.function_name)
        return self._function_configuration

    @property
    def worker_memory_mb(self) -> float | None:
        """The function's configured memory (MemorySize, MB): a plan whose largest task needs more is refused
        before it runs (numpywren.memory). None, with a warning once, if Lambda will not say."""
        if getattr(self, "_memory_mb", False) is False:
            try:
                self._memory_mb = float(self._configuration()["MemorySize"])
            except (ClientError, BotoCoreError, KeyError, TypeError, ValueError) as exc:
                self._memory_mb = None
                log.warning("memory of Lambda function %r unknown (lambda:GetFunctionConfiguration: %s): plans "
                            "are not checked against it", self.function_name, exc)
        return self._memory_mb

    def price_model(self):
        """What a call costs (numpywren.budget.PriceModel): the function's memory, architecture and timeout,
        read once from Lambda (lambda:GetFunctionConfiguration)."""
        from numpywren.budget import PriceModel

        if getattr(self, "_price", None) is None:
            try:
                conf = self._configuration()
            except (ClientError, BotoCoreError) as exc:
                raise ValueError(f"max_cost needs the memory and timeout of Lambda function "
                                 f"{self.function_name!r} (lambda:GetFunctionConfiguration): {exc}") from exc
            self._price = PriceModel(int(conf["MemorySize"]), (conf.get("Architectures") or ["x86_64"])[0],
                                     float(conf["Timeout"]), self.platform)
        return self._price

    def _drop_queued(self, chosen) -> int:
        """Calls not yet invoked (``cancel`` and ``Future.cancel``, in the base). Calls already invoked cannot
        be recalled from Lambda: they run, and the caller drains them."""
        dropped = self._invoker.drop_queued(chosen)
        for call in dropped:
            self.record_failure(call.event, concurrent.futures.CancelledError(
                f"call {call.event['callset']}/{call.event['call']} was cancelled before it was invoked"),
                worker=f"lambda:{self.function_name}")
        return len(dropped)

    def pending(self) -> int:
        """Calls queued or in flight (not yet seen completed)."""
        return self._calls.pending()

    # -- the executor contract, over the invoker and the monitor ------------------------------
    def _invoke(self, event: dict) -> None:
        if self._closed:
            raise RuntimeError("this executor has been shut down")
        self._invoker.enqueue(event)

    def _call_event(self, callset: str, func_key: str, index: int, args: tuple, kwargs: dict,
                    env: dict | None = None) -> dict:
        return self._invoker.call_event(callset, func_key, index, args, kwargs, env)

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
                self._invoker.close_bundle(callset)

    def _submit_call(self, callset: str, *args, **kwargs) -> Future:
        try:
            return super()._submit_call(callset, *args, **kwargs)
        finally:
            self._invoker.close_bundle(callset)

    def _future(self, event: dict, on_done=None) -> Future:
        return self._monitor.track(super()._future(event, on_done))

    def _call_ended(self, event: dict, payload: dict | None = None) -> None:
        self._monitor.hand_over(event, payload)
        super()._call_ended(event)
        self.wakeup.set()

    def shutdown(self) -> None:
        """Stop delivering: queued calls are dropped, calls already on Lambda finish there."""
        if self._closed:
            return
        self._closed = self._invoker.closed = True  # no new call queued, no send started from now on
        super().shutdown()
        self._calls.wake.set()
        self._dispatcher.join(timeout=5)
        self._invoker.close()
        self._monitor.untrack_all()  # no longer tracked: they poll the store again
        self.wakeup.set()
        try:  # the markers matter only while this driver runs (store gc removes any written later)
            self.store.delete_prefix(protocol.done_prefix(self.session))
        except Exception as exc:  # noqa: BLE001
            log.debug("could not delete the done-markers of session %s: %s", self.session, exc)

    # -- the dispatcher thread ---------------------------------------------------
    def _dispatch(self) -> None:
        wake, poll = self._calls.wake, self._monitor.poll_interval
        while not self._closed:
            wake.wait(poll)
            wake.clear()
            try:
                self._monitor.reap()
                self._invoker.launch()
            except Exception as exc:  # noqa: BLE001 - e.g. S3 briefly unreachable: try again next round
                self._calls.count("dispatch_errors")
                self._last_error = exc
                log.debug("dispatcher round failed: %r", exc)

    def _ended(self, call: _Call, payload: dict | None) -> None:
        """The monitor saw ``call`` end (``payload``: the result its marker carried, if any)."""
        if self.budget is not None and payload is not None:  # before its slot frees: the next send knows
            self.budget.settle(call.event["result"], payload)
        self._calls.forget(call)
        self._call_ended(call.event, payload)

    def _fail(self, call: _Call, exc: BaseException) -> None:
        """Report a call the executor could not get run, unless a result got there first."""
        self.record_failure(call.event, exc, worker=f"lambda:{self.function_name}")
        self._calls.count("failed")
        self._calls.forget(call)
