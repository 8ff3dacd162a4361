"""The Lambda backend without AWS: the handler on the exact events the executor sends, the executor
against a loopback Lambda Invoke endpoint (throttling, lost calls), and deploy/teardown against moto."""
from __future__ import annotations

import calendar
import datetime
import fnmatch
import hashlib
import hmac
import json
import re
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

import numpywren
from numpywren import BigMatrix
from numpywren.worker import lambda_handler
from numpywren.dag import Task
from numpywren.executors import lambda_failures
from numpywren.executors.aws_lambda import LambdaExecutor
from numpywren.worker.lambda_handler import ForeignStoreError, handler
from numpywren.worker.ops import run_spec
from numpywren.storage import LocalStore, open_store
from numpywren.worker.handler import DEADLINE_MARGIN_SECONDS, TaskDeadlineError


@pytest.fixture(autouse=True)
def _not_on_lambda(monkeypatch):
    """Tests decide where the handler believes it runs and which store it serves."""
    monkeypatch.delenv("NUMPYWREN_STORE", raising=False)
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)


def rel_err(got, want):
    return np.linalg.norm(got - want) / np.linalg.norm(want)


class FakeContext:
    """The part of Lambda's context object the worker uses.

    Its clock starts at the worker's first question (``lazy=True``): under load, loading the function
    from the store can take seconds, which must not eat the budget a test is about.
    """

    def __init__(self, seconds_left: float, lazy: bool = False):
        self._left, self._end = seconds_left, None if lazy else time.monotonic() + seconds_left

    def get_remaining_time_in_millis(self) -> int:
        if self._end is None:
            self._end = time.monotonic() + self._left
        return int((self._end - time.monotonic()) * 1000)


