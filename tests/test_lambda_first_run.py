"""The first run after ``numpywren deploy`` (issue 17, item 7): IAM changes take seconds to propagate, so
deploy retries what propagation explains, within bounds, and ends by proving that a worker can use its store.

Lambda is moto's for deploy, and deploy's Invoke runs the real handler in this process (conftest's
``lambda_in_process``); propagation is injected deterministically (AccessDenied / "role cannot be assumed"
N times), and waits are counted, never slept.
"""
from __future__ import annotations

import json
import uuid
import zipfile

import pytest
from botocore.exceptions import ClientError

from numpywren import cli
from numpywren.worker import lambda_handler
from numpywren.deploy import PROPAGATION_DELAYS, StoreAccessError, deploy, names
from numpywren.worker.lambda_handler import ForeignStoreError, handler
from numpywren.protocol import EVENT_VERSION, probe_key




def _layer(tmp_path):
    path = tmp_path / "layer.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("python/numpywren_layer.json", json.dumps({"runtime": "python3.13"}))
    return path


def _deploy(bucket, fn, tmp_path, moto_endpoint, lines=None, **kw):
    return deploy(bucket, "team/p", "us-east-1", function_name=fn, layer_zip=_layer(tmp_path),
                  endpoint_url=moto_endpoint, log=(lines.append if lines is not None else lambda _: None), **kw)


def _keys(s3, bucket):
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


def test_deploy_waits_until_a_worker_can_use_the_store(aws, moto_endpoint, tmp_path):
    c, bucket, fn, lam = aws
    lam.deny_s3(3)  # the new policy reaches S3 only after three requests
    lines: list[str] = []
    out = _deploy(bucket, fn, tmp_path, moto_endpoint, lines)
    assert out["verified"] is True and lam.denied == 3
    assert lam.sleeps == list(PROPAGATION_DELAYS[:3])  # one bounded wait per denied probe
    assert [e["kind"] for e in lam.invocations] == ["probe"] * 4
    assert {e["store"] for e in lam.invocations} == {f"s3://{bucket}/team/p"}
    assert sum("cannot use s3://" in line and "AccessDenied" in line for line in lines) == 3
    assert any(line.startswith(f"verified: a worker of {fn}") and "after 4 attempts" in line for line in lines)
    assert _keys(c["s3"], bucket) == []  # the probe key was deleted


def test_deploy_names_what_to_check_when_the_store_stays_denied(aws, moto_endpoint, tmp_path):
    _c, bucket, fn, lam = aws
    lam.deny_s3(None)
    n = names(fn)
    with pytest.raises(StoreAccessError) as info:
        _deploy(bucket, fn, tmp_path, moto_endpoint)
    message = str(info.value)
    for part in (n["role"], n["policy"], f"arn:aws:s3:::{bucket}/team/p/*", "AccessDenied", "--no-verify",
                 f"waited {sum(PROPAGATION_DELAYS):g} s over {len(PROPAGATION_DELAYS) + 1} probes"):
        assert part in message
    assert lam.sleeps == list(PROPAGATION_DELAYS) and sum(lam.sleeps) <= 120  # bounded, never forever


def test_deploy_cli_reports_an_unreachable_store_in_one_line(aws, moto_endpoint, tmp_path, capsys):
    _c, bucket, fn, lam = aws
    lam.deny_s3(None)
    argv = ["deploy", "--bucket", bucket, "--prefix", "team/p", "--region", "us-east-1", "--function-name", fn,
            "--endpoint-url", moto_endpoint, "--layer-zip", str(_layer(tmp_path))]
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1 and "cannot use its store" in err
    invoked = len(lam.invocations)
    assert cli.main(argv + ["--no-verify"]) == 0 and len(lam.invocations) == invoked  # no probe


def test_deploy_does_not_retry_what_propagation_does_not_explain(aws, moto_endpoint, tmp_path, monkeypatch):
    """A handler that does not know probes (an older layer) fails at once, naming the fix."""
    _c, bucket, fn, lam = aws
    monkeypatch.setattr(lambda_handler, "PROBE", "not-a-probe")  # the probe then reaches validate_event
    with pytest.raises(StoreAccessError, match=r"handler failed with ValueError: .*unknown kind 'probe'"):
        _deploy(bucket, fn, tmp_path, moto_endpoint)
    assert lam.sleeps == [] and len(lam.invocations) == 1


