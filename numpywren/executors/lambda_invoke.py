"""Asynchronous Lambda invokes at under half of botocore's CPU per call: the driver's main per-task cost.

botocore's client spends ~1.5 ms of CPU per ``invoke`` here (twenty event hooks,
serializing, the retry handler, parsing a reply, a URL parsed twice), about 3/4
of the driver's CPU per started task (benchmarks/lambda_driver.py). Yet an
asynchronous invoke of one function is one fixed request: a POST of the event to
the URL botocore builds for it, header ``X-Amz-Invocation-Type: Event``, answered
``202 Accepted`` with no body. ``EventInvoker`` sends the first invoke through
the client and records what it sent (a ``before-send`` hook: the URL, and the
region and service of its signature; nothing about the endpoint is re-derived
here); every later invoke is that request signed by botocore's own SigV4 signer
with the session's credentials (refreshed as botocore refreshes them) and sent on
a urllib3 connection pool. Anything but 202 (a throttle, an error, a connection
failure) sends the call again through the client, so retries, backoff, error
codes and messages are botocore's; the fast path then rests for
``REST_SECONDS``. A request that failed after it was sent may have been
accepted: as with botocore's own retries, the call can then run twice, which is
harmless (workers write only final keys; see numpywren.protocol).

The fast path is used only where it sends what the client would and behaves as
it does (``why_not_fast`` names the reason otherwise): no proxy applies to the
endpoint, no client certificate, no TCP keep-alive option, no ``adaptive`` retry
mode (its client-wide rate limiter is a hook the fast path would skip), and not
inside a Lambda function (botocore adds the trace header Lambda's recursive-loop
detection reads). TLS is verified against the CA bundle botocore would use
(``AWS_CA_BUNDLE``/``ca_bundle``, else ``REQUESTS_CA_BUNDLE``, else botocore's
default). The client must be this invoker's own: it learns from the first
asynchronous invoke the client sends.

Above it, ``LambdaInvoker`` is the sending half of ``numpywren.executors.aws_lambda.LambdaExecutor``
(the Lithops "invoker" role), an object the executor owns: argument bundles and their uploads, the
queue of calls waiting for a free slot (in the executor's table of calls,
numpywren.executors.lambda_calls), concurrency capped to what Lambda grants, and each send with its
outer throttling backoff.
"""
from __future__ import annotations

import concurrent.futures
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Callable
import logging
import os
import random
import re
import threading
import time

import urllib3
from botocore.auth import SigV4Auth
from botocore.exceptions import BotoCoreError, ClientError
from botocore.awsrequest import AWSRequest
from botocore.httpsession import get_cert_path
from botocore.utils import get_environ_proxies

from numpywren import protocol
from numpywren.executors.lambda_calls import Deliveries, _Call
from numpywren.serialize import dumps
from numpywren.storage import Store

log = logging.getLogger(__name__)

#: Seconds the fast path rests after Lambda refused one of its requests (the client's retries take over).
REST_SECONDS = 1.0
#: Codes that mean "slow down" rather than "this will never work".
THROTTLE_CODES = ("TooManyRequestsException", "ThrottlingException", "Throttling",
                  "EC2ThrottledException", "ENILimitReachedException")
#: A ``map``'s arguments go up in bundles of at most this many calls and bytes; a call whose pickled
#: arguments exceed SOLO_BYTES gets its own object (a worker reads its whole bundle: keep that small).
BUNDLE_CALLS = 64
BUNDLE_BYTES = 256 * 1024
SOLO_BYTES = 16 * 1024


def ca_bundle(session) -> str:
    """The CA bundle botocore verifies TLS with: the session's ``ca_bundle`` (AWS_CA_BUNDLE), else
    REQUESTS_CA_BUNDLE, else its default (certifi's)."""
    return get_cert_path(session.get_config_variable("ca_bundle") or os.environ.get("REQUESTS_CA_BUNDLE") or True)


