"""Predicted against measured, phase by phase: ``report.compare(prediction)`` after a real run.

A job's first run calibrates the next: the rows say which phase the profile got wrong (kernel rate,
store bandwidth and latency, per-call start-up) and by how much, so the next prediction can use a
better profile (``numpywren calibrate``). Sums are over every executed task (what the workers report),
so they compare with the simulator's sums over attempts; the wall time compares with ``Prediction.seconds``
(the scheduler's wall time, what ``Report.wall_seconds`` measures).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    phase: str
    predicted: float
    measured: float
    unit: str

    @property
    def error(self) -> float:
        """predicted / measured - 1 (NaN when nothing was measured)."""
        return self.predicted / self.measured - 1.0 if self.measured else float("nan")


class Comparison(list):
    """Rows of (phase, predicted, measured, unit); ``str()`` is a table."""

    def __str__(self) -> str:
        lines = [f"{'phase':<28}{'predicted':>14}{'measured':>14}{'error':>9}"]
        for r in self:
            lines.append(f"{r.phase + ' (' + r.unit + ')':<28}{r.predicted:>14,.4g}{r.measured:>14,.4g}"
                         f"{r.error:>+9.0%}")
        return "\n".join(lines)

    def row(self, phase: str) -> Row:
        return next(r for r in self if r.phase == phase)


def compare(report, prediction) -> Comparison:
    """``prediction`` (numpywren.simulate.Prediction) against ``report`` (numpywren.scheduler.Report)."""
    if report.tasks != prediction.tasks:
        raise ValueError(f"the prediction is of {prediction.tasks} tasks, the report of {report.tasks}: "
                         f"predict the same operation, sizes, tile and workers")
    phases = prediction.phases
    rows = [Row("wall time", prediction.seconds, report.wall_seconds, "s"),
            Row("GFLOPS", prediction.gflops, report.gflops, "GFLOPS"),
            Row("compute", phases.get("compute", 0.0), report.compute_seconds, "s summed"),
            Row("store I/O", phases.get("transfer", 0.0) + phases.get("latency", 0.0),
                report.read_seconds + report.write_seconds, "s summed"),
            Row("task time", phases.get("busy", 0.0), report.task_seconds, "s summed"),
            Row("bytes read", prediction.bytes_read, report.bytes_read, "B"),
            Row("bytes written", prediction.bytes_written, report.bytes_written, "B")]
    if prediction.cost is not None:
        rows.append(Row("cost", prediction.cost.total, report.cost(memory_mb=prediction.memory_mb).total, "USD"))
    return Comparison(rows)