def sigv4_problem(method: str, path: str, headers, body: bytes, secret: str = "testing") -> str | None:
    """Why a request's AWS Signature Version 4 does not verify (None: it does), as AWS checks it for a
    non-S3 service, written from the specification (IAM user guide, "Create a signed AWS API request"),
    not from botocore's signer: what Lambda would accept."""
    headers = {name.lower(): value for name, value in headers.items()}
    auth = headers.get("authorization") or ""
    match = re.fullmatch(r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, "
                         r"SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})", auth)
    if not match:
        return f"no SigV4 authorization: {auth!r}"
    key_id, day, region, service, signed, signature = match.groups()
    stamp = headers.get("x-amz-date") or ""
    if (key_id, region, service) != ("testing", "us-east-1", "lambda") or not stamp.startswith(day):
        return f"wrong credential scope {key_id}/{day}/{region}/{service} for X-Amz-Date {stamp!r}"
    try:
        age = time.time() - calendar.timegm(time.strptime(stamp, "%Y%m%dT%H%M%SZ"))
    except ValueError:
        return f"X-Amz-Date {stamp!r} is not a SigV4 time"
    if abs(age) > 300:
        return f"signed {age:.0f} s ago: expired, or from the future"
    names = signed.split(";")
    if names != sorted(set(names)) or "host" not in names or any(headers.get(n) is None for n in names):
        return f"signed headers {signed!r} are not sorted or do not match the headers sent"
    raw_path, _, query = path.partition("?")
    pairs = sorted(urllib.parse.parse_qsl(query, keep_blank_values=True))
    canonical = "\n".join([
        method,
        urllib.parse.quote(raw_path, safe="/~"),  # non-S3 services: the path as sent, URI-encoded again
        "&".join(f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}" for k, v in pairs),
        "".join(f"{name}:{' '.join(headers.get(name).split())}\n" for name in names),
        signed,
        hashlib.sha256(body).hexdigest()])
    scope = f"{day}/{region}/{service}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = f"AWS4{secret}".encode()
    for part in (day, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    good = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return None if hmac.compare_digest(good, signature) else "the signature does not match"


class FakeLambda:
    """Lambda's Invoke REST API on loopback: POST /2015-03-31/functions/<name>/invocations.

    Every request's SigV4 signature is verified as Lambda would (a bad one gets
    403 InvalidSignatureException and is kept in ``bad_signatures``, which the
    fixture requires empty). ``throttle`` first requests get 429 TooManyRequestsException; ``drop_first``
    accepts each call's first invocation (202) but never runs it (a lost event), ``drop_attempt`` every
    tile event of that attempt number;
    with ``run=False`` events are only recorded. Otherwise the handler runs the
    event in a thread, as Lambda would, after answering 202 (and ``queue_delay``
    seconds in Lambda's queue; with ``cpu_share`` in a process of its own, throttled to that share of a core).
    ``oom_attempt``: tile events of that attempt number are killed for memory, as Lambda kills a sandbox that
    outgrows it: nothing of ours runs, and Lambda writes its invocation record (the exact JSON it sends an
    on-failure destination, MaximumRetryAttempts 0) to ``destination`` = (S3 endpoint, bucket) under the key
    Lambda uses (numpywren.executors.lambda_failures).
    GetFunctionConcurrency and GetAccountSettings
    answer ``reserved`` (None: not set) and ``unreserved``; GetFunctionConfiguration ``memory`` and ``timeout``.
    """

    PATH = re.compile(r"^/2015-03-31/functions/([^/]+)/invocations$")

    def __init__(self, throttle: int = 0, drop_first: bool = False, run: bool = True, queue_delay: float = 0.0,
                 reserved: int | None = None, unreserved: int = 1000, drop_attempt: int | None = None,
                 memory: int = 3008, timeout: int = 900, cpu_share: float | None = None,
                 oom_attempt: int | None = None, destination: tuple[str, str] | None = None):
        self.queue_delay = queue_delay
        self.oom_attempt, self.destination = oom_attempt, destination
        self.killed: list[str] = []
        self.cpu_share = cpu_share
        self.memory, self.timeout = memory, timeout
        self.reserved, self.unreserved = reserved, unreserved
        self.ran: list[dict] = []
        self.throttle_left = throttle
        self.throttled = 0
        self.drop_first, self.drop_attempt = drop_first, drop_attempt
        self.run = run
        self.events: list[dict] = []
        self.raw: list[bytes] = []
        self.headers: list[dict] = []
        self.functions: list[str] = []
        self.dropped: list[str] = []
        self.bad_signatures: list[str] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                fake._post(self)

            def do_GET(self):
                fake._get(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, n: int, timeout: float = 120.0) -> list[dict]:
        """The first ``n`` accepted events, once they arrived: fails (instead of hanging) if they never do."""
        deadline = time.monotonic() + timeout
        while len(self.events) < n:
            assert time.monotonic() < deadline, f"{len(self.events)} of {n} events reached the fake in {timeout} s"
            time.sleep(0.01)
        return self.events[:n]

    def _signed(self, req: BaseHTTPRequestHandler, body: bytes) -> bool:
        problem = sigv4_problem(req.command, req.path, req.headers, body)
        if problem is None:
            return True
        with self.lock:
            self.bad_signatures.append(f"{req.command} {req.path}: {problem}")
        self._reply(req, 403, {"message": problem}, "InvalidSignatureException")
        return False

    def _get(self, req: BaseHTTPRequestHandler) -> None:
        if not self._signed(req, b""):
            return
        path = req.path.split("?")[0].rstrip("/")
        if path.endswith("/account-settings"):
            return self._reply(req, 200, {"AccountLimit": {"ConcurrentExecutions": self.unreserved + 100,
                                                           "UnreservedConcurrentExecutions": self.unreserved}})
        if path.endswith("/configuration"):  # GetFunctionConfiguration: what a price model needs
            return self._reply(req, 200, {"FunctionName": path.split("/")[-2], "MemorySize": self.memory,
                                          "Timeout": self.timeout, "Architectures": ["x86_64"],
                                          "Runtime": "python3.13"})
        if path.endswith("/concurrency"):
            body = {} if self.reserved is None else {"ReservedConcurrentExecutions": self.reserved}
            return self._reply(req, 200, body)
        return self._reply(req, 404, {"message": f"no route {req.path}"}, "ResourceNotFoundException")

    def _out_of_memory(self, event: dict, function: str) -> None:
        """The sandbox is killed for memory: Lambda's invocation record goes to the on-failure destination."""
        import boto3

        time.sleep(self.queue_delay)
        request = str(uuid.uuid4())
        now = time.time()
        stamp = datetime.datetime.fromtimestamp(now, datetime.timezone.utc)
        record = {"version": "1.0", "timestamp": stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z",
                  "requestContext": {"requestId": request,
                                     "functionArn": f"arn:aws:lambda:us-east-1:123456789012:function:{function}:$LATEST",
                                     "condition": "RetriesExhausted", "approximateInvokeCount": 1},
                  "requestPayload": event,
                  "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
                  "responsePayload": {"errorType": "Runtime.OutOfMemory",
                                      "errorMessage": f"RequestId: {request} Error: Runtime exited with error: "
                                                      "signal: killed"}}
        endpoint, bucket = self.destination
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").put_object(
            Bucket=bucket, Key=lambda_failures.record_key(function, now, str(uuid.uuid4())),
            Body=json.dumps(record).encode())
        with self.lock:
            self.killed.append(event["result"])

    def _run(self, event: dict, function: str = "") -> None:
        time.sleep(self.queue_delay)
        if self.cpu_share is not None:
            return self._run_throttled(event)
        status = handler(event, FakeContext(60.0))
        with self.lock:
            self.ran.append(status)

    #: CPU quota period of a throttled sandbox (Lambda's cgroup quota works the same way: run, then wait)
    QUOTA_PERIOD = 0.05

    def _run_throttled(self, event: dict) -> None:
        """The handler in its own process (one BLAS thread), given ``cpu_share`` of a core the way a CPU
        quota does it: stopped for the rest of every QUOTA_PERIOD (SIGSTOP / SIGCONT)."""
        import os
        import signal
        import subprocess
        import sys

        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]),
               **{v: "1" for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")},
               lambda_handler.MEMORY_ENV: str(self.memory)}  # as Lambda sets it in every sandbox
        code = ("import json, sys; from numpywren.worker.lambda_handler import handler; "
                "handler(json.loads(sys.stdin.read()), None)")
        proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, env=env)
        proc.stdin.write(json.dumps(event).encode())
        proc.stdin.close()
        on = self.QUOTA_PERIOD * self.cpu_share
        try:
            while proc.poll() is None:
                if self.cpu_share >= 1.0:
                    time.sleep(0.01)
                    continue
                time.sleep(on)
                proc.send_signal(signal.SIGSTOP)
                time.sleep(self.QUOTA_PERIOD - on)
                proc.send_signal(signal.SIGCONT)
        except ProcessLookupError:
            pass
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
            proc.wait()
        with self.lock:
            self.ran.append({"ok": proc.returncode == 0})

    def _post(self, req: BaseHTTPRequestHandler) -> None:
        body = req.rfile.read(int(req.headers.get("Content-Length", 0)))
        if not self._signed(req, body):
            return
        match = self.PATH.match(req.path.split("?")[0])
        if not match:
            return self._reply(req, 404, {"message": f"no route {req.path}"}, "ResourceNotFoundException")
        with self.lock:
            if self.throttle_left > 0:
                self.throttle_left -= 1
                self.throttled += 1
                return self._reply(req, 429, {"Type": "User", "message": "Rate Exceeded."},
                                   "TooManyRequestsException")
            event = json.loads(body)
            first = not any(e["result"] == event["result"] for e in self.events)
            self.events.append(event)
            self.raw.append(body)
            self.headers.append(dict(req.headers))
            self.functions.append(match.group(1))
            drop = (self.drop_first and first) or (
                self.drop_attempt is not None and event.get("task", {}).get("attempt") == self.drop_attempt)
            if drop:
                self.dropped.append(event["result"])
        self._reply(req, 202, None)
        if self.run and not drop:
            killed = self.oom_attempt is not None and event.get("task", {}).get("attempt") == self.oom_attempt
            target = self._out_of_memory if killed else self._run
            threading.Thread(target=target, args=(event, match.group(1)), daemon=True).start()

    @staticmethod
    def _reply(req, status: int, body: dict | None, error_type: str | None = None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        req.send_response(status)
        req.send_header("Content-Type", "application/json")
        req.send_header("x-amzn-RequestId", uuid.uuid4().hex)
        if error_type:
            req.send_header("x-amzn-ErrorType", error_type)
        req.send_header("Content-Length", str(len(data)))
        req.end_headers()
        req.wfile.write(data)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_lambda(monkeypatch):
    # the credentials the fakes verify signatures with, whatever the machine's environment holds
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    servers = []

    def make(**kw) -> FakeLambda:
        servers.append(FakeLambda(**kw))
        return servers[-1]

    yield make
    for s in servers:
        s.close()
    assert [bad for s in servers for bad in s.bad_signatures] == []  # what Lambda would have refused


def lambda_executor(fake: FakeLambda, store, **kw) -> LambdaExecutor:
    kw.setdefault("poll_interval", 0.05)
    return LambdaExecutor("numpywren-test", store=store, region="us-east-1", endpoint_url=fake.url, **kw)


def _gemm_task(store, rng):
    a = rng.standard_normal((96, 80))
    b = rng.standard_normal((80, 64))
    A = BigMatrix.from_numpy(a, (48, 40), store)
    B = BigMatrix.from_numpy(b, (40, 32), store)
    C = BigMatrix.create((96, 64), (48, 32), "float64", store)
    i, j = 1, 0
    pairs = tuple(((A, i, k), (B, k, j)) for k in range(A.grid[1]))
    task = Task(f"test/C{i}_{j}", "gemm", (C, i, j), pairs, flops=2.0 * 48 * 32 * 80)
    return task, C, (a @ b)[48:96, 0:32]


def test_the_fakes_signature_check_refuses_what_lambda_refuses(monkeypatch):
    """The verifier the fake endpoints use accepts botocore's signature and refuses a changed body, path, host,
    secret or header, and a stale signature."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    url = "http://127.0.0.1:8080/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A1%3Afunction%3Af%3Alive/invocations"

    def signed(secret="testing", when=None):
        request = AWSRequest("POST", url, data=b'{"a": 1}', headers={"X-Amz-Invocation-Type": "Event"})
        if when is not None:
            monkeypatch.setattr("botocore.auth.get_current_datetime", lambda: when)
        SigV4Auth(Credentials("testing", secret, "token"), "lambda", "us-east-1").add_auth(request)
        monkeypatch.undo()
        headers = dict(request.headers.items())
        headers["Host"] = "127.0.0.1:8080"
        return headers

    path = url.split("8080", 1)[1]
    good = signed()
    assert sigv4_problem("POST", path, good, b'{"a": 1}') is None
    assert sigv4_problem("POST", path, good, b'{"a": 2}') == "the signature does not match"
    assert sigv4_problem("POST", urllib.parse.unquote(path), good, b'{"a": 1}') == "the signature does not match"
    assert sigv4_problem("POST", path, dict(good, Host="127.0.0.1:8081"), b'{"a": 1}') is not None
    assert sigv4_problem("POST", path, dict(good, **{"X-Amz-Invocation-Type": "RequestResponse"}),
                         b'{"a": 1}') is not None
    assert sigv4_problem("POST", path, signed(secret="other"), b'{"a": 1}') is not None
    stale = signed(when=datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) - datetime.timedelta(hours=1))
    assert "expired" in sigv4_problem("POST", path, stale, b'{"a": 1}')


# -- (1) the handler on the exact event the executor sends --------------------------------
def test_handler_runs_exact_executor_event_gemm_tile(s3_store, fake_lambda):
    fake = fake_lambda(run=False)  # record what goes over the wire; we run it here
    task, C, want = _gemm_task(s3_store, np.random.default_rng(0))
    with lambda_executor(fake, s3_store) as ex:
        future = ex.submit_tasks([task.spec("run-test", 1, 60.0)])[0]
        fake.wait_for(1)
        assert len(fake.raw) == 1 and fake.functions == ["numpywren-test"]
        event = json.loads(fake.raw[0])
        assert event == future.event  # the wire event is the executor's event, nothing added or lost
        assert fake.headers[0].get("X-Amz-Invocation-Type") == "Event"
        assert not future.done()
        status = handler(event, FakeContext(30.0))  # what Lambda's runtime calls
        assert status["ok"] is True and status["call"] == event["call"]
        stats = future.result(timeout=10)
    assert stats["flops"] == task.flops
    assert rel_err(C.get_block(1, 0), want) < 1e-13


def test_handler_reports_deadline_instead_of_being_cut(s3_store, fake_lambda):
    fake = fake_lambda(run=False)
    task, C, _ = _gemm_task(s3_store, np.random.default_rng(1))
    with lambda_executor(fake, s3_store) as ex:
        future = ex.submit_tasks([task.spec("run-test", 1, 60.0)])[0]
        fake.wait_for(1)
        status = handler(json.loads(fake.raw[0]), FakeContext(DEADLINE_MARGIN_SECONDS / 2))
        assert status["ok"] is False
        with pytest.raises(TaskDeadlineError, match="Lambda time left"):
            future.result(timeout=10)
    assert not C.block_exists(1, 0)  # not started at all


def test_handler_reports_a_call_overrunning_the_remaining_time(s3_store, fake_lambda):
    fake = fake_lambda(run=False)
    with lambda_executor(fake, s3_store) as ex:
        future = ex.call_async(time.sleep, 30)
        fake.wait_for(1)
        start = time.monotonic()
        handler(json.loads(fake.raw[0]), FakeContext(DEADLINE_MARGIN_SECONDS + 2.0, lazy=True))
        took = time.monotonic() - start
        with pytest.raises(TaskDeadlineError, match=r"did not finish in the [12]\.\d+ s left"):
            future.result(timeout=10)
    assert took < 25  # reported before Lambda would have cut it, not after the 30 s call
    assert lambda_handler.stray_calls()  # the overrunning call is still sleeping in its thread ...


def test_handler_drops_the_sandbox_after_an_overrun_on_lambda(s3_store, fake_lambda, monkeypatch):
    fake = fake_lambda(run=False)
    exits = []
    monkeypatch.setattr(lambda_handler.os, "_exit", exits.append)
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "numpywren-test")
    monkeypatch.setenv("NUMPYWREN_STORE", s3_store.url)  # on Lambda the handler serves only this store
    with lambda_executor(fake, s3_store) as ex:
        slow, quick = ex.call_async(time.sleep, 30), ex.call_async(pow, 2, 5)
        fake.wait_for(2)
        events = {e["result"]: e for e in map(json.loads, fake.raw)}
        leftover = bool(lambda_handler.stray_calls())  # from an earlier test's overrun
        handler(events[quick.result_key], FakeContext(30.0))
        assert exits == ([1] if leftover else [])  # a clean sandbox is kept ...
        handler(events[slow.result_key], FakeContext(DEADLINE_MARGIN_SECONDS + 3.0))
        assert exits == ([1, 1] if leftover else [1])  # ... after an overrun it is dropped
        assert quick.result(timeout=10) == 32
        with pytest.raises(TaskDeadlineError):
            slow.result(timeout=10)


# -- (1b) a deployed handler serves only its own store ------------------------------------------
class Recorder:
    """An HTTP server on loopback that records every request and answers 404 (a foreign S3 endpoint)."""

    def __init__(self):
        self.requests: list[tuple[str, str, dict]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _any(self):
                recorder.requests.append((self.command, self.path, dict(self.headers)))
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _bucket_keys(s3, *buckets) -> dict[str, list[str]]:
    return {b: sorted(o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=b)
                      for o in page.get("Contents", [])) for b in buckets}


FOREIGN = ["file", "endpoint", "bucket", "sibling-prefix", "parent-prefix", "region", "result-outside-jobs",
           "func-outside-jobs"]


@pytest.mark.parametrize("case", FOREIGN)
def test_handler_refuses_events_for_another_store(case, s3_store, fake_lambda, moto_endpoint, tmp_path,
                                                 monkeypatch):
    """Each foreign event holds a runnable call (func and args copied there): the old handler ran it."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    bucket, evil_bucket = s3_store.bucket, f"nw-evil-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=evil_bucket)
    recorder = Recorder()
    # The deployed store, spelled differently from the executor's URL (slashes; region from the environment).
    monkeypatch.setenv("NUMPYWREN_STORE", f"s3://{bucket}/numpywren/?endpoint={moto_endpoint}/")
    fake = fake_lambda(run=False)
    task, C, want = _gemm_task(s3_store, np.random.default_rng(3))
    try:
        with lambda_executor(fake, s3_store) as ex:
            future = ex.call_async(run_spec, task.spec("run-test", 1, 60.0))  # a pickled call
            fake.wait_for(1)
            event = json.loads(fake.raw[0])
            foreign = {
                "file": f"file://{tmp_path / 'evil'}",
                "endpoint": f"s3://{bucket}/numpywren?endpoint={recorder.url}",
                "bucket": f"s3://{evil_bucket}/numpywren?endpoint={moto_endpoint}",
                "sibling-prefix": f"s3://{bucket}/numpywren-prod?endpoint={moto_endpoint}",
                "parent-prefix": f"s3://{bucket}?endpoint={moto_endpoint}",
                "region": f"s3://{bucket}/numpywren?endpoint={moto_endpoint}&region=eu-west-1",
            }.get(case, event["store"])
            bad = {**event, "store": foreign}
            if case == "result-outside-jobs":
                bad["result"] = "C-matrix/meta.json"
            if case == "func-outside-jobs":
                bad["func"] = bad["args"] = "uploads/payload.pkl"
            if case != "endpoint":  # make the foreign call runnable, as an attacker would
                target = LocalStore(tmp_path / "evil") if case == "file" else open_store(foreign)
                for field in ("func", "args"):
                    target.put(bad[field], s3_store.get(event[field]))
            before = _bucket_keys(s3, bucket, evil_bucket)
            files_before = sorted(p for p in tmp_path.rglob("*"))

            with pytest.raises(ForeignStoreError, match="refused: event"):
                handler(bad, FakeContext(30.0))
            assert _bucket_keys(s3, bucket, evil_bucket) == before  # nothing written, result key included
            assert sorted(p for p in tmp_path.rglob("*")) == files_before
            assert recorder.requests == []  # no (signed) request reached the foreign endpoint
            assert not future.done()

            status = handler(event, FakeContext(30.0))  # the deployed store's own event still runs
            assert status["ok"] is True
            assert future.result(timeout=10)["flops"] == task.flops
        assert rel_err(C.get_block(1, 0), want) < 1e-13
    finally:
        recorder.close()