class EventInvoker:
    """``invoke(payload)``: one asynchronous invoke of ``function_name``; raises what ``client.invoke`` raises.

    ``session`` is the botocore session ``client`` was made from (credentials, CA bundle); timeouts, pool size
    and User-Agent are the client's.
    """

    def __init__(self, session, client, function_name: str):
        self._session, self._client, self._function = session, client, function_name
        self._url: str | None = None   # learned from the client's first asynchronous invoke ...
        self._target = ""              # ... its path and query, what the request line carries
        self._scope = ("", "")         # ... and the region and service its signature named
        self._pool = None
        self._rest_until = 0.0
        self._lock = threading.Lock()
        self.why_not_fast = self._obstacle(client)
        if self.why_not_fast:
            log.debug("asynchronous invokes go through botocore's client: %s", self.why_not_fast)
        else:
            client.meta.events.register("before-send.lambda.Invoke", self._learn)

    @staticmethod
    def _obstacle(client) -> str | None:
        """Why the fast path would not send what the client sends, or not behave as it does (None: nothing)."""
        config = client.meta.config
        if config.proxies or get_environ_proxies(client.meta.endpoint_url):
            return "a proxy applies to the Lambda endpoint"
        if config.client_cert:
            return "the client presents a certificate"
        if config.tcp_keepalive:
            return "TCP keep-alive is configured"
        if (config.retries or {}).get("mode") == "adaptive":
            return "adaptive retry mode rate-limits every request of the client"
        if "AWS_LAMBDA_FUNCTION_NAME" in os.environ:
            return "inside Lambda botocore adds the trace header of recursive-loop detection"
        return None

    def invoke(self, payload: bytes) -> bool:
        """Deliver the event; True if the fast path did, False if the client did."""
        if self._url is not None and time.monotonic() >= self._rest_until and self._send_fast(payload):
            return True
        self._client.invoke(FunctionName=self._function, InvocationType="Event", Payload=payload)
        return False

    def _learn(self, request, **_) -> None:
        """before-send hook: remember an asynchronous invoke as the client sent it (and send it unchanged)."""
        if self._url is not None or request.headers.get("X-Amz-Invocation-Type") not in ("Event", b"Event"):
            return
        auth = request.headers.get("Authorization") or b""
        scope = re.search(r"Credential=[^/,]+/\d{8}/([^/,]+)/([^/,]+)/aws4_request",
                          auth.decode() if isinstance(auth, bytes) else auth)
        if scope is None:
            return  # not signed with SigV4 as expected: stay with the client
        config = self._client.meta.config
        tls = {"ca_certs": ca_bundle(self._session)} if request.url.startswith("https:") else {}
        pool = urllib3.connection_from_url(
            request.url, maxsize=config.max_pool_connections,
            timeout=urllib3.Timeout(connect=config.connect_timeout, read=config.read_timeout), **tls)
        with self._lock:
            if self._url is None:
                self._pool, self._target = pool, urllib3.util.parse_url(request.url).request_uri
                self._scope = scope.groups()
                self._url = request.url

    def _send_fast(self, payload: bytes) -> bool:
        """Sign and send; True if Lambda accepted the event (202)."""
        request = AWSRequest("POST", self._url, data=payload, headers={
            "X-Amz-Invocation-Type": "Event", "User-Agent": self._client.meta.config.user_agent})
        credentials = self._session.get_credentials()
        if credentials is None:
            return False  # the client raises NoCredentialsError with its own message
        region, service = self._scope
        SigV4Auth(credentials.get_frozen_credentials(), service, region).add_auth(request)
        try:
            reply = self._pool.urlopen("POST", self._target, body=payload, headers=dict(request.headers.items()),
                                       retries=False, redirect=False)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            log.debug("fast invoke failed (%r): sending it through the client", exc)
            reply = None
        if reply is not None and reply.status == 202:
            return True
        if reply is not None:
            log.debug("fast invoke answered %d: sending it through the client", reply.status)
        self._rest_until = time.monotonic() + REST_SECONDS
        return False

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()


class _Bundle:
    """The pickled arguments of consecutive calls of one callset, uploaded as one object once full."""

    __slots__ = ("key", "parts", "size", "upload")

    def __init__(self, key: str):
        self.key = key
        self.parts: list[bytes] = []
        self.size = 0
        self.upload: concurrent.futures.Future = concurrent.futures.Future()  # done once uploaded


