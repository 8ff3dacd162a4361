"""Where a small job's wall time goes: driver phases (timed in place) and worker phases (the run's task records).

``python -m benchmarks.breakdown [--gemm 2048 --gemm-tile 1024] [--sum 8192 --sum-tile 2048] [--repeat 5]``

Each job runs ``--repeat`` times on one warm ``LocalExecutor`` (2 workers x 1 BLAS thread, a LocalStore in a
temporary folder); the table shows medians. Driver phases are measured by wrapping the functions of
``numpywren.jobs``, the scheduler and the store that do each step (exclusive time: a phase nested in another
counts once, in the inner one), so the numbers are the code's own, not a model:

* validation: ``check_fits`` and ``check_complete`` (one listing per input);
* job record: reading, claiming and writing ``<out>/job.json`` (three small objects);
* outputs: ``_create`` (new generation; a previous result's tiles are deleted);
* heartbeat: starting and stopping the run's heartbeat thread (one small put);
* dispatch: ``submit_tasks`` (events built and queued);
* leases / results / run cleanup / matrix deletes: ``delete_prefix`` by what it deletes;
* verification: ``_verify`` (one header read per output tile);
* finish: a reduction's finishing step (read the result column, delete it);
* waiting for workers: the rest of the scheduler's time.

Worker phases come from the report's task records: read (store + CRC + map, the part the prefetch could not
hide is in the kernel's wait), kernel, write, and the gaps between tasks on one worker (result and
done-marker writes, the driver noticing the completion and sending the next event, lease claim).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from collections import defaultdict
from contextlib import contextmanager

import numpy as np

PHASES = ("validation", "job record", "outputs", "heartbeat", "dispatch", "leases", "results cleanup",
          "run cleanup", "matrix deletes", "verification", "finish", "waiting for workers")


class _Clock:
    """Exclusive time per label: time in a nested timed call is charged to the inner label only."""

    def __init__(self):
        self.seconds = defaultdict(float)
        self._local = threading.local()  # one stack of open phases per thread

    @contextmanager
    def phase(self, label: str):
        stack = self._local.__dict__.setdefault("stack", [])
        frame = [label, 0.0]
        stack.append(frame)
        start = time.perf_counter()
        try:
            yield
        finally:
            spent = time.perf_counter() - start
            stack.pop()
            self.seconds[label] += spent - frame[1]
            if stack:
                stack[-1][1] += spent

    def wrap(self, owner, name: str, label):
        real = getattr(owner, name)

        def timed(*args, **kwargs):
            with self.phase(label(*args) if callable(label) else label):
                return real(*args, **kwargs)
        setattr(owner, name, timed)
        return real


def _delete_label(store, prefix: str) -> str:
    if "/leases/" in prefix:
        return "leases"
    if "/tiles/" in prefix:
        return "matrix deletes"
    if prefix.startswith("jobs/") and prefix.count("/") == 3:
        return "results cleanup"   # jobs/<session>/<callset>/
    return "run cleanup"


def instrument(clock: _Clock) -> dict:
    """Wrap the driver's steps; returns what to restore."""
    from numpywren import jobs, scheduler
    from numpywren.executors.base import Executor
    from numpywren.storage.local import LocalStore

    saved = {}
    for owner, name, label in [(jobs, "check_fits", "validation"), (jobs, "check_complete", "validation"),
                               (jobs, "_read_record", "job record"), (jobs, "_claim", "job record"),
                               (jobs, "_write_record", "job record"), (jobs, "_create", "outputs"),
                               (jobs, "_verify", "verification"),
                               (jobs.Heartbeat, "__init__", "heartbeat"), (jobs.Heartbeat, "stop", "heartbeat"),
                               (scheduler, "run", "waiting for workers"),
                               (Executor, "submit_tasks", "dispatch"),
                               (LocalStore, "delete_prefix", lambda store, prefix: _delete_label(store, prefix))]:
        saved[(owner, name)] = clock.wrap(owner, name, label)
    return saved


def restore(saved: dict) -> None:
    for (owner, name), real in saved.items():
        setattr(owner, name, real)


def worker_phases(report) -> dict:
    """Seconds summed over workers: read, kernel, write, and the idle gaps between a worker's tasks."""
    records = report.timeline()
    out = {"tasks": len(records), "read": sum(r.read_seconds for r in records),
           "kernel": sum(r.compute_seconds for r in records), "write": sum(r.write_seconds for r in records),
           "task wall": sum(r.end - r.start for r in records)}
    gaps, by_worker = 0.0, defaultdict(list)
    for r in records:
        by_worker[r.worker].append(r)
    for rs in by_worker.values():
        rs.sort(key=lambda r: r.start)
        gaps += sum(b.start - a.end for a, b in zip(rs, rs[1:]))
    out["gaps between tasks"] = gaps
    out["first start to last end"] = (max(r.end for r in records) - min(r.start for r in records)) if records else 0
    return out


