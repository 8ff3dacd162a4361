"""How fast is the driver? 10^4..10^6 trivial tile tasks through the real scheduler on a simulated backend.

The simulated executor (numpywren.executors.simulated) completes each task
after a virtual second, with W workers, so nothing but the driver does real
work: DAG, critical-path priorities, task specs (JSON events), submission
window, completion handling, report. Measured per task: driver CPU (the
driver thread's own CPU time minus the simulator's), driver throughput
(tasks per second of driver CPU) and driver memory (tracemalloc peak of DAG +
scheduler state, in a separate run because tracing slows everything down).
Targets (the jobs-layer issue): >= 10,000 tasks/s, <= 2 KB per task, and the
per-task cost at 3,000 in flight within 1.5x of that at 100.

    python -m benchmarks.scheduler [--tasks 10000 100000 1000000] [--in-flight 100 3000] [--tiny]
"""
from __future__ import annotations

import argparse
import gc
import tempfile
import time
import tracemalloc

from benchmarks import common
from numpywren import scheduler
from numpywren.dag import DAG, Task
from numpywren.executors.simulated import SimulatedExecutor
from numpywren.matrix import BigMatrix
from numpywren.storage import LocalStore

FAN_IN = 3  # every 4th task sums the 3 before it: a DAG with edges, not just a bag of tasks


def build_dag(store, n: int) -> DAG:
    """``n`` trivial tile tasks: groups of FAN_IN leaves (one input tile each) and one sum of the group."""
    X = BigMatrix(store, "X", (n, 1), (1, 1), "float64", generation="bench-x")
    Y = BigMatrix(store, "Y", (n, 1), (1, 1), "float64", generation="bench-y")
    dag = DAG()
    for start in range(0, n, FAN_IN + 1):
        leaves = [dag.add(Task(f"Y/{b}", "gemm", (Y, b, 0), (((X, b, 0), (X, b, 0)),), flops=2.0))
                  for b in range(start, min(start + FAN_IN, n))]
        if start + FAN_IN < n:
            b = start + FAN_IN
            dag.add(Task(f"Y/{b}", "sum", (Y, b, 0), tuple(t.output for t in leaves),
                         deps=tuple(t.id for t in leaves), flops=float(FAN_IN - 1)))
    return dag


def measure(n: int, in_flight: int, root: str) -> dict:
    store = LocalStore(root)
    dag = build_dag(store, n)
    ex = SimulatedExecutor(workers=in_flight, store=store)
    gc.collect()
    cpu, wall = time.thread_time(), time.perf_counter()
    report = scheduler.run(dag, ex, run="bench", progress=False)
    wall = time.perf_counter() - wall
    driver_cpu = time.thread_time() - cpu - ex.cpu_seconds
    assert report.executed == n and not report.failures
    ex.shutdown()
    return {"tasks": n, "in_flight": ex.max_in_flight, "driver_cpu_s": round(driver_cpu, 3),
            "driver_us_per_task": round(driver_cpu / n * 1e6, 2),
            "driver_tasks_per_s": round(n / driver_cpu), "wall_s": round(wall, 3),
            "virtual_s": round(report.wall_seconds, 1)}


def measure_memory(n: int, in_flight: int, root: str) -> float:
    """Bytes per task of DAG + scheduler state at its peak (tracemalloc)."""
    store = LocalStore(root)
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    dag = build_dag(store, n)
    ex = SimulatedExecutor(workers=in_flight, store=store)
    scheduler.run(dag, ex, run="bench", progress=False)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    ex.shutdown()
    return (peak - base) / n


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tasks", type=common.int_list, default=[10_000, 100_000, 1_000_000],
                        help="DAG sizes (default 10000,100000,1000000)")
    parser.add_argument("--in-flight", type=common.int_list, default=[100, 3000],
                        help="tasks in flight (simulated workers x the scheduler's window; default 100,3000)")
    parser.add_argument("--memory-tasks", type=int, default=100_000, help="DAG size of the memory runs")
    common.add_common_arguments(parser)


def main(argv=None) -> int:
    args = common.parse_args("scheduler", __doc__, add_arguments, argv)
    if args.tiny:
        args.tasks, args.in_flight, args.memory_tasks = [2000], [10, 100], 2000
    info = common.machine_info()
    print(common.describe_machine(info))
    rows = []
    with tempfile.TemporaryDirectory() as root:
        for n in args.tasks:
            for flight in args.in_flight:
                rows.append(measure(n, flight, root))
        memory = {flight: measure_memory(args.memory_tasks, flight, root) for flight in args.in_flight}
    for row in rows:
        wanted = min(memory, key=lambda f: abs(f - row["in_flight"]))
        row["memory_bytes_per_task"] = round(memory[wanted])
        low = min((r for r in rows if r["tasks"] == row["tasks"]), key=lambda r: r["in_flight"])
        row["cost_vs_lowest_in_flight"] = round(row["driver_us_per_task"] / low["driver_us_per_task"], 2)
    common.print_table(rows, [("tasks", "tasks", "d"), ("in_flight", "in flight", "d"),
                              ("driver_tasks_per_s", "driver tasks/s", "d"),
                              ("driver_us_per_task", "us/task", ".1f"),
                              ("cost_vs_lowest_in_flight", "x cost vs fewest in flight", ".2f"),
                              ("memory_bytes_per_task", f"bytes/task ({args.memory_tasks} tasks)", "d"),
                              ("wall_s", "wall s", ".1f")],
                       title="driver cost per task (simulated backend, virtual 1 s tasks)")
    common.report_paths([common.write_csv("scheduler", rows, info, args.out)])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
