"""What a review of numpywren's AWS side against AWS's documentation found (issue 33, item 5), each checked
against the fakes: moto's S3/IAM/Lambda on loopback, the handler run in process for deploy's probe."""
from __future__ import annotations

import datetime
import importlib.util
import inspect
import json
import zipfile
from pathlib import Path

import pytest

from numpywren import deploy as deploy_module
from numpywren.deploy import RUNTIME, StoreAccessError, deploy, names
from numpywren.storage.base import StoreError

ROOT = Path(__file__).resolve().parents[1]
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/numpywren:mkl-1"


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(f"numpywren_layers_{name}", ROOT / "layers" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module




def _layer(tmp_path, runtime: str = RUNTIME) -> Path:
    path = tmp_path / "layer.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("python/numpywren_layer.json", json.dumps({"runtime": runtime}))
    return path


def _nothing_created(c, fn) -> bool:
    from botocore.exceptions import ClientError

    try:
        c["iam"].get_role(RoleName=names(fn)["role"])
        return False
    except ClientError:
        pass
    return fn not in [f["FunctionName"] for f in c["lambda"].list_functions()["Functions"]]


# -- runtimes: nothing leads a user to python3.11 (Amazon Linux 2), blocked for new functions since 2026-07-31
def test_python311_is_refused_once_lambda_blocks_creating_it(aws, moto_endpoint, tmp_path):
    c, bucket, fn, _ = aws
    assert deploy_module.RUNTIME_SCHEDULE["python3.11"] == ("2026-06-30", "2026-07-31")
    before_block = datetime.date(2026, 7, 30)
    assert deploy_module.check_runtime("python3.11", before_block) == "python3.11"
    with pytest.raises(ValueError, match=r"python3\.11.*2026-07-31.*--runtime python3\.13"):
        deploy_module.check_runtime("python3.11", datetime.date(2026, 7, 31))
    if datetime.date.today() >= datetime.date(2026, 7, 31):
        with pytest.raises(ValueError, match=r"blocks creating functions on it since 2026-07-31"):
            deploy(bucket, "p", "us-east-1", function_name=fn, layer_zip=_layer(tmp_path, "python3.11"),
                   runtime="python3.11", endpoint_url=moto_endpoint, log=lambda _: None)
        assert _nothing_created(c, fn)


def test_every_default_runtime_is_one_lambda_creates_on_amazon_linux_2023():
    build, mkl_lib = _tool("build"), _tool("mkl_lib")
    defaults = {"deploy.RUNTIME": RUNTIME,
                "deploy()": inspect.signature(deploy).parameters["runtime"].default,
                "layers/build.py": inspect.signature(build.build_layer).parameters["runtime"].default,
                "layers/mkl_lib.py build()": inspect.signature(mkl_lib.build).parameters["runtime"].default}
    for where, runtime in defaults.items():
        deploy_module.check_runtime(runtime, datetime.date(2027, 1, 1))  # still creatable next year
        assert mkl_lib.RUNTIME_GLIBC[runtime] == (2, 34), where  # Amazon Linux 2023's glibc


# -- the handler's botocore guard: S3 conditional writes arrived in botocore 1.35.2, not 1.35.0 -------------
@pytest.mark.parametrize("version,ok", [("1.34.162", False), ("1.35.0", False), ("1.35.1", False),
                                        ("1.35.2", True), ("1.36.0", True), ("2.0.0", True)])
def test_botocore_guard_requires_conditional_writes(version, ok):
    from numpywren.worker.lambda_handler import OldSdkError, check_sdk

    if ok:
        check_sdk(version)
    else:
        with pytest.raises(OldSdkError, match=rf"botocore {version} .*1\.35\.2.*--with-sdk"):
            check_sdk(version)


def test_deploy_probe_names_a_runtime_botocore_without_conditional_writes(aws, moto_endpoint, tmp_path,
                                                                          monkeypatch):
    import botocore

    c, bucket, fn, _ = aws
    monkeypatch.setattr(botocore, "__version__", "1.35.1")
    with pytest.raises(StoreAccessError, match=r"OldSdkError: .*botocore 1\.35\.1.*--with-sdk"):
        deploy(bucket, "p", "us-east-1", function_name=fn, layer_zip=_layer(tmp_path), endpoint_url=moto_endpoint,
               log=lambda _: None)


# -- put_if_absent: 409 ConditionalRequestConflict means "retry", not "already exists" -------------------
class Conflicts:
    """The next ``n`` conditional PUTs of a store's client are answered 409 ConditionalRequestConflict."""

    def __init__(self, store, n: int | None):
        self.left, self.sent = n, 0
        store.client.meta.events.register("before-call.s3.PutObject", self, unique_id=f"conflicts-{id(self)}")

    def __call__(self, params, **kwargs):
        from botocore.awsrequest import AWSResponse

        if "If-None-Match" not in params.get("headers", {}) or (self.left is not None and self.left <= 0):
            return None
        if self.left is not None:
            self.left -= 1
        self.sent += 1
        return (AWSResponse("http://conflict", 409, {}, None),
                {"Error": {"Code": "ConditionalRequestConflict",
                           "Message": "A conflicting operation occurred. If using PutObject you can retry."},
                 "ResponseMetadata": {"HTTPStatusCode": 409}})


def test_put_if_absent_retries_a_conditional_request_conflict(s3_store, monkeypatch):
    from numpywren.storage import s3

    waits: list[float] = []
    monkeypatch.setattr(s3, "_sleep", waits.append)
    conflicts = Conflicts(s3_store, 2)
    assert s3_store.put_if_absent("jobs/x/lease", b"mine") is True  # written after two 409s
    assert conflicts.sent == 2 and len(waits) == 2 and s3_store.get("jobs/x/lease") == b"mine"
    assert s3_store.put_if_absent("jobs/x/lease", b"other") is False  # 412: it exists now
    assert s3_store.get("jobs/x/lease") == b"mine"


def test_put_if_absent_never_reads_a_lasting_conflict_as_present(s3_store, monkeypatch):
    from numpywren.storage import s3

    monkeypatch.setattr(s3, "_sleep", lambda _: None)
    conflicts = Conflicts(s3_store, None)
    with pytest.raises(StoreError, match="ConditionalRequestConflict"):
        s3_store.put_if_absent("jobs/y/lease", b"mine")
    assert conflicts.sent == len(s3.CONFLICT_DELAYS) + 1
    conflicts.left = 0
    assert not s3_store.exists("jobs/y/lease")


# -- the image deploy keeps the event age (a PutFunctionEventInvokeConfig without it resets it to 6 h) ------
def test_image_deploy_sets_event_age_and_no_retries(aws, moto_endpoint):
    c, bucket, fn, _ = aws
    deploy(bucket, "mats", "us-east-1", function_name=fn, image_uri=IMAGE, event_age=120,
           endpoint_url=moto_endpoint, log=lambda _: None)
    config = c["lambda"].get_function_event_invoke_config(FunctionName=fn)
    assert config["MaximumRetryAttempts"] == 0 and config["MaximumEventAgeInSeconds"] == 120


# -- IAM and Lambda name limits, refused before anything is created ----------------------------------------
def test_a_function_name_whose_role_name_is_too_long_is_refused_early(aws, moto_endpoint, tmp_path):
    c, bucket, _, _ = aws
    fn = "f" * (deploy_module.ROLE_NAME_MAX - len("-role") + 1)  # a valid Lambda name, a 65-character role
    with pytest.raises(ValueError, match=rf"role '{fn}-role' would have 65 characters, IAM allows 64"):
        deploy(bucket, "p", "us-east-1", function_name=fn, layer_zip=_layer(tmp_path), endpoint_url=moto_endpoint,
               log=lambda _: None)
    assert _nothing_created(c, fn)
    fits = "f" * (deploy_module.ROLE_NAME_MAX - len("-role"))
    deploy_module.check_names(fits)  # 59 characters: its role has 64


def test_a_description_over_lambdas_limit_is_refused_early(aws, moto_endpoint, tmp_path):
    c, bucket, fn, _ = aws
    prefix = "/".join(["deep"] * 60)  # s3://bucket/deep/deep/...: 300 characters
    limit = deploy_module.DESCRIPTION_MAX
    with pytest.raises(ValueError, match=rf"description would have \d+ characters, Lambda allows {limit}"):
        deploy(bucket, prefix, "us-east-1", function_name=fn, layer_zip=_layer(tmp_path),
               endpoint_url=moto_endpoint, log=lambda _: None)
    assert _nothing_created(c, fn)


# -- S3's request-rate ramp: a fresh bucket starts at one partition's rate, whatever the key prefixes ---------
def test_runtime_keys_written_once_per_task_are_spread_like_tiles():
    from numpywren import protocol

    leases = {protocol.lease_key("run-1", f"C/{i}_{j}", 1) for i in range(32) for j in range(32)}
    results = {protocol.result_key("s/00000", f"{k:05d}", "tile") for k in range(1024)}
    for keys, folder in ((leases, "jobs/run-1/leases/"), (results, "jobs/s/00000/results/")):
        spread = {k[len(folder):].split("/")[0] for k in keys}
        assert all(k.startswith(folder) for k in keys) and len(spread) > 200  # of 256 hashed folders
    assert protocol.lease_key("run-1", "C/0_0", 1) != protocol.lease_key("run-1", "C/0_0", 2)


def test_the_simulator_models_a_fresh_buckets_partition_ramp():
    from numpywren.simulate import predict

    ideal = dict(platform="local", read_mb_s=1e12, write_mb_s=1e12, request_s=0.0, invoke_s=0.0,
                 driver_seconds_per_task=0.0, job_setup_s=0.0, run_fixed_s=0.0, job_teardown_s=0.0,
                 get_per_s=10.0, put_per_s=10.0, backups=None)  # no backups: the same requests in every case
    steady = predict("matmul", (512,), 16, 64, **ideal)  # one partition per matrix prefix from the start
    fresh = predict("matmul", (512,), 16, 64, **ideal, fresh_partitions=1, partition_split_s=1e9)
    assert fresh.gets == steady.gets >= 64 * (16 + 1)  # the task reads, plus verification's header reads
    assert steady.seconds < fresh.seconds
    assert fresh.seconds >= fresh.gets / 10.0 * (1 - 1e-9)  # every request through one partition
    ramped = predict("matmul", (512,), 16, 64, **ideal, fresh_partitions=1, partition_split_s=1.0)
    assert ramped.seconds < fresh.seconds / 2  # S3 splits while the job runs (up to 256 folders per matrix)