def worker_breakdown(job, repeat: int) -> dict:
    """Seconds per worker step of ``job()`` run on an in-process executor (one thread: the steps are timed
    in place, as in :func:`instrument`), medians over ``repeat`` runs."""
    from numpywren import tile as codec
    from numpywren.storage.local import LocalStore
    from numpywren.tiled import TiledMatrix
    from numpywren.worker import elementwise_tasks, leases, tasks

    steps = defaultdict(list)
    for _ in range(repeat + 1):
        clock = _Clock()
        saved = {}
        for owner, name, label in [(leases, "claim", "lease claim"), (leases, "renewing", "lease renewer start"),
                                   (LocalStore, "get_buffer", "tile read (open + map)"),
                                   (codec, "decode_with_binding", "tile CRC + header"),
                                   (TiledMatrix, "put_block", "tile write (encode + put)"),
                                   (tasks, "gemm_accumulate", "kernel"), (elementwise_tasks, "reduce_rows", "kernel"),
                                   (elementwise_tasks, "combine_rows", "kernel")]:
            saved[(owner, name)] = clock.wrap(owner, name, label)
        try:
            job()
        finally:
            restore(saved)
        for label, seconds in clock.seconds.items():
            steps[label].append(seconds)
    return {label: statistics.median(v[1:]) for label, v in steps.items()}  # the first run warms up


def run_case(name: str, job, repeat: int) -> dict:
    """Median seconds per driver phase and per worker phase of ``job()`` (which returns its Report)."""
    from numpywren import jobs

    job()  # warm: imports, worker processes, page cache
    walls, phases, workers = [], defaultdict(list), defaultdict(list)
    for _ in range(repeat):
        clock = _Clock()
        saved = instrument(clock)
        reports = []
        real_run = jobs.run

        def capture(plan, *args, **kwargs):
            finish = plan.finish
            if finish is not None:
                def timed_finish():
                    with clock.phase("finish"):
                        return finish()
                plan.finish = timed_finish
            report = real_run(plan, *args, **kwargs)
            reports.append(report)
            return report
        jobs.run = capture
        try:
            start = time.perf_counter()
            job()
            walls.append(time.perf_counter() - start)
        finally:
            jobs.run = real_run
            restore(saved)
        for label in PHASES:
            phases[label].append(clock.seconds.get(label, 0.0))
        for label, value in worker_phases(reports[-1]).items():
            workers[label].append(value)
    return {"case": name, "wall": statistics.median(walls),
            "phases": {k: statistics.median(v) for k, v in phases.items()},
            "workers": {k: statistics.median(v) for k, v in workers.items()}}


def print_case(result: dict) -> None:
    wall = result["wall"]
    print(f"\n{result['case']}: median wall {wall * 1e3:.1f} ms")
    print(f"  {'driver phase':<28}{'ms':>8}{'share':>8}")
    accounted = 0.0
    for label in PHASES:
        s = result["phases"][label]
        accounted += s
        print(f"  {label:<28}{s * 1e3:8.1f}{s / wall:8.0%}")
    other = wall - accounted
    print(f"  {'other driver code':<28}{other * 1e3:8.1f}{other / wall:8.0%}")
    print(f"  {'worker phase (sum over workers)':<34}{'ms':>8}")
    for label, s in result["workers"].items():
        print(f"  {label:<34}{s if label == 'tasks' else s * 1e3:8.1f}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.breakdown", description=__doc__.splitlines()[0])
    parser.add_argument("--gemm", type=int, default=2048)
    parser.add_argument("--gemm-tile", type=int, default=1024)
    parser.add_argument("--sum", type=int, default=8192)
    parser.add_argument("--sum-tile", type=int, default=2048)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    import os

    import numpywren
    from numpywren import BigMatrix, LocalExecutor
    from numpywren.storage import open_store

    print(f"load average {os.getloadavg()[0]:.2f}, {args.workers} workers x 1 BLAS thread, LocalStore")
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as root:
        store = open_store(root)
        with LocalExecutor(args.workers, store, blas_threads=1) as ex:
            n, t = args.gemm, args.gemm_tile
            A = BigMatrix.from_numpy(rng.standard_normal((n, n)), t, store, "A")
            B = BigMatrix.from_numpy(rng.standard_normal((n, n)), t, store, "B")
            print_case(run_case(f"GEMM N={n} tile {t}", lambda: numpywren.matmul(
                A, B, out="C", executor=ex, progress=False).report, args.repeat))
            n, t = args.sum, args.sum_tile
            S = BigMatrix.from_numpy(rng.standard_normal((n, n)), t, store, "S")
            def summed():
                S.sum(executor=ex, progress=False)
            print_case(run_case(f"sum N={n} tile {t} ({S.grid[0] * S.grid[1]} tiles)", summed, args.repeat))
        from numpywren.executors.inline import InlineExecutor

        with InlineExecutor(1, store) as inline:
            for name, job in [(f"GEMM N={args.gemm} tile {args.gemm_tile}",
                               lambda: numpywren.matmul(A, B, out="C", executor=inline, progress=False)),
                              (f"sum N={args.sum} tile {args.sum_tile}", lambda: S.sum(executor=inline, progress=False))]:
                steps = worker_breakdown(job, args.repeat)
                print(f"\n{name}, worker steps on one in-process worker (exclusive ms, medians)")
                for label, seconds in steps.items():
                    print(f"  {label:<34}{seconds * 1e3:8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