def test_handler_refuses_a_tile_task_naming_a_matrix_in_another_store(s3_store, fake_lambda, moto_endpoint,
                                                                      monkeypatch):
    monkeypatch.setenv("NUMPYWREN_STORE", s3_store.url)
    fake = fake_lambda(run=False)
    task, C, want = _gemm_task(s3_store, np.random.default_rng(4))
    with lambda_executor(fake, s3_store) as ex:
        future = ex.submit_tasks([task.spec("run-test", 1, 60.0)])[0]
        fake.wait_for(1)
        event = json.loads(fake.raw[0])
        bad = json.loads(fake.raw[0])
        bad["task"]["m"][0]["store"] = f"s3://{s3_store.bucket}/elsewhere?endpoint={moto_endpoint}"
        with pytest.raises(ForeignStoreError, match="names a matrix in store"):
            handler(bad, FakeContext(30.0))
        assert not future.done()
        assert handler(event, FakeContext(30.0))["ok"] is True
        assert future.result(timeout=10)["flops"] == task.flops
    assert rel_err(C.get_block(1, 0), want) < 1e-13


def test_handler_on_lambda_without_numpywren_store_refuses_every_event(s3_store, fake_lambda, monkeypatch):
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "numpywren-test")
    monkeypatch.setattr(lambda_handler.os, "_exit", lambda code: None)
    fake = fake_lambda(run=False)
    with lambda_executor(fake, s3_store) as ex:
        future = ex.call_async(pow, 2, 5)
        fake.wait_for(1)
        with pytest.raises(ForeignStoreError, match="NUMPYWREN_STORE is not set"):
            handler(json.loads(fake.raw[0]), FakeContext(30.0))
        assert not s3_store.exists(future.result_key)  # fail closed: not run, nothing written


