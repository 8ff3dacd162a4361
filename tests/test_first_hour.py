"""docs/guide/first-hour-aws.md, end to end: its ``numpywren`` commands and its Python block run, in order,
against moto's S3/IAM/Lambda (deploy, teardown; deploy's probe runs the handler in process) and the fake
Lambda endpoint (calibrate, the budgeted run). Only ``layer build`` is replaced (it needs ~100 MB of wheels):
the test writes a layer zip of the same name with the manifest deploy checks."""
from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
import uuid
import zipfile
from pathlib import Path

import numpy as np
import pytest
from test_lambda import _not_on_lambda, fake_lambda  # noqa: F401 - fixtures

import numpywren
from numpywren.cli import main as numpywren_main

PAGE = Path(__file__).resolve().parents[1] / "docs" / "guide" / "first-hour-aws.md"


def _commands(text: str) -> list[str]:
    blocks = re.findall(r"^```bash\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    return [line for block in blocks for line in block.splitlines() if line.startswith("numpywren ")]


def _python_block(text: str) -> str:
    return re.search(r"<!-- docs-test: skip aws -->\n```python\n(.*?)^```", text, re.MULTILINE | re.DOTALL).group(1)


def test_the_first_hour_walkthrough_runs_end_to_end(moto_endpoint, lambda_in_process, fake_lambda, tmp_path,
                                                    monkeypatch):
    import boto3

    text = PAGE.read_text()
    commands = _commands(text)
    assert [c.split()[1] for c in commands] == ["layer", "deploy", "calibrate", "predict", "demo", "teardown"]
    assert all("--max-cost" in c for c in commands if c.split()[1] in ("calibrate", "demo"))
    bucket = f"nw-first-hour-{uuid.uuid4().hex[:8]}"
    session = boto3.session.Session(region_name="us-east-1")
    session.client("s3", endpoint_url=moto_endpoint).create_bucket(Bucket=bucket)
    fake = fake_lambda(memory=3008, timeout=60)  # the function as the page deploys it
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NUMPYWREN_STORE", raising=False)
    store = f"s3://{bucket}/numpywren?endpoint={moto_endpoint}"
    outputs = {}
    for command in commands:
        argv = shlex.split(command)[1:]
        name = argv[0]
        if name == "layer":  # replaced: a zip with the manifest deploy reads, where the page's deploy looks
            zip_path = Path("layers/dist/numpywren-layer-python3.13-x86_64.zip")
            zip_path.parent.mkdir(parents=True)
            with zipfile.ZipFile(zip_path, "w") as zf:
                zf.writestr("python/numpywren_layer.json", json.dumps({"runtime": argv[argv.index("--runtime") + 1]}))
            continue
        argv = [a.replace("s3://MY-BUCKET/numpywren", store).replace("MY-BUCKET", bucket) for a in argv]
        if name in ("deploy", "teardown"):
            argv += ["--endpoint-url", moto_endpoint]
        if name in ("calibrate", "demo"):
            argv += ["--endpoint-url", fake.url]
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert numpywren_main(argv) == 0, command
        outputs[name] = out.getvalue()
    # deploy made the function the page describes; teardown removed it
    assert '"verified": true' in outputs["deploy"] and lambda_in_process.invocations[-1]["kind"] == "probe"
    assert "removed function numpywren" in outputs["teardown"]
    # calibrate printed its ceiling first and wrote the profile; predict used it
    assert re.search(r"at most \$0\.\d{4}", outputs["calibrate"])
    profile = json.loads(Path("my-lambda.json").read_text())
    assert (profile["memory_mb"], profile["timeout_s"], profile["runtime"]) == (3008, 60.0, "python3.13")
    assert "calibrated-numpywren" in outputs["predict"] and "cost $" in outputs["predict"]
    # the demo ran on the function under --max-cost, predicted with the profile: the printed figures are the
    # price model's, for the same plan (never typed on the page)
    demo = next(c for c in commands if c.split()[1] == "demo")
    max_cost = float(demo.split("--max-cost ")[1].split()[0])
    budget = re.search(r"budget: predicted \$([0-9.]+), spent \$([0-9.]+) of max_cost \$([0-9.]+)", outputs["demo"])
    assert budget and float(budget.group(3)) == max_cost and "-> OK" in outputs["demo"]
    from numpywren.budget import PriceModel
    from numpywren.executors.aws_lambda import LambdaExecutor
    from numpywren.matrix import BigMatrix

    with LambdaExecutor("numpywren", store=store, region="us-east-1", endpoint_url=fake.url,
                        max_concurrency=16) as ex:
        A, B = BigMatrix.open(ex.store, "demo/A"), BigMatrix.open(ex.store, "demo/B")
        plan = numpywren.matmul(A, B, out="predicted/C", executor=ex, compute=False)  # no temporary
    predicted = PriceModel(3008, "x86_64", 60.0, "my-lambda.json").predict(plan)
    assert float(budget.group(1)) == pytest.approx(predicted, abs=1e-6) and float(budget.group(2)) <= max_cost


def test_the_budgeted_run_of_the_walkthrough(s3_store, fake_lambda, tmp_path, monkeypatch, capsys):
    """The page's Python block, on the fake endpoint with a profile calibrated there."""
    from numpywren import calibrate

    fake = fake_lambda(memory=3008, timeout=60)
    monkeypatch.chdir(tmp_path)
    from numpywren.executors.aws_lambda import LambdaExecutor

    with LambdaExecutor("numpywren", store=s3_store, region="us-east-1", endpoint_url=fake.url,
                        poll_interval=0.05) as ex:
        calibrate.calibrate(ex, tiles=(256,), warm=1, concurrency=1, io_mb=1, yes=True, out="my-lambda.json")
    code = _python_block(PAGE.read_text())
    code = code.replace('store="s3://MY-BUCKET/numpywren", region="us-east-1")',
                        f'store={s3_store.url!r}, region="us-east-1", endpoint_url={fake.url!r}, poll_interval=0.05)')
    namespace: dict = {}
    exec(compile(code, str(PAGE), "exec"), namespace)  # noqa: S102 - the page's own code
    a, C, budget = namespace["a"], namespace["C"], namespace["budget"]
    assert np.linalg.norm(C.to_numpy() - a @ a.T) / np.linalg.norm(a @ a.T) < 1e-12
    assert budget["invocations"] == C.report.executed and budget["refused"] == 0
    assert budget["predicted"] <= budget["max_cost"] and budget["spent"] <= budget["max_cost"]
    printed = capsys.readouterr().out
    assert f"spent ${budget['spent']:.6f} of max_cost $0.25" in printed
