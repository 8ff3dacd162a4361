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