# -- (2) the executor against a loopback Lambda endpoint -------------------------------------
def test_executor_retries_throttled_invokes(s3_store, fake_lambda):
    fake = fake_lambda(throttle=2)
    with lambda_executor(fake, s3_store) as ex:
        futures = ex.map(np.linalg.norm, [np.arange(n, dtype=float) for n in range(1, 5)])
        got = ex.get_all_results(futures, timeout=60)
    want = [np.linalg.norm(np.arange(n, dtype=float)) for n in range(1, 5)]
    assert np.allclose(got, want, rtol=1e-15)
    assert fake.throttled == 2  # every throttle was answered by a retry ...
    assert len(fake.events) == 4 == ex.stats["invocations"]  # ... and each call accepted exactly once


def test_executor_outer_backoff_outlasts_botocore(s3_store, fake_lambda):
    fake = fake_lambda(throttle=2)
    with lambda_executor(fake, s3_store, invoke_attempts=1, throttle_rounds=3) as ex:
        assert ex.get_all_results([ex.call_async(pow, 3, 4)], timeout=60) == [81]
    assert fake.throttled == 2 and ex.stats["throttle_rounds"] >= 1


def test_executor_reports_throttling_that_never_ends(s3_store, fake_lambda):
    fake = fake_lambda(throttle=10**6)
    with lambda_executor(fake, s3_store, invoke_attempts=1, throttle_rounds=1) as ex:
        future = ex.call_async(pow, 3, 4)
        with pytest.raises(RuntimeError, match="TooManyRequestsException"):
            future.result(timeout=30)


