"""``numpywren deploy --image URI``: a container-image function (layers/Dockerfile), against moto's Lambda.

The image itself cannot be built here (no container daemon); this tests what deploy asks of Lambda."""
from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from numpywren.deploy import HANDLER, check_image_uri, deploy, names, teardown

ROOT = Path(__file__).resolve().parents[1]
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/numpywren:mkl-1"


@pytest.fixture
def aws(moto_endpoint, lambda_in_process):
    """moto's IAM, Lambda and S3; deploy's probe runs the handler in this process (conftest)."""
    import boto3

    session = boto3.session.Session(region_name="us-east-1")
    clients = {s: session.client(s, endpoint_url=moto_endpoint) for s in ("iam", "lambda", "s3")}
    bucket = f"nw-image-{uuid.uuid4().hex[:8]}"
    clients["s3"].create_bucket(Bucket=bucket)
    return clients, bucket, f"fn-{uuid.uuid4().hex[:8]}"


def test_deploy_image_creates_updates_and_tears_down(aws, moto_endpoint):
    c, bucket, fn = aws
    lam = c["lambda"]
    out = deploy(bucket, "mats", "us-east-1", function_name=fn, memory=3538, image_uri=IMAGE,
                 endpoint_url=moto_endpoint, log=lambda _: None)
    assert out["image_uri"] == IMAGE and "layer_arn" not in out
    got = lam.get_function(FunctionName=fn)
    cfg = got["Configuration"]
    assert cfg["PackageType"] == "Image" and got["Code"]["ImageUri"] == IMAGE
    assert cfg["Architectures"] == ["x86_64"] and not cfg.get("Layers")
    assert cfg.get("Runtime") in (None, "") and cfg.get("Handler") in (None, "")  # the image's CMD is the handler
    env = cfg["Environment"]["Variables"]
    assert env["NUMPYWREN_STORE"] == f"s3://{bucket}/mats" and env["MKL_NUM_THREADS"] == "2"
    assert lam.get_function_event_invoke_config(FunctionName=fn)["MaximumRetryAttempts"] == 0
    assert lam.list_layer_versions(LayerName=names(fn)["layer"])["LayerVersions"] == []  # no layer published

    again = deploy(bucket, "mats", "us-east-1", function_name=fn, memory=3538, image_uri=IMAGE,
                   endpoint_url=moto_endpoint, log=lambda _: None)
    assert again["changed"] == [] and again["function_arn"] == out["function_arn"]

    newer = IMAGE.replace(":mkl-1", ":mkl-2")
    updated = deploy(bucket, "mats", "us-east-1", function_name=fn, memory=1769, image_uri=newer,
                     endpoint_url=moto_endpoint, log=lambda _: None)
    assert any("updated image" in line for line in updated["changed"])
    assert any("updated configuration" in line for line in updated["changed"])
    got = lam.get_function(FunctionName=fn)
    assert got["Code"]["ImageUri"] == newer and got["Configuration"]["MemorySize"] == 1769
    assert got["Configuration"]["Environment"]["Variables"]["MKL_NUM_THREADS"] == "1"

    assert f"function {fn}" in teardown("us-east-1", function_name=fn, endpoint_url=moto_endpoint, log=lambda _: None)


def test_deploy_image_refuses_to_turn_a_layer_function_into_an_image(aws, moto_endpoint, tmp_path):
    import zipfile

    c, bucket, fn = aws
    layer = tmp_path / "layer.zip"
    with zipfile.ZipFile(layer, "w") as zf:
        zf.writestr("python/numpywren_layer.json", "{}")
    deploy(bucket, "mats", "us-east-1", function_name=fn, layer_zip=layer, endpoint_url=moto_endpoint,
           log=lambda _: None)
    with pytest.raises(ValueError, match="zip \\(layer\\) deployment.*teardown"):
        deploy(bucket, "mats", "us-east-1", function_name=fn, image_uri=IMAGE, endpoint_url=moto_endpoint,
               log=lambda _: None)
    assert c["lambda"].get_function(FunctionName=fn)["Configuration"]["Handler"] == HANDLER  # untouched
    teardown("us-east-1", function_name=fn, endpoint_url=moto_endpoint, log=lambda _: None)


@pytest.mark.parametrize("uri,match", [
    ("docker.io/library/python:3.11", "not an ECR image URI"),
    ("123456789012.dkr.ecr.us-east-1.amazonaws.com/numpywren", "not an ECR image URI"),  # no tag, no digest
    ("123456789012.dkr.ecr.eu-west-1.amazonaws.com/numpywren:1", "in eu-west-1, the function in us-east-1"),
])
def test_image_uri_is_checked_before_anything_is_created(uri, match, aws, moto_endpoint):
    c, bucket, fn = aws
    with pytest.raises(ValueError, match=match):
        deploy(bucket, "mats", "us-east-1", function_name=fn, image_uri=uri, endpoint_url=moto_endpoint,
               log=lambda _: None)
    assert fn not in [f["FunctionName"] for f in c["lambda"].list_functions()["Functions"]]
    assert names(fn)["role"] not in [r["RoleName"] for r in c["iam"].list_roles()["Roles"]]


def test_image_excludes_layer_options(moto_endpoint, tmp_path):
    with pytest.raises(ValueError, match="--layer-zip and --blas are for layer deployments"):
        deploy("b", "p", "us-east-1", image_uri=IMAGE, blas="mkl", endpoint_url=moto_endpoint)
    with pytest.raises(ValueError, match="--layer-zip brings its own"):
        deploy("b", "p", "us-east-1", layer_zip=tmp_path / "x.zip", blas="mkl", endpoint_url=moto_endpoint)
    assert check_image_uri(IMAGE.replace(":mkl-1", "@sha256:" + "ab" * 32), "us-east-1")


def test_dockerfile_uses_the_handler_and_mkl_numpy():
    text = (ROOT / "layers" / "Dockerfile").read_text()
    assert f'CMD ["{HANDLER}"]' in text
    assert "public.ecr.aws/lambda/provided:al2023" in text and "libblas=*=*mkl" in text
