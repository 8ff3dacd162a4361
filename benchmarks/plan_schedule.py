"""How well a factorization's plan can keep W workers busy: its real DAG, list-scheduled in virtual time.

Builds the plan with the real builder (``compute=False`` on shape-only inputs: nothing is read or
written) and schedules it on ``--workers`` workers by bottom level (longest remaining path first,
as the scheduler orders its ready set), each task taking its planned flops at a per-op rate plus a
fixed per-task cost (``--overheads``, seconds). Reported per tile size and overhead: tasks, planned
GFLOP by op, makespan, the workers' idle share and the critical path. No I/O model: this isolates
what the DAG's shape costs from what the store and the runtime cost.

    python -m benchmarks.plan_schedule --op lu --n 8192 --tiles 512,1024,2048
    python -m benchmarks.plan_schedule --op cholesky --n 8192 --tiles 1024
"""
from __future__ import annotations

import argparse
import collections
import heapq
import tempfile

import numpy as np

from benchmarks import common

NAME = "plan_schedule"
#: GFLOPS per worker by op (one core of this machine, quiet): GEMM-like updates ~60, panel kernels slower.
RATES = {"lu_panel": 35e9, "potrf": 40e9, "trsm": 40e9}
DEFAULT_RATE = 60e9


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--op", choices=("lu", "solve", "cholesky"), default="lu")
    parser.add_argument("--n", type=int, default=8192, help="matrix size N (default 8192)")
    parser.add_argument("--tiles", type=common.int_list, default=[1024], help="tile sizes (default 1024)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--overheads", default="0,0.02,0.05", help="per-task costs in seconds (default 0,0.02,0.05)")
    common.add_common_arguments(parser)


def main(argv: list[str] | None = None) -> int:
    return run(common.parse_args(NAME, __doc__, add_arguments, argv))


def plan_dag(op: str, n: int, t: int):
    import numpywren
    from numpywren.matrix import BigMatrix
    from numpywren.storage import open_store

    store = open_store(tempfile.mkdtemp(prefix="numpywren-plan-"))

    def matrix(key, shape, tile):
        M = BigMatrix(store, key, shape, tile, np.float64, generation="input")
        M.planned = True   # shape only: the builders do not look for its tiles
        return M
    A = matrix("A", (n, n), t)
    if op == "lu":
        return numpywren.lu_factor(A, compute=False).dag
    if op == "solve":
        return numpywren.solve(A, matrix("B", (n, 16), (t, 16)), assume_a="gen", compute=False).dag
    return numpywren.cholesky(A, out="L", compute=False).dag


def _seconds(task) -> float:
    """A task's kernel time at the per-op rates; an LU panel task's getrf at the panel rate, the update it
    applies to its rows first (a GEMM, the rest of its flops) at the GEMM rate."""
    if task.op == "lu_panel":
        p = task.params
        rows = p["n"] - p["k"] * p["t"]
        getrf = float(rows) * min(p["t"], rows) ** 2
        return getrf / RATES["lu_panel"] + (task.flops - getrf) / DEFAULT_RATE
    return task.flops / RATES.get(task.op, DEFAULT_RATE)


def schedule(dag, workers: int, overhead: float) -> tuple[float, float, float]:
    """(makespan, total task time, critical path) of a bottom-level list schedule."""
    tasks = list(dag)
    by_id = {t.id: t for t in tasks}
    cost = {t.id: _seconds(t) + overhead for t in tasks}
    children = collections.defaultdict(set)
    for t in tasks:
        for d in t.deps:
            children[d].add(t.id)
    level: dict[str, float] = {}
    for t in reversed(tasks):   # tasks are in dependency order
        level[t.id] = cost[t.id] + max((level[c] for c in children[t.id]), default=0.0)
    waiting = {t.id: len(set(t.deps)) for t in tasks}
    ready = [(-level[i], i) for i in by_id if waiting[i] == 0]
    heapq.heapify(ready)
    running: list = []
    now, done, free = 0.0, 0, workers
    while done < len(tasks):
        while ready and free:
            _, i = heapq.heappop(ready)
            heapq.heappush(running, (now + cost[i], i))
            free -= 1
        now, i = heapq.heappop(running)
        free, done = free + 1, done + 1
        for c in children[i]:
            waiting[c] -= 1
            if waiting[c] == 0:
                heapq.heappush(ready, (-level[c], c))
    return now, sum(cost.values()), max(level.values(), default=0.0)


def run(args: argparse.Namespace) -> int:
    if args.tiny:
        args.n, args.tiles = 512, [128]
    overheads = [float(x) for x in args.overheads.split(",")]
    rows = []
    for t in args.tiles:
        dag = plan_dag(args.op, args.n, t)
        flops = collections.Counter()
        for task in dag:
            flops[task.op] += task.flops
        by_op = ", ".join(f"{op} {f / 1e9:.1f}" for op, f in sorted(flops.items()) if f)
        for overhead in overheads:
            span, work, critical = schedule(dag, args.workers, overhead)
            rows.append({"op": args.op, "n": args.n, "tile": t, "workers": args.workers, "tasks": len(list(dag)),
                         "overhead_s": overhead, "makespan_s": span, "idle": 1 - work / args.workers / span,
                         "critical_path_s": critical, "gflop_by_op": by_op})
    common.print_table(rows, COLUMNS, title=f"{args.op} plan, list-scheduled on {args.workers} workers "
                                            f"(GEMM-like tasks at {DEFAULT_RATE / 1e9:.0f} GFLOPS, {RATES})")
    common.report_paths([common.write_csv(NAME, rows, common.machine_info(), args.out)])
    return 0


COLUMNS = [("op", "op", ""), ("n", "N", ""), ("tile", "tile", ""), ("tasks", "tasks", ""),
           ("overhead_s", "s/task", ".3f"), ("makespan_s", "makespan s", ".2f"), ("idle", "idle", ".0%"),
           ("critical_path_s", "critical path s", ".2f"), ("gflop_by_op", "planned GFLOP by op", "")]


if __name__ == "__main__":
    raise SystemExit(main())