def test_executor_caps_concurrency(s3_store, fake_lambda):
    fake = fake_lambda()
    with lambda_executor(fake, s3_store, max_concurrency=2) as ex:
        assert ex.workers == 2
        futures = ex.map(time.sleep, [1.0] * 4)
        fake.wait_for(2)
        assert len(fake.events) == 2  # the rest wait for a free slot
        ex.get_all_results(futures, timeout=60)
    assert len(fake.events) == 4
    spans = sorted((f.stats["start"], f.stats["end"]) for f in futures)
    most = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
    assert most <= 2


def test_executor_reinvokes_a_lost_call(s3_store, fake_lambda):
    fake = fake_lambda(drop_first=True)
    with lambda_executor(fake, s3_store, task_timeout=1.5, event_age=5, stale_grace=0.5) as ex:
        futures = ex.map(pow, [2, 3, 4], extra_args=(2,))
        assert ex.get_all_results(futures, timeout=30) == [4, 9, 16]
    # each call was re-invoked at least once (a slow re-run may be re-invoked again: harmless)
    assert len(fake.dropped) == 3 and ex.stats["reinvocations"] >= 3
    assert len(fake.events) == 3 + ex.stats["reinvocations"] == ex.stats["invocations"]


def test_executor_gives_up_on_a_call_lost_every_time(s3_store, fake_lambda):
    fake = fake_lambda(run=False)
    with lambda_executor(fake, s3_store, task_timeout=0.3, max_reinvokes=1, event_age=0.3, stale_grace=0.1) as ex:
        future = ex.call_async(pow, 2, 2)
        with pytest.raises(numpywren.WorkerDiedError, match="no result after 2 invocations"):
            future.result(timeout=30)
    assert len(fake.events) == 2


def test_matmul_on_lambda_executor_with_throttling(s3_store, fake_lambda):
    fake = fake_lambda(throttle=2)
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((120, 90)), rng.standard_normal((90, 70))
    A = BigMatrix.from_numpy(a, (60, 45), s3_store)
    B = BigMatrix.from_numpy(b, (45, 35), s3_store)
    with numpywren.executor("lambda", function_name="numpywren-test", store=s3_store, region="us-east-1",
                            endpoint_url=fake.url, max_concurrency=3, poll_interval=0.05) as ex:
        assert isinstance(ex, LambdaExecutor)
        C = numpywren.matmul(A, B, executor=ex, progress=False)
    assert rel_err(C.to_numpy(), a @ b) < 1e-13
    assert fake.throttled == 2


def test_executor_rejects_a_store_lambda_cannot_reach(local_store):
    with pytest.raises(ValueError, match="only through S3"):
        LambdaExecutor("f", store=local_store, region="us-east-1")


# -- (3) deploy / teardown against moto's IAM, Lambda and S3 --------------------------------
def _zip(tmp_path, name: str, content: str):
    import zipfile

    path = tmp_path / name
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("python/numpywren_layer.json", content)
    return path


@pytest.fixture
def aws(moto_endpoint, lambda_in_process):
    """moto's IAM, Lambda and S3; deploy's probe runs the handler in this process (conftest)."""
    import boto3

    session = boto3.session.Session(region_name="us-east-1")
    clients = {s: session.client(s, endpoint_url=moto_endpoint) for s in ("iam", "lambda", "s3", "logs")}
    bucket = f"nw-deploy-{uuid.uuid4().hex[:8]}"
    clients["s3"].create_bucket(Bucket=bucket)
    return clients, bucket, f"fn-{uuid.uuid4().hex[:8]}"


def _policy(iam, role, name):
    doc = iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
    return json.loads(doc) if isinstance(doc, str) else doc


