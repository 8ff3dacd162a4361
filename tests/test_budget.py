"""``max_cost=``: a budget that holds (numpywren.budget), on the fake Lambda endpoint and moto's S3.

What the tests rely on is arithmetic on list prices (numpywren.pricing), never on timing: the
worst case of a call is the fake function's timeout at its memory, far above what a task costs."""
from __future__ import annotations

import re

import numpy as np
import pytest
from test_lambda import _not_on_lambda, fake_lambda, lambda_executor  # noqa: F401 - fixtures

import numpywren
from numpywren import pricing
from numpywren.budget import PUTS_PER_TASK, BudgetExceededError, PriceModel
from numpywren.matrix import BigMatrix, MatrixNotFoundError


def _worst(timeout: float, memory: int = 3008) -> float:
    """A send's worst case by hand: billed the whole timeout, plus the invocation and its S3 requests."""
    return timeout * memory / 1024 * pricing.LAMBDA_GB_SECOND["x86_64"] + pricing.LAMBDA_REQUEST


def _inputs(store, n=96, tile=32, seed=0):
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((n, n)), rng.standard_normal((n, n))
    return a, b, BigMatrix.from_numpy(a, (tile, tile), store), BigMatrix.from_numpy(b, (tile, tile), store)


def _rel(got, want):
    return np.linalg.norm(got - want) / np.linalg.norm(want)


def test_a_plan_predicted_above_max_cost_is_refused_before_anything_runs(s3_store, fake_lambda):
    fake = fake_lambda(timeout=30)
    _, _, A, B = _inputs(s3_store)
    with lambda_executor(fake, s3_store) as ex:
        plan = numpywren.matmul(A, B, out="C", executor=ex, split_k=1, compute=False)
        predicted = ex.price_model().predict(plan)
        assert predicted > len(plan.dag) * pricing.LAMBDA_REQUEST  # tasks are billed for time, not only calls
        with pytest.raises(BudgetExceededError, match=rf"predicted cost \${predicted:.6f} .*above max_cost"):
            numpywren.matmul(A, B, out="C", executor=ex, split_k=1, max_cost=predicted / 2)
    assert fake.events == []  # nothing was invoked ...
    with pytest.raises(MatrixNotFoundError):
        BigMatrix.open(s3_store, "C")  # ... nor created


def test_executors_without_a_price_model_refuse_max_cost(local_executor, local_store):
    _, _, A, B = _inputs(local_store)
    with pytest.raises(ValueError, match="max_cost needs an executor with a price model.*LocalExecutor"):
        numpywren.matmul(A, B, executor=local_executor, max_cost=1.0)
    with pytest.raises(ValueError, match="max_cost must be a positive number"):
        numpywren.matmul(A, B, executor=local_executor, max_cost=-1)


def test_a_run_within_its_budget_finishes_and_tallies_what_it_used(s3_store, fake_lambda):
    fake = fake_lambda(timeout=30)
    a, b, A, B = _inputs(s3_store)
    with lambda_executor(fake, s3_store) as ex:
        C = numpywren.matmul(A, B, out="C", executor=ex, split_k=1, max_cost=1.0)
    assert _rel(C.to_numpy(), a @ b) < 1e-12
    tally, tasks = C.report.budget, C.report.tasks
    assert tally["invocations"] == len(fake.events) == tasks  # every send was counted, none refused
    assert tally["refused"] == 0 and tally["in_flight"] == pytest.approx(0.0, abs=1e-12)
    assert tally["puts"] == PUTS_PER_TASK * tasks and tally["gets"] == tasks * (6 + 1)  # 3 pairs of tiles read
    floor = tasks * (pricing.LAMBDA_REQUEST + PUTS_PER_TASK * pricing.S3_PUT + 7 * pricing.S3_GET)
    gb_s = tally["gb_seconds"] * pricing.LAMBDA_GB_SECOND["x86_64"]
    assert tally["spent"] == pytest.approx(floor + gb_s, rel=1e-6)  # the list-price arithmetic of the tally
    assert tally["spent"] <= 1.0


def test_no_call_is_sent_whose_worst_case_does_not_fit(s3_store, fake_lambda):
    """max_cost above the prediction but below one call's worst case: the first send is refused, the job
    stops cleanly, and a resumed run with a larger budget finishes it."""
    fake = fake_lambda(timeout=30)
    a, b, A, B = _inputs(s3_store)
    worst = _worst(30)
    with lambda_executor(fake, s3_store) as ex:
        plan = numpywren.matmul(A, B, out="C", executor=ex, split_k=1, compute=False)
        assert ex.price_model().predict(plan) < worst / 2
        with pytest.raises(BudgetExceededError, match=r"stopped by its budget: a call whose worst case is "
                                                      r"\$0\.00\d+ .*resume=True"):
            numpywren.matmul(A, B, out="C", executor=ex, split_k=1, max_cost=worst / 2)
        assert fake.events == []
        C = numpywren.matmul(A, B, out="C", executor=ex, split_k=1, max_cost=1.0, resume=True)
    assert _rel(C.to_numpy(), a @ b) < 1e-12


