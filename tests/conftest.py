"""Shared fixtures: a LocalStore, a real S3 HTTP endpoint (moto server) on loopback, executors."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid

import pytest

import numpywren
from numpywren.storage import LocalStore, open_store


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def moto_endpoint():
    """A moto S3 server on a free loopback port, reached over real HTTP through boto3.

    It runs in its own process so that serving the workers' requests never
    competes with the test driver for the GIL.
    """
    for var, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        os.environ.setdefault(var, value)  # worker processes inherit these
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=1)
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"the moto server did not start on {url}") from None
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def s3_store(moto_endpoint):
    import boto3

    bucket = f"nw-test-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    return open_store(f"s3://{bucket}/numpywren?endpoint={moto_endpoint}")


@pytest.fixture
def inline(tmp_path):
    """Two in-process workers on a fresh LocalStore (a test file may define its own ``inline``)."""
    from numpywren.executors.inline import InlineExecutor

    ex = InlineExecutor(workers=2, store=LocalStore(tmp_path / "store"))
    yield ex
    ex.shutdown()


@pytest.fixture
def local_store(tmp_path):
    return LocalStore(tmp_path / "store")


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    """Each test using this runs once on a LocalStore and once on the moto S3 server."""
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    return request.getfixturevalue("s3_store")


@pytest.fixture(scope="session")
def workers():
    """A pool of two local worker processes shared by the session (its store is per test)."""
    return 2


@pytest.fixture
def executor(store):
    ex = numpywren.LocalExecutor(workers=2, store=store)
    yield ex
    ex.shutdown()


@pytest.fixture
def local_executor(local_store):
    ex = numpywren.LocalExecutor(workers=2, store=local_store)
    yield ex
    ex.shutdown()


class LambdaInProcess:
    """What ``numpywren deploy`` asks of Lambda's Invoke, answered here: moto's Lambda cannot run
    functions, so a hook on deploy's Lambda clients runs ``numpywren.worker.lambda_handler.handler`` in this
    process on the exact payload, with the function's own ``NUMPYWREN_STORE`` (read back from moto) and
    S3 at the moto endpoint, and answers as Lambda does (``FunctionError`` for an exception).

    ``deny_s3(n)``: the next ``n`` S3 requests of the handler's store get 403 AccessDenied (``None``:
    all of them), the way a role whose policy has not propagated yet is answered; ``denied`` counts them.
    ``refuse_role(n)``: the next ``n`` CreateFunction/UpdateFunctionConfiguration requests get Lambda's
    "role cannot be assumed" (``None``: all), as while a new role propagates; ``refused`` counts them.
    """

    def __init__(self, moto_endpoint: str, monkeypatch):
        self.moto_endpoint = moto_endpoint
        self.monkeypatch = monkeypatch
        self.invocations: list[dict] = []
        self.deny_left: int | None = 0
        self.denied = 0
        self.refuse_left: int | None = 0
        self.refused = 0

    def deny_s3(self, n: int | None) -> None:
        self.deny_left = n

    def refuse_role(self, n: int | None) -> None:
        self.refuse_left = n

    def _refuse(self, model, **kwargs):
        from botocore.awsrequest import AWSResponse

        if self.refuse_left is not None and self.refuse_left <= 0:
            return None
        if self.refuse_left is not None:
            self.refuse_left -= 1
        self.refused += 1
        return (AWSResponse("http://refused", 400, {}, None),
                {"Error": {"Code": "InvalidParameterValueException",
                           "Message": "The role defined for the function cannot be assumed by Lambda."},
                 "ResponseMetadata": {"HTTPStatusCode": 400}})

    def _deny(self, model, **kwargs):
        from botocore.awsrequest import AWSResponse

        if self.deny_left is not None and self.deny_left <= 0:
            return None
        if self.deny_left is not None:
            self.deny_left -= 1
        self.denied += 1
        return (AWSResponse("http://denied", 403, {}, None),
                {"Error": {"Code": "AccessDenied", "Message": "Access Denied"},
                 "ResponseMetadata": {"HTTPStatusCode": 403}})

    def attach(self, client) -> None:
        client.meta.events.register("before-call.lambda.Invoke", lambda params, **kw: self._invoke(client, params),
                                    unique_id="numpywren-tests-invoke-in-process")
        for operation in ("CreateFunction", "UpdateFunctionConfiguration"):
            client.meta.events.register(f"before-call.lambda.{operation}", self._refuse,
                                        unique_id=f"numpywren-tests-refuse-{operation}")

    def _invoke(self, client, params):
        import io
        import json
        from urllib.parse import unquote

        from botocore.awsrequest import AWSResponse
        from botocore.response import StreamingBody

        from numpywren.worker import lambda_handler

        name = unquote(params["url_path"].split("/functions/", 1)[1].split("/", 1)[0])
        env = client.get_function_configuration(FunctionName=name)["Environment"]["Variables"]
        event = json.loads(params["body"])
        self.invocations.append(event)
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("NUMPYWREN_STORE", env["NUMPYWREN_STORE"])
            mp.setenv("NUMPYWREN_S3_ENDPOINT", self.moto_endpoint)
            mp.setenv("AWS_LAMBDA_FUNCTION_NAME", name)
            store = lambda_handler._deployed_store(*lambda_handler.store_identity(env["NUMPYWREN_STORE"]))
            store.client.meta.events.register("before-call.s3", self._deny, unique_id="numpywren-tests-deny")
            try:
                body, error = json.dumps(lambda_handler.handler(event, None)).encode(), None
            except Exception as exc:  # noqa: BLE001 - Lambda reports it as a function error
                body = json.dumps({"errorType": type(exc).__name__, "errorMessage": str(exc)}).encode()
                error = "Unhandled"
        parsed = {"StatusCode": 200, "Payload": StreamingBody(io.BytesIO(body), len(body))}
        if error:
            parsed["FunctionError"] = error
        return AWSResponse(params["url"], 200, {}, None), parsed


@pytest.fixture
def lambda_in_process(moto_endpoint, monkeypatch):
    """deploy's Invoke requests run the handler in this process (see LambdaInProcess); waits are counted."""
    from numpywren import deploy as deploy_module

    fake = LambdaInProcess(moto_endpoint, monkeypatch)
    make_client = deploy_module._Aws.client

    def client(self, service):
        made = make_client(self, service)
        if service == "lambda":
            fake.attach(made)
        return made

    fake.sleeps: list[float] = []
    monkeypatch.setattr(deploy_module._Aws, "client", client)
    monkeypatch.setattr(deploy_module, "_sleep", fake.sleeps.append)
    yield fake


@pytest.fixture
def aws(moto_endpoint, lambda_in_process, monkeypatch):
    """An AWS account on loopback: IAM, Lambda and S3 clients of moto's server, a fresh bucket, a function name,
    and the fake Lambda endpoint (test files with other needs define their own ``aws``)."""
    import boto3

    monkeypatch.delenv("NUMPYWREN_STORE", raising=False)
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
    session = boto3.session.Session(region_name="us-east-1")
    clients = {s: session.client(s, endpoint_url=moto_endpoint) for s in ("iam", "lambda", "s3")}
    bucket = f"nw-aws-{uuid.uuid4().hex[:8]}"
    clients["s3"].create_bucket(Bucket=bucket)
    return clients, bucket, f"fn-{uuid.uuid4().hex[:8]}", lambda_in_process