def test_deploy_creates_least_privilege_role_layer_and_function(aws, moto_endpoint, tmp_path):
    from botocore.exceptions import ClientError

    from numpywren.deploy import HANDLER, RUNTIME, deploy, names, teardown

    c, bucket, fn = aws
    lam, n = c["lambda"], names(fn)
    layer_zip = _zip(tmp_path, "layer.zip", "v1")
    out = deploy(bucket, "team/mats", "us-east-1", function_name=fn, memory=3538, timeout=300, arch="arm64",
                 layer_zip=layer_zip, endpoint_url=moto_endpoint, log=lambda _: None)
    assert len(out["changed"]) == 4

    role = c["iam"].get_role(RoleName=n["role"])["Role"]
    trust = role["AssumeRolePolicyDocument"]
    trust = json.loads(trust) if isinstance(trust, str) else trust
    assert trust["Statement"][0]["Principal"] == {"Service": "lambda.amazonaws.com"}
    assert c["iam"].list_role_policies(RoleName=n["role"])["PolicyNames"] == [n["policy"]]
    assert c["iam"].list_attached_role_policies(RoleName=n["role"])["AttachedPolicies"] == []
    stmts = {s["Sid"]: s for s in _policy(c["iam"], n["role"], n["policy"])["Statement"]}
    assert stmts["StoreObjects"]["Resource"] == f"arn:aws:s3:::{bucket}/team/mats/*"
    assert sorted(stmts["StoreObjects"]["Action"]) == ["s3:DeleteObject", "s3:GetObject", "s3:PutObject"]
    assert stmts["StoreListing"] == {"Sid": "StoreListing", "Effect": "Allow", "Action": "s3:ListBucket",
                                     "Resource": f"arn:aws:s3:::{bucket}",
                                     "Condition": {"StringLike": {"s3:prefix": ["team/mats/", "team/mats/*",
                                                                                f"aws/lambda/async/{fn}/*"]}}}
    # Lambda's failure records (its on-failure destination is the bucket): written under its own key layout only
    assert stmts["FailureRecords"] == {"Sid": "FailureRecords", "Effect": "Allow", "Action": "s3:PutObject",
                                       "Resource": f"arn:aws:s3:::{bucket}/aws/lambda/async/{fn}/*"}
    destination = lam.get_function_event_invoke_config(FunctionName=fn).get("DestinationConfig", {})
    assert destination["OnFailure"]["Destination"] == f"arn:aws:s3:::{bucket}"
    assert all(r.endswith((f"log-group:/aws/lambda/{fn}", f"log-group:/aws/lambda/{fn}:*"))
               for r in stmts["Logs"]["Resource"])
    for s in stmts.values():  # nothing wildcarded beyond the prefix
        resources = s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]]
        assert "*" not in resources and all("*" not in a for a in np.atleast_1d(s["Action"]))

    versions = lam.list_layer_versions(LayerName=n["layer"])["LayerVersions"]
    assert [v["LayerVersionArn"] for v in versions] == [out["layer_arn"]]
    assert versions[0]["CompatibleArchitectures"] == ["arm64"]
    assert versions[0]["CompatibleRuntimes"] == [RUNTIME]

    cfg = lam.get_function_configuration(FunctionName=fn)
    assert (cfg["Runtime"], cfg["Handler"], cfg["MemorySize"], cfg["Timeout"]) == (RUNTIME, HANDLER, 3538, 300)
    assert cfg["Architectures"] == ["arm64"] and cfg["Role"] == role["Arn"]
    assert [layer["Arn"] for layer in cfg["Layers"]] == [out["layer_arn"]]
    env = cfg["Environment"]["Variables"]
    assert env["NUMPYWREN_STORE"] == f"s3://{bucket}/team/mats"
    assert env["OMP_NUM_THREADS"] == env["OPENBLAS_NUM_THREADS"] == "2"  # 3538 MB = 2 vCPUs
    assert lam.get_function_event_invoke_config(FunctionName=fn)["MaximumRetryAttempts"] == 0
    assert "Contents" not in c["s3"].list_objects_v2(Bucket=bucket)  # the staged layer zip is deleted

    # idempotent: nothing changes, nothing is duplicated
    again = deploy(bucket, "team/mats", "us-east-1", function_name=fn, memory=3538, timeout=300, arch="arm64",
                   layer_zip=layer_zip, endpoint_url=moto_endpoint, log=lambda _: None)
    assert again["changed"] == [] and again["layer_arn"] == out["layer_arn"]
    assert len(lam.list_layer_versions(LayerName=n["layer"])["LayerVersions"]) == 1
    assert [r["RoleId"] for r in c["iam"].list_roles()["Roles"] if r["RoleName"] == n["role"]] == [role["RoleId"]]

    # a new layer zip and memory size update the function in place
    newer = deploy(bucket, "team/mats", "us-east-1", function_name=fn, memory=1024, timeout=300, arch="arm64",
                   layer_zip=_zip(tmp_path, "layer2.zip", "v2"), endpoint_url=moto_endpoint, log=lambda _: None)
    assert newer["layer_arn"] != out["layer_arn"] and newer["function_arn"] == out["function_arn"]
    cfg = lam.get_function_configuration(FunctionName=fn)
    assert cfg["MemorySize"] == 1024 and cfg["Environment"]["Variables"]["OMP_NUM_THREADS"] == "1"
    assert [layer["Arn"] for layer in cfg["Layers"]] == [newer["layer_arn"]]
    assert [v["LayerVersionArn"] for v in lam.list_layer_versions(LayerName=n["layer"])["LayerVersions"]] == [
        newer["layer_arn"]]  # the old version is pruned

    removed = teardown("us-east-1", function_name=fn, bucket=bucket, endpoint_url=moto_endpoint,
                       log=lambda _: None)
    assert len(removed) == 3  # function, layer version, role
    with pytest.raises(ClientError, match="ResourceNotFound|not found"):
        lam.get_function(FunctionName=fn)
    assert lam.list_layer_versions(LayerName=n["layer"])["LayerVersions"] == []
    with pytest.raises(ClientError, match="NoSuchEntity|cannot be found"):
        c["iam"].get_role(RoleName=n["role"])
    assert teardown("us-east-1", function_name=fn, endpoint_url=moto_endpoint, log=lambda _: None) == []


def test_deploy_and_teardown_cli(aws, moto_endpoint, tmp_path, capsys):
    from numpywren import cli

    c, bucket, fn = aws
    layer_zip = _zip(tmp_path, "layer.zip", "cli")
    common = ["--region", "us-east-1", "--function-name", fn, "--endpoint-url", moto_endpoint]
    assert cli.main(["deploy", "--bucket", bucket, "--prefix", "p", "--memory", "2048", "--timeout", "120",
                     "--layer-zip", str(layer_zip), *common]) == 0
    out = capsys.readouterr().out
    printed = json.loads(out[out.index("\n{") + 1:])
    assert printed["function_arn"].endswith(f":function:{fn}") and printed["verified"] is True
    assert f"verified: a worker of {fn} wrote, read, listed and deleted a key in s3://{bucket}/p" in out
    cfg = c["lambda"].get_function_configuration(FunctionName=fn)
    assert (cfg["MemorySize"], cfg["Timeout"], cfg["Architectures"]) == (2048, 120, ["x86_64"])
    assert cli.main(["teardown", *common]) == 0
    assert fn not in [f["FunctionName"] for f in c["lambda"].list_functions()["Functions"]]


