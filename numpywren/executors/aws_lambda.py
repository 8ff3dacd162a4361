"""AWS Lambda as the backend: one asynchronous ``invoke`` per call, completions read from S3.

The worker on Lambda is the same ``numpywren.worker.handle`` as locally (see
``numpywren.lambda_handler``). This executor only delivers events, and keeps
three promises:

* throttling (429 TooManyRequestsException) and 5xx answers are retried:
  botocore's retries back off each request with jitter (``retry_mode``
  "standard"; "adaptive" also rate-limits the whole client after a throttle,
  which protects a shared account but slows a burst of invokes to a crawl
  before it ramps up again), and a bounded outer backoff covers throttling
  that outlasts botocore's attempts;
* at most ``max_concurrency`` calls are in flight: later calls wait in a queue
  and are invoked as results of earlier ones appear in the store;
* a call with no result ``task_timeout`` seconds after Lambda accepted it
  (lost by Lambda, or killed by timeout/out of memory) is invoked again, at
  most ``max_reinvokes`` times, then reported failed. A duplicate run is
  harmless: workers write only final keys.

A call that cannot be delivered at all (unknown function, no permission) is
reported under its result key, so its future fails with the reason.
"""
from __future__ import annotations

import collections
import json
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from numpywren.executors.base import Executor
from numpywren.futures import WorkerDiedError
from numpywren.storage import Store

#: Codes that mean "slow down" rather than "this will never work".
THROTTLE_CODES = ("TooManyRequestsException", "ThrottlingException", "Throttling",
                  "EC2ThrottledException", "ENILimitReachedException")


class _Call:
    """One call's delivery state (the driver side of an event)."""

    __slots__ = ("accepted_at", "event", "invocations")

    def __init__(self, event: dict):
        self.event = event
        self.invocations = 0
        self.accepted_at: float | None = None  # monotonic time Lambda accepted the latest invoke


class LambdaExecutor(Executor):
    """Runs calls on the Lambda function ``function_name`` (deployed by ``numpywren deploy``).

    ``store`` must be an S3 store the function can read and write.
    ``task_timeout`` should exceed the function's timeout plus Lambda's queueing delay.
    ``max_concurrency`` also sizes task graphs (``workers``); keep it within the
    account's (or the function's reserved) concurrency. ``shutdown`` drops calls
    still queued, so wait for the futures first.
    """

    reports_completions = True  # the dispatcher sees every result appear (or records the failure)

    def __init__(self, function_name: str, store: Store | str | None = None, *,
                 region: str | None = None, max_concurrency: int = 1000,
                 task_timeout: float = 960.0, max_reinvokes: int = 2,
                 endpoint_url: str | None = None, invoke_threads: int = 16,
                 invoke_attempts: int = 8, retry_mode: str = "standard", throttle_rounds: int = 4,
                 poll_interval: float = 0.5):
        if not function_name:
            raise ValueError("LambdaExecutor needs the name of the deployed function (function_name=...)")
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
        if task_timeout <= 0:
            raise ValueError(f"task_timeout must be positive, got {task_timeout}")
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
        region = region or getattr(self.store, "region", None)  # default: the store's region
        self.client = boto3.session.Session().client(
            "lambda", region_name=region, endpoint_url=endpoint_url,
            config=Config(retries={"max_attempts": invoke_attempts, "mode": retry_mode},
                          max_pool_connections=invoke_threads, connect_timeout=10, read_timeout=30))
        #: Counters for tests and monitoring.
        self.stats: collections.Counter = collections.Counter()
        self._last_error: Exception | None = None
        self._queue: collections.deque[_Call] = collections.deque()
        self._inflight: dict[str, _Call] = {}  # result key -> call
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._pool = ThreadPoolExecutor(invoke_threads, thread_name_prefix="numpywren-invoke")
        self._dispatcher = threading.Thread(target=self._dispatch, name="numpywren-lambda", daemon=True)
        self._dispatcher.start()

    @property
    def workers(self) -> int:
        return self.max_concurrency

    def _invoke(self, event: dict) -> None:
        if self._closed:
            raise RuntimeError("this executor has been shut down")
        with self._lock:
            self._queue.append(_Call(event))
        self._wake.set()

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

    def _launch(self) -> None:
        """Invoke queued calls while fewer than max_concurrency are in flight."""
        while not self._closed:
            with self._lock:
                if not self._queue or len(self._inflight) >= self.max_concurrency:
                    return
                call = self._queue.popleft()
                self._inflight[call.event["result"]] = call
            self._pool.submit(self._send, call)

    def _reap(self) -> None:
        """Drop completed calls from the in-flight set; re-invoke or fail the ones lost."""
        with self._lock:
            calls = list(self._inflight.values())
        if not calls:
            return
        done = self._completed(calls)
        now = time.monotonic()
        for call in calls:
            key = call.event["result"]
            if key in done:
                self._forget(key)
                self._call_ended(call.event)
            elif call.accepted_at is not None and now - call.accepted_at > self.task_timeout:
                if call.invocations > self.max_reinvokes:
                    self._fail(call, WorkerDiedError(
                        f"call {call.event['callset']}/{call.event['call']} left no result after {call.invocations} "
                        f"invocations of Lambda function {self.function_name!r}, waiting {self.task_timeout} s "
                        f"each: lost, killed by the function timeout, or out of memory (see its CloudWatch logs)"))
                else:
                    self._count("reinvocations")
                    call.accepted_at = None
                    self._pool.submit(self._send, call)

    def _completed(self, calls: list[_Call]) -> set[str]:
        """Result keys present in the store: one listing per job, or direct checks for few calls."""
        by_prefix: dict[str, list[str]] = {}
        for call in calls:
            key = call.event["result"]
            by_prefix.setdefault(key.rpartition("/")[0] + "/", []).append(key)
        present: set[str] = set()
        for prefix, keys in by_prefix.items():
            if len(keys) <= 2:
                present.update(k for k in keys if self.store.exists(k))
            else:
                present.update(self.store.list(prefix))
        return present

    def _count(self, name: str) -> None:
        with self._lock:
            self.stats[name] += 1

    def _forget(self, key: str) -> None:
        with self._lock:
            self._inflight.pop(key, None)
        self._wake.set()  # a slot is free

    def _send(self, call: _Call) -> None:
        """Invoke once (botocore retries throttles and 5xx), with a bounded backoff on top for throttling."""
        payload = json.dumps(call.event).encode()
        for round_ in range(self.throttle_rounds + 1):
            if self._closed:
                return
            try:
                self.client.invoke(FunctionName=self.function_name, InvocationType="Event", Payload=payload)
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
            call.invocations += 1
            call.accepted_at = time.monotonic()
            self._count("invocations")
            return

    def _fail(self, call: _Call, exc: BaseException) -> None:
        """Report a call the executor could not get run, unless a result got there first."""
        self.record_failure(call.event, exc, worker=f"lambda:{self.function_name}")
        self._count("failed")
        self._forget(call.event["result"])
