"""Report.timeline(), numpywren.plot_timeline and Report.cost() on a real (in-process) job."""
from __future__ import annotations

import numpy as np
import pytest

import numpywren
from numpywren import BigMatrix, pricing
from numpywren.executors.inline import InlineExecutor


def test_timeline_and_cost(store, tmp_path):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((12, 8)), rng.standard_normal((8, 6))
    A, B = BigMatrix.from_numpy(a, 4, store, "A"), BigMatrix.from_numpy(b, 4, store, "B")
    with InlineExecutor(2, store) as ex:
        C = numpywren.matmul(A, B, executor=ex, split_k=1)
    np.testing.assert_allclose(C.to_numpy(), a @ b, rtol=1e-12)
    report = C.report
    records = report.timeline()
    assert len(records) == report.executed == 6  # one record per executed task, in start order
    assert [r.start for r in records] == sorted(r.start for r in records)
    assert all(r.end >= r.start and r.compute_seconds >= 0 for r in records)
    assert len({r.worker for r in records}) <= 2 and all("numpywren-inline" in r.worker for r in records)
    assert sum(r.flops for r in records) == pytest.approx(2 * 12 * 8 * 6)
    assert report.tiles_read == 6 * 2 * 2  # each C tile reads two (A, B) pairs
    cost = report.cost(memory_mb=1024)
    expected = pricing.estimate(report.task_seconds, 6, puts=6 + 2 * 6, gets=24 + 6, memory_mb=1024)
    assert cost == expected and cost.total > 0
    assert report.task_seconds == pytest.approx(sum(r.end - r.start for r in records))
    assert "on Lambda this would cost about $" in str(report)
    png = numpywren.plot_timeline(report, tmp_path / "t.png")
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_plotting_an_empty_report_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no task records"):
        numpywren.plot_timeline(numpywren.Report(run="j", workers=1), tmp_path / "x.png")