def test_deploy_rejects_settings_lambda_would_refuse(moto_endpoint, tmp_path):
    from numpywren.deploy import deploy

    with pytest.raises(ValueError, match="timeout"):
        deploy("b", "p", "us-east-1", timeout=901, layer_zip=tmp_path / "x.zip", endpoint_url=moto_endpoint)
    with pytest.raises(ValueError, match="arch"):
        deploy("b", "p", "us-east-1", arch="ppc64le", layer_zip=tmp_path / "x.zip", endpoint_url=moto_endpoint)


def test_deploy_checks_the_bucket_before_creating_anything(aws, moto_endpoint, tmp_path, capsys):
    from numpywren import cli
    from numpywren.deploy import default_blas_threads, names

    c, _bucket, fn = aws
    argv = ["deploy", "--bucket", "no-such-bucket-here", "--prefix", "p", "--region", "us-east-1",
            "--function-name", fn, "--endpoint-url", moto_endpoint, "--layer-zip", str(_zip(tmp_path, "l.zip", "x"))]
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    assert "bucket 'no-such-bucket-here' does not exist" in capsys.readouterr().err  # one line, no traceback
    assert names(fn)["role"] not in [r["RoleName"] for r in c["iam"].list_roles()["Roles"]]  # nothing created
    # Lambda's vCPUs for a memory size, rounded up: 1769 MB is one vCPU, 10240 MB six
    assert [default_blas_threads(m) for m in (128, 1769, 1770, 3008, 10240)] == [1, 1, 2, 2, 6]


def _granted(policy: dict, action: str, arn: str, s3_prefix: str | None = None) -> bool:
    """Whether one of the policy's Allow statements grants ``action`` on ``arn`` (IAM wildcard matching;
    only the condition operators deploy uses are understood: anything else fails the test)."""
    for s in policy["Statement"]:
        actions = [s["Action"]] if isinstance(s["Action"], str) else s["Action"]
        resources = [s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"]
        if action not in actions or not any(fnmatch.fnmatchcase(arn, r) for r in resources):
            continue
        condition = s.get("Condition", {})
        assert set(condition) <= {"StringLike"}, condition
        patterns = condition.get("StringLike", {}).get("s3:prefix")
        if patterns is None or (s3_prefix is not None and any(fnmatch.fnmatchcase(s3_prefix, p) for p in patterns)):
            return True
    return False


def test_role_policy_grants_the_prefix_folder_only():
    from numpywren.deploy import role_policy, staging_key

    policy = json.loads(json.dumps(role_policy("bkt", "/team/mats/", "fn", "us-east-1", "123456789012")))
    listing = next(s for s in policy["Statement"] if s["Sid"] == "StoreListing")
    assert listing["Resource"] == "arn:aws:s3:::bkt"
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["team/mats/", "team/mats/*",
                                                                 "aws/lambda/async/fn/*"]}}
    bucket = "arn:aws:s3:::bkt"
    # Lambda's failure records of this function (its on-failure destination): written and listed, nothing else
    record = "arn:aws:s3:::bkt/aws/lambda/async/fn/2026/12/06/2026-12-06T00.00.00-u"
    assert _granted(policy, "s3:PutObject", record) and _granted(policy, "s3:ListBucket", bucket, "aws/lambda/async/fn/")
    assert not _granted(policy, "s3:GetObject", record) and not _granted(policy, "s3:DeleteObject", record)
    assert not _granted(policy, "s3:PutObject", "arn:aws:s3:::bkt/aws/lambda/async/other/x")
    assert not _granted(policy, "s3:ListBucket", bucket, "aws/lambda/async/other/")
    assert _granted(policy, "s3:ListBucket", bucket, "team/mats/")
    assert _granted(policy, "s3:ListBucket", bucket, "team/mats/jobs/")
    for other in ("team/mats-prod/", "team/matsx", "team/", "", "numpywren-deploy/"):
        assert not _granted(policy, "s3:ListBucket", bucket, other), other
    assert not _granted(policy, "s3:ListBucket", bucket, None)  # no prefix at all: denied
    for action in ("s3:GetObject", "s3:PutObject", "s3:DeleteObject"):
        assert _granted(policy, action, "arn:aws:s3:::bkt/team/mats/jobs/x.pkl")
        for key in ("team/mats-prod/x", "team/x", "x", staging_key("fn-deps", "ab" * 32)):
            assert not _granted(policy, action, f"arn:aws:s3:::bkt/{key}"), (action, key)


@pytest.mark.parametrize("prefix", ["", "/", "//", "a//b", "mats/*", "mat?", "a/../b", "./a", "${aws:userid}",
                                    "numpywren-deploy", "numpywren-deploy/x"])
def test_deploy_refuses_prefixes_that_grant_more_than_one_folder(prefix, aws, moto_endpoint, tmp_path):
    from numpywren.deploy import deploy, names, role_policy

    c, bucket, fn = aws
    with pytest.raises(ValueError, match="--prefix"):
        role_policy(bucket, prefix, fn, "us-east-1", "123456789012")
    with pytest.raises(ValueError, match="--prefix"):
        deploy(bucket, prefix, "us-east-1", function_name=fn, layer_zip=_zip(tmp_path, "l.zip", "x"),
               endpoint_url=moto_endpoint, log=lambda _: None)
    assert names(fn)["role"] not in [r["RoleName"] for r in c["iam"].list_roles()["Roles"]]  # nothing created


def test_deploy_cli_refuses_the_bucket_root_in_one_line(aws, moto_endpoint, tmp_path, capsys):
    from numpywren import cli

    _c, bucket, fn = aws
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["deploy", "--bucket", bucket, "--prefix", "/", "--region", "us-east-1", "--function-name", fn,
                  "--endpoint-url", moto_endpoint, "--layer-zip", str(_zip(tmp_path, "l.zip", "x"))])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--prefix must name a folder of the bucket" in err


