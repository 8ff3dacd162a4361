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

The sending half lives in ``numpywren.executors.lambda_invoke.LambdaInvoker`` (bundles, queue,
concurrency cap, throttling), the completion half in ``numpywren.executors.lambda_monitor.LambdaMonitor``
(done-markers, direct looks, results); this class composes them with the dispatcher thread, cancel
and shutdown.
"""
from __future__ import annotations

import collections
import concurrent.futures
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import boto3
import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from numpywren import protocol
from numpywren.executors.base import Executor
from numpywren.executors.lambda_invoke import (  # noqa: F401 - names the tests and tools import from here
    BUNDLE_BYTES, BUNDLE_CALLS, SOLO_BYTES, THROTTLE_CODES, EventInvoker, LambdaInvoker, _Bundle)
from numpywren.executors.lambda_monitor import RELIST_EVERY, SWEEP_FACTOR, LambdaMonitor, _Call  # noqa: F401
from numpywren.storage import Store
from numpywren.storage.s3 import USER_AGENT

log = logging.getLogger(__name__)

#: Default seconds an event may wait in Lambda's queue (``numpywren deploy`` sets the function's maximum
#: event age to this): long enough for a burst to drain, short enough that no event outlives its driver long.
DEFAULT_EVENT_AGE = 300


class LambdaExecutor(LambdaInvoker, LambdaMonitor, Executor):
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
        self._init_monitor()
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

    def _count(self, name: str) -> None:
        with self._lock:
            self.stats[name] += 1

    def _forget(self, call: _Call) -> None:
        with self._lock:
            self._inflight.pop(call.ident, None)
        self._wake.set()  # a slot is free

    def _fail(self, call: _Call, exc: BaseException) -> None:
        """Report a call the executor could not get run, unless a result got there first."""
        self.record_failure(call.event, exc, worker=f"lambda:{self.function_name}")
        self._count("failed")
        self._forget(call)
