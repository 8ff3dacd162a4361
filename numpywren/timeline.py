"""A job's timeline as a picture: tasks per worker (read / compute / write) and GFLOPS over time.

Like Lithops' execution plots, from the per-task records a :class:`~numpywren.scheduler.Report`
keeps (worker, start and end wall times, and the read / compute / write seconds the task measured).
A task's bar is drawn as: write at its end, compute before it, and the rest of its wall time
(reads the prefetch could not hide, lease and result I/O) first.
"""
from __future__ import annotations

import numpy as np

from numpywren.scheduler import Report

COLORS = {"read": "#7fa7d9", "compute": "#e8833a", "write": "#5bb35b"}


def plot_timeline(report: Report, path, bins: int = 60) -> str:
    """Write ``report``'s timeline as a PNG at ``path`` (needs matplotlib: ``pip install 'numpywren[bench]'``)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("plot_timeline needs matplotlib: pip install 'numpywren[bench]'") from None
    records = report.timeline()
    if not records:
        raise ValueError(f"run {report.run} has no task records to plot (no task was executed)")
    t0 = min(r.start for r in records)
    workers = sorted({r.worker for r in records})
    row = {w: n for n, w in enumerate(workers)}
    fig, (gantt, rate) = plt.subplots(2, 1, figsize=(10, 2.5 + 0.35 * len(workers)), sharex=True,
                                      gridspec_kw={"height_ratios": [max(2, len(workers)), 2]})
    for r in records:
        y, end = row[r.worker], r.end - t0
        write = min(r.write_seconds, r.end - r.start)
        compute = min(r.compute_seconds, r.end - r.start - write)
        segments = [("read", r.start - t0, end - write - compute - (r.start - t0)),
                    ("compute", end - write - compute, compute), ("write", end - write, write)]
        for kind, left, width in segments:
            if width > 0:
                gantt.barh(y, width, left=left, height=0.8, color=COLORS[kind], linewidth=0)
    gantt.set_yticks(range(len(workers)), [_short(w) for w in workers], fontsize=7)
    gantt.set_ylabel("worker")
    gantt.legend(handles=[plt.Rectangle((0, 0), 1, 1, color=c) for c in COLORS.values()],
                 labels=["read / wait", "compute", "write"], loc="upper right", fontsize=7)
    gantt.set_title(f"run {report.run}: {report.executed} tasks on {len(workers)} workers, "
                    f"{report.wall_seconds:.2f} s, {report.gflops:.2f} GFLOPS")
    span = max(r.end for r in records) - t0
    edges = np.linspace(0, span, bins + 1)
    flops = np.zeros(bins)
    for r in records:  # spread each task's flops evenly over its compute interval
        c1 = r.end - t0 - min(r.write_seconds, r.end - r.start)
        c0 = max(r.start - t0, c1 - r.compute_seconds)
        if r.flops and c1 > c0:
            overlap = np.clip(np.minimum(edges[1:], c1) - np.maximum(edges[:-1], c0), 0, None)
            flops += r.flops * overlap / (c1 - c0)
    rate.plot((edges[:-1] + edges[1:]) / 2, flops / np.diff(edges) / 1e9, color="#333333")
    rate.set_ylabel("GFLOPS")
    rate.set_xlabel("seconds since the first task started")
    rate.set_ylim(bottom=0)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def _short(worker: str) -> str:
    return worker if len(worker) <= 28 else "..." + worker[-25:]