def test_deploy_retries_while_lambda_cannot_assume_the_new_role(aws, moto_endpoint, tmp_path):
    c, bucket, fn, lam = aws
    lam.refuse_role(3)
    lines: list[str] = []
    out = _deploy(bucket, fn, tmp_path, moto_endpoint, lines)
    assert lam.refused == 3 and lam.sleeps == list(PROPAGATION_DELAYS[:3])
    assert c["lambda"].get_function(FunctionName=fn)["Configuration"]["FunctionArn"] == out["function_arn"]
    assert sum("cannot assume the role yet" in line for line in lines) == 3
    lam.refuse_role(2)  # a configuration update meets it too
    _deploy(bucket, fn, tmp_path, moto_endpoint, memory=2048)
    assert lam.refused == 5 and lam.sleeps == list(PROPAGATION_DELAYS[:3]) + list(PROPAGATION_DELAYS[:2])
    assert c["lambda"].get_function_configuration(FunctionName=fn)["MemorySize"] == 2048


def test_deploy_gives_up_on_a_role_lambda_never_can_assume(aws, moto_endpoint, tmp_path):
    _c, bucket, fn, lam = aws
    lam.refuse_role(None)
    with pytest.raises(ClientError, match="cannot be assumed"):
        _deploy(bucket, fn, tmp_path, moto_endpoint)
    assert lam.sleeps == list(PROPAGATION_DELAYS)


# -- the probe on the handler's side: the deployed store only ---------------------------------------
def _probe(store_url: str, nonce: str | None = None) -> dict:
    return {"v": EVENT_VERSION, "kind": "probe", "store": store_url, "nonce": nonce or uuid.uuid4().hex}


def test_the_probe_uses_only_the_deployed_store(s3_store, moto_endpoint, monkeypatch):
    import boto3

    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "numpywren-test")
    monkeypatch.setenv("NUMPYWREN_STORE", s3_store.url)
    other = f"nw-other-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket=other)
    event = _probe(s3_store.url)
    answer = handler(event, None)
    assert answer == {"ok": True, "probe": event["nonce"], "store": s3_store.url}
    assert not s3_store.exists(probe_key(event["nonce"]))  # written, read, listed, deleted
    with pytest.raises(ForeignStoreError, match="is not this function's store"):
        handler(_probe(f"s3://{other}/numpywren?endpoint={moto_endpoint}"), None)
    assert "Contents" not in s3.list_objects_v2(Bucket=other)  # nothing touched there
    for nonce in ("../../x", "ABCDEF0123456789", "12"):
        with pytest.raises(ValueError, match="malformed numpywren probe event"):
            handler(_probe(s3_store.url, nonce), None)
    monkeypatch.delenv("NUMPYWREN_STORE")
    with pytest.raises(ForeignStoreError, match="NUMPYWREN_STORE is not set"):
        handler(_probe(s3_store.url), None)


def test_the_probe_says_which_step_s3_denied(s3_store, monkeypatch):
    from botocore.awsrequest import AWSResponse

    monkeypatch.setenv("NUMPYWREN_STORE", s3_store.url)
    store = lambda_handler.check_event(_probe(s3_store.url), s3_store.url)
    calls = []

    def deny_reads(model, **kw):
        calls.append(model.name)
        if model.name == "GetObject":
            return (AWSResponse("http://denied", 403, {}, None),
                    {"Error": {"Code": "AccessDenied", "Message": "Access Denied"},
                     "ResponseMetadata": {"HTTPStatusCode": 403}})
        return None

    store.client.meta.events.register("before-call.s3", deny_reads, unique_id="test-deny-reads")
    try:
        event = _probe(s3_store.url)
        answer = handler(event, None)
    finally:
        store.client.meta.events.unregister("before-call.s3", unique_id="test-deny-reads")
    assert answer["ok"] is False and answer["step"] == "read" and answer["denied"] is True
    assert "AccessDenied" in answer["error"]
    assert not s3_store.exists(probe_key(event["nonce"]))  # cleaned up after the failed step