def test_deploy_stages_the_layer_outside_the_workers_prefix(aws, moto_endpoint, tmp_path, monkeypatch):
    from numpywren import deploy as deploy_module
    from numpywren.deploy import STAGING, deploy, names, teardown

    c, bucket, fn = aws
    n = names(fn)
    calls: list[tuple[str, dict]] = []
    make_client = deploy_module._Aws.client

    def recording_client(self, service):
        client = make_client(self, service)
        for event in ("provide-client-params.s3.PutObject", "provide-client-params.s3.DeleteObject",
                      "provide-client-params.lambda.PublishLayerVersion"):
            client.meta.events.register(event, lambda params, model, **kw: calls.append((model.name, dict(params))),
                                        unique_id=f"record-{event}")
        return client

    monkeypatch.setattr(deploy_module._Aws, "client", recording_client)
    deploy(bucket, "numpywren", "us-east-1", function_name=fn, layer_zip=_zip(tmp_path, "layer.zip", "v1"),
           endpoint_url=moto_endpoint, log=lambda _: None)
    puts = [p for name, p in calls if name == "PutObject"]
    published = [p for name, p in calls if name == "PublishLayerVersion"]
    assert len(puts) == 1 and len(published) == 1
    key = puts[0]["Key"]
    assert published[0]["Content"] == {"S3Bucket": bucket, "S3Key": key}  # the layer went through S3
    assert key.startswith(f"{STAGING}/{n['layer']}/") and not key.startswith("numpywren/")
    policy = _policy(c["iam"], n["role"], n["policy"])
    for action in ("s3:GetObject", "s3:PutObject", "s3:DeleteObject"):
        assert not _granted(policy, action, f"arn:aws:s3:::{bucket}/{key}")  # workers cannot swap it
    assert [p["Key"] for name, p in calls if name == "DeleteObject"] == [key]
    assert _bucket_keys(c["s3"], bucket) == {bucket: []}  # deleted after publishing

    c["s3"].put_object(Bucket=bucket, Key=key, Body=b"left over by an interrupted deploy")
    c["s3"].put_object(Bucket=bucket, Key=f"{STAGING}/other-fn-deps/x.zip", Body=b"another function's")
    removed = teardown("us-east-1", function_name=fn, bucket=bucket, endpoint_url=moto_endpoint, log=lambda _: None)
    assert f"s3://{bucket}/{key}" in removed
    assert _bucket_keys(c["s3"], bucket) == {bucket: [f"{STAGING}/other-fn-deps/x.zip"]}


def test_a_dropped_tile_event_is_resent_without_a_task_timeout(s3_store, fake_lambda):
    """The endpoint accepts every call's first event (202) and never runs it; the executor's own
    re-invocation is out of reach (long timeouts): the scheduler sees no lease while workers are free
    and re-sends the tasks; the product is exact."""
    fake = fake_lambda(drop_attempt=1)
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((64, 48)), rng.standard_normal((48, 64))
    A, B = BigMatrix.from_numpy(a, 32, s3_store), BigMatrix.from_numpy(b, 32, s3_store)
    with lambda_executor(fake, s3_store, max_concurrency=16, event_age=3600, sweep_seconds=3600) as ex:
        C = numpywren.matmul(A, B, executor=ex, progress=False, silence_seconds=5.0, backups=None)
    assert rel_err(C.to_numpy(), a @ b) < 1e-13
    # every first attempt was dropped and re-sent (a slow start may be re-sent too: harmless)
    assert len(fake.dropped) == C.report.tasks <= C.report.lost
    assert any("sent but not started" in f[2] for f in C.report.failures)


# -- a sandbox killed for memory: Lambda's failure record, read from the on-failure destination ------------
def test_a_call_killed_for_memory_fails_the_job_naming_memory_without_reinvoking(s3_store, fake_lambda,
                                                                                moto_endpoint):
    """Every first attempt's sandbox is killed for memory (Runtime.OutOfMemory): nothing of ours runs, Lambda
    writes its invocation record to the on-failure destination (the store's bucket), and the driver reads it:
    the job fails at once with an error naming memory, and no call is invoked a second time."""
    rng = np.random.default_rng(9)
    A = BigMatrix.from_numpy(rng.standard_normal((64, 64)), 32, s3_store, "A")
    fake = fake_lambda(oom_attempt=1, destination=(moto_endpoint, s3_store.bucket), memory=1024)
    with lambda_executor(fake, s3_store, max_reinvokes=2) as ex:
        with pytest.raises(numpywren.JobFailedError, match=r"out of memory") as failed:
            numpywren.matmul(A, A, out="C", executor=ex, backups=None, progress=False)
    assert isinstance(failed.value.__cause__, MemoryError)
    assert "1024 MB" in str(failed.value) and "Runtime.OutOfMemory" in str(failed.value)
    assert fake.killed and all(e["task"]["attempt"] == 1 for e in fake.events if e["kind"] == "tile")
    sent = [e["result"] for e in fake.events]
    assert len(sent) == len(set(sent))  # not re-invoked


def test_failure_records_of_other_events_are_not_ours():
    """The destination bucket is shared: a record whose payload is not a numpywren event is ignored, an aged-out
    event is left to the lost-call rules, and any other runtime death is a retryable WorkerDiedError."""
    from numpywren.protocol import WorkerDiedError

    assert lambda_failures.parse_record(json.dumps({"requestPayload": {"Records": []}}).encode()) is None
    assert lambda_failures.parse_record(b"not json") is None
    assert lambda_failures.failure_error("f", 512, "EventAgeExceeded", "", "") is None
    error = lambda_failures.failure_error("f", 512, "RetriesExhausted", "Runtime.ExitError", "exit status 1")
    assert isinstance(error, WorkerDiedError) and "Runtime.ExitError" in str(error)
    oom = lambda_failures.failure_error("f", 512, "RetriesExhausted", "",
                                        "RequestId: x Error: Runtime exited with error: signal: killed")
    assert isinstance(oom, MemoryError) and "512 MB" in str(oom)
    key = lambda_failures.record_key("fn", 1764979200.0, "u")  # 2025-12-06T00:00:00Z
    assert key == "aws/lambda/async/fn/2025/12/06/2025-12-06T00.00.00-u"
    assert lambda_failures.records_cursor("fn", 1764979200.0) < key