class LambdaInvoker:
    """Sends the calls of one executor to Lambda function ``function_name``.

    Turns calls into events with their arguments uploaded (alone, or in the callset's bundle), queues
    them in ``calls``, and sends them (``EventInvoker``) while fewer than ``max_concurrency`` are in
    flight. ``accepted(call, not_after, now)`` is told of every send Lambda accepted, ``fail(call, exc)``
    of a call that cannot be sent; ``budget()`` is the run's numpywren.budget.Budget (or None), asked
    before every send.
    """

    def __init__(self, calls: Deliveries, store: Store, session, client, function_name: str, *,
                 max_concurrency: int, event_age: float, throttle_rounds: int, invoke_threads: int,
                 upload_threads: int, accepted: Callable[[_Call, float, float], None],
                 fail: Callable[[_Call, BaseException], None], budget: Callable[[], object]):
        self.calls, self.store, self.client, self.function_name = calls, store, client, function_name
        self.max_concurrency, self.event_age, self.throttle_rounds = max_concurrency, event_age, throttle_rounds
        self._accepted, self._fail, self._budget = accepted, fail, budget
        self.events = EventInvoker(session, client, function_name)
        self._uploading: dict[str, object] = {}  # result key -> the upload of its arguments
        self._bundles: dict[str, _Bundle] = {}  # callset -> its argument bundle still filling
        self._pool = ThreadPoolExecutor(invoke_threads, thread_name_prefix="numpywren-invoke")
        self._uploads = ThreadPoolExecutor(upload_threads, thread_name_prefix="numpywren-upload")
        self.closed = False

    @property
    def why_not_fast(self) -> str | None:
        """Why invokes go through botocore's client (None: the fast path is on); see ``EventInvoker``."""
        return self.events.why_not_fast

    def close(self) -> None:
        """Stop sending: queued sends are dropped, sends under way finish."""
        self.closed = True
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._uploads.shutdown(wait=True, cancel_futures=True)
        self.events.close()

    def cap_concurrency(self) -> int | None:
        """Cap ``max_concurrency`` to the function's reserved concurrency, else the account's unreserved one;
        return what Lambda grants (None: unknown)."""
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
            return None
        if granted < 1:
            raise ValueError(f"Lambda function {self.function_name!r} can run no call: {source} is {granted} "
                             f"(put-function-concurrency, or delete the function's concurrency limit)")
        if granted < self.max_concurrency:
            log.warning("max_concurrency=%d exceeds %s (%d): using %d; ask AWS for a higher quota "
                        "(Service Quotas, 'Concurrent executions') to run more at once",
                        self.max_concurrency, source, granted, granted)
            self.max_concurrency = granted
        return granted

    def enqueue(self, event: dict) -> None:
        """Queue the call of ``event``; it is sent once its arguments are up and a slot is free."""
        if self.closed:
            raise RuntimeError("this executor has been shut down")
        event["done"] = True  # ask the worker for a done-marker (completion discovery, see the module doc)
        upload = self._uploading.pop(event["result"], None)
        with self.calls.lock:
            self.calls.queue.append(_Call(event, upload))
        self.calls.wake.set()

    def drop_queued(self, chosen) -> list[_Call]:
        """Take the queued calls whose event ``chosen`` accepts out of the queue (their uploads cancelled)."""
        dropped = self.calls.take_queued(chosen)
        for call in dropped:
            if call.upload is not None:
                call.upload.cancel()
        return dropped

    def call_event(self, callset: str, func_key: str, index: int, args: tuple, kwargs: dict,
                    env: dict | None = None) -> dict:
        """Pickle the arguments now (later changes to them do not matter); upload them on a thread, alone
        if large, else in the callset's open bundle (uploaded once full, or when the map is delivered)."""
        call = f"{index:05d}"
        data = dumps((tuple(args), dict(kwargs)))
        if len(data) > SOLO_BYTES:
            args_key = protocol.args_key(callset, call)
            event = protocol.call_event(self.store.url, callset, call, func_key, args_key, env=env)
            upload = self._uploads.submit(self.store.put, args_key, data)
            upload.add_done_callback(lambda _: self.calls.wake.set())
            self._uploading[event["result"]] = upload
            return event
        bundle = self._bundles.get(callset)
        if bundle is not None and (len(bundle.parts) >= BUNDLE_CALLS or bundle.size + len(data) > BUNDLE_BYTES):
            self.close_bundle(callset)
            bundle = None
        if bundle is None:
            bundle = self._bundles[callset] = _Bundle(protocol.args_bundle_key(callset, call))
        event = protocol.call_event(self.store.url, callset, call, func_key, bundle.key, env=env,
                                    args_at=(bundle.size, len(data)))
        bundle.parts.append(data)
        bundle.size += len(data)
        self._uploading[event["result"]] = bundle.upload
        return event

    def close_bundle(self, callset: str) -> None:
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
            self.calls.wake.set()

        self._uploads.submit(upload)

    def launch(self) -> None:
        """Invoke queued calls (in order, once their arguments are uploaded) while slots are free."""
        calls = self.calls
        while not self.closed:
            with calls.lock:
                if not calls.queue or len(calls.inflight) >= self.max_concurrency:
                    return
                call = calls.queue[0]
                if call.upload is not None and not call.upload.done():
                    return  # its upload's callback wakes us
                calls.queue.popleft()
                calls.inflight[call.ident] = call
            if call.upload is not None and call.upload.exception() is not None:
                self._fail(call, RuntimeError(f"uploading the arguments of call {call.event['callset']}/"
                                              f"{call.event['call']} failed: {call.upload.exception()!r}"))
                continue
            call.upload = None
            self._pool.submit(self._send, call)

    def resend(self, call: _Call) -> None:
        """Send ``call`` again (the monitor found it lost), on the invoke pool."""
        self._pool.submit(self._send, call)

    def _send(self, call: _Call) -> None:
        """Invoke once (botocore retries throttles and 5xx), with a bounded backoff on top for throttling."""
        budget = self._budget()
        if budget is not None and not budget.admit(call.event):  # a send (first or again) the budget cannot hold
            return self._fail(call, budget.refusal())
        for round_ in range(self.throttle_rounds + 1):
            if self.closed:
                return
            not_after = time.time() + self.event_age
            call.event["not_after"] = round(not_after, 3)
            payload = json.dumps(call.event).encode()
            try:
                fast = self.events.invoke(payload)
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
                if (code in THROTTLE_CODES or status == 429 or status >= 500) and round_ < self.throttle_rounds:
                    self.calls.count("throttle_rounds")
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
            self._accepted(call, not_after, now)
            self.calls.count("invocations")
            self.calls.count("fast_invokes" if fast else "client_invokes")
            return
