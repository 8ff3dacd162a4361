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
