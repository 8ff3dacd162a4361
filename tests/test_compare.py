"""``report.compare(prediction)``: predicted against measured, phase by phase (numpywren.compare)."""
from __future__ import annotations

import numpy as np
import pytest

import numpywren
from numpywren.simulate import predict


def test_compare_puts_a_prediction_beside_the_run_it_predicted(local_executor, local_store):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((512, 512))
    A = numpywren.BigMatrix.from_numpy(a, (256, 256), local_store)
    C = numpywren.matmul(A, A, executor=local_executor, workers=2)
    assert np.linalg.norm(C.to_numpy() - a @ a) / np.linalg.norm(a @ a) < 1e-12
    report = C.report
    prediction = predict("matmul", (512,), 2, 256, platform="lambda")
    table = report.compare(prediction)
    assert [r.phase for r in table] == ["wall time", "GFLOPS", "compute", "store I/O", "task time", "bytes read",
                                        "bytes written", "cost"]
    # the simulator's traffic is the plan's: the workers moved exactly those bytes
    assert table.row("bytes read").measured == report.bytes_read == prediction.bytes_read
    assert table.row("bytes written").error == 0.0 and report.bytes_written == 4 * 256 * 256 * 8
    wall = table.row("wall time")
    assert (wall.predicted, wall.measured) == (prediction.seconds, report.wall_seconds)
    assert wall.error == pytest.approx(prediction.seconds / report.wall_seconds - 1, rel=1e-12)
    assert table.row("cost").measured == pytest.approx(report.cost(memory_mb=prediction.memory_mb).total)
    text = str(table)
    assert "wall time (s)" in text and "compute (s summed)" in text and "%" in text
    with pytest.raises(ValueError, match="prediction is of 16 tasks, the report of 4"):
        report.compare(predict("matmul", (1024,), 2, 256, platform="lambda"))


def test_the_lambda_2022_profile_reproduces_the_lithops_measurements_it_cites():
    from numpywren.sim_params import LITHOPS_2022, platform

    p = platform("lambda-2022")
    assert p.gflops("gemm", 1024, 4096) == pytest.approx(LITHOPS_2022["gflops_4096"], rel=1e-12)
    assert (p.read_mb_s, p.write_mb_s, p.memory_mb) == (99.8, 94.1, 1024)
    assert p.invoke_s + p.cold_start_s == pytest.approx(LITHOPS_2022["invoke_cold_s"])
    validation = p.sources["validation"]   # an independent case: the 100-function runs no parameter came from
    assert "us-east-1" in p.sources["region"] and "100_flops.pickle" in validation
    assert "no numpywren job" in validation.lower()
    # a 4096^2 GEMM tile task at 1,024 MB takes the measured kernel time plus its I/O and start-up
    one = predict("matmul", (4096,), 1, 4096, platform="lambda-2022", driver_seconds_per_task=0.0)
    kernel = 2.0 * 4096 ** 3 / (LITHOPS_2022["gflops_4096"] * 1e9)
    assert one.seconds > kernel and one.gflops < LITHOPS_2022["gflops_4096"]