def test_the_budget_holds_during_a_run_and_what_is_done_is_kept(s3_store, fake_lambda):
    """Room for one call in flight and a few finished ones: the run stops once the tally plus one
    worst case would pass max_cost; every send it made fitted; resume=True finishes the rest."""
    fake = fake_lambda(timeout=30)
    a, b, A, B = _inputs(s3_store)
    model = PriceModel(3008, "x86_64", 30.0)
    task_floor = pricing.LAMBDA_REQUEST + PUTS_PER_TASK * pricing.S3_PUT + 7 * pricing.S3_GET
    max_cost = model.worst_call({"task": {"in": [], "params": {}}}) * 1.0 + 4.5 * task_floor
    with lambda_executor(fake, s3_store, max_concurrency=1) as ex:
        with pytest.raises(BudgetExceededError, match="stopped by its budget") as info:
            numpywren.matmul(A, B, out="C", executor=ex, split_k=1, max_cost=max_cost)
        stopped = ex.budget
        assert stopped is None  # the run let go of its budget
        sent = len(fake.events)
        assert 1 <= sent <= 5  # at most 4.5 finished tasks' floor beside one worst case
        tally = info.value.budget
        assert tally["invocations"] == sent and tally["refused"] >= 1
        assert tally["spent"] + tally["in_flight"] <= max_cost  # what it sent never could pass max_cost
        C = numpywren.matmul(A, B, out="C", executor=ex, split_k=1, max_cost=1.0, resume=True)
    assert _rel(C.to_numpy(), a @ b) < 1e-12
    assert C.report.skipped >= 1  # the tiles finished before the stop were kept, not recomputed
    assert C.report.skipped + C.report.executed == C.report.tasks == 9


# -- --max-cost on the command line (numpywren.budget.add_max_cost) ----------------------------------
def _cli(capsys, argv) -> tuple[int, str, str]:
    from numpywren.cli import main

    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_the_cli_runs_a_job_under_max_cost_and_refuses_one_predicted_above_it(s3_store, fake_lambda, capsys):
    """``numpywren demo --function-name ... --max-cost``: above the prediction it runs and prints the tally;
    below it, one line names the prediction (the same PriceModel.predict of the same plan) and nothing is sent."""
    fake = fake_lambda(timeout=30)
    argv = ["demo", "--n", "96", "--tile", "32", "--workers", "4", "--function-name", "numpywren-test",
            "--store", s3_store.url, "--region", "us-east-1", "--endpoint-url", fake.url]
    code, out, err = _cli(capsys, argv + ["--max-cost", "1"])
    assert code == 0, err
    budget = re.search(r"budget: predicted \$([0-9.]+), spent \$([0-9.]+) of max_cost \$1 \((\d+) invocations", out)
    assert budget and "-> OK" in out
    A, B = BigMatrix.open(s3_store, "demo/A"), BigMatrix.open(s3_store, "demo/B")
    with lambda_executor(fake, s3_store, max_concurrency=4) as ex:
        plan = numpywren.matmul(A, B, out="predicted/C", executor=ex, compute=False)  # no temporary
        predicted = ex.price_model().predict(plan)
    assert float(budget.group(1)) == pytest.approx(predicted, abs=1e-6) and float(budget.group(2)) <= 1.0
    assert int(budget.group(3)) == len(fake.events) == len(plan.dag)
    sent = len(fake.events)
    code, out, err = _cli(capsys, argv + ["--max-cost", f"{predicted / 2:.8f}"])
    lines = [line for line in err.splitlines() if line]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert re.search(rf"^numpywren demo: error: .*predicted cost \${predicted:.6f} .*above max_cost", lines[0])
    assert len(fake.events) == sent  # refused before anything was sent


def test_the_cli_refuses_max_cost_without_a_price_model_and_a_bad_amount(tmp_path, capsys):
    code, _, err = _cli(capsys, ["demo", "--n", "64", "--tile", "32", "--store", str(tmp_path / "s"),
                                 "--max-cost", "1"])
    assert code == 2 and "Traceback" not in err
    assert re.search(r"^numpywren demo: error: max_cost needs an executor with a price model \(LambdaExecutor\); "
                     r"LocalExecutor has none", err)
    assert list((tmp_path / "s").rglob("meta.json")) == []  # refused before the inputs were uploaded
    for bad in ("0", "-1", "nan", "inf", "x"):
        code, _, err = _cli(capsys, ["demo", "--max-cost", bad])
        assert code == 2 and "--max-cost: must be a positive number of USD" in err


def test_calibrate_refuses_a_ceiling_above_max_cost(s3_store, fake_lambda, tmp_path, capsys):
    from numpywren import calibrate

    fake = fake_lambda(memory=3008)
    ceiling = calibrate.cost_ceiling(calibrate.plan_calls(), 3008, "x86_64")
    code, out, err = _cli(capsys, ["calibrate", "--function-name", "numpywren-test", "--store", s3_store.url,
                                   "--region", "us-east-1", "--endpoint-url", fake.url, "--out",
                                   str(tmp_path / "p.json"), "--yes", "--max-cost", f"{ceiling / 2:.6f}"])
    assert code == 2 and f"calibration would cost up to ${ceiling:.4f}" in err and "above max_cost" in err
    assert fake.events == [] and not (tmp_path / "p.json").exists()
