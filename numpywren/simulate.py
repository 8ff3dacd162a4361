"""Predict a job at cloud scale before paying for it: the real plan and scheduler on simulated workers.

``predict("matmul", (65536,), workers=1000, tile=4096)`` builds the plan with
the real DAG builder (``compute=False``: nothing is read or written), runs it
with the real scheduler on :class:`~numpywren.executors.simulated.SimulatedExecutor`
(a virtual clock), and times every task with :class:`ServerlessModel`:

    task = start-up (a cold start for a new worker, else the invocation; the
           driver's launch rate; the worker's own start-up per call)
         + reading the first input group (requests x latency + bytes / bandwidth)
         + computing (each tile kernel's flops / its GFLOPS at the task's tile
           size), overlapped with reading the other groups for the streaming ops
           (TileReader prefetches one ahead; not in the numpywren-2017 profile,
           which reads everything serially, with two requests per tile)
         + writing the output tile, and the lease and result requests.

Limits shared by all workers are FIFO servers in virtual time, reserved when a
task starts: the store's aggregate bandwidth, and its GET and PUT rates per key
prefix (one prefix per matrix, ``<key>/tiles/``; with ``Platform.fresh_partitions`` a fresh bucket's ramp:
S3 serves every key of the job from that many partitions at first and splits them over time, see
``ServerlessModel.partitions``); the platform starts at most
``scale_per_s`` new workers per second and runs at most ``concurrency`` at once.
The driver's own CPU per scheduler step (measured, or a fixed cost) advances the
clock too, so a driver bottleneck shows. Stragglers and failures are optional
and seeded. Every parameter lives in numpywren.sim_params with its source.

The prediction names what bounds the job: the largest of the lower bounds
(compute, store bandwidth, requests, driver, critical path, start-up: cold
starts, the platform's scale rate and the driver's invocation rate).

A job also has fixed costs besides its tasks (Platform.fixed_seconds, measured
on a one-task job): ``Prediction.seconds`` is the scheduler's wall time (what
``Report.wall_seconds`` measures) and ``job_seconds`` the whole call.
"""
from __future__ import annotations

import random
import tempfile
from dataclasses import dataclass, field

import numpy as np

from numpywren import pricing, scheduler
from numpywren.dag import DAG, Task
from numpywren.executors.simulated import SimulatedExecutor
from numpywren.jobs import _refs  # the plan's own accounting of tiles and bytes
from numpywren.jobs import _tile_bytes as _bytes
from numpywren.matrix import BigMatrix
from numpywren.memory import FACTOR_OPS, STREAMING_OPS, input_groups, peak_bytes
from numpywren.sim_params import MB, Platform
from numpywren.sim_params import platform as get_platform
from numpywren.storage import LocalStore


#: ops whose runner streams input groups through TileReader (reads overlap compute after the first group):
#: gemm-like ops stream every pair; the factor ops read their leading refs, then stream the last input
OPERATIONS = ("matmul", "syrk", "kernel", "cholesky")
#: hashed key folders per matrix (tiles; leases and results alike): S3 can split each matrix's keys this far
PREFIX_SPREAD = 256
BOUNDS = ("compute", "store bandwidth", "requests", "driver", "critical path", "start-up")


@dataclass(slots=True)
class TaskCost:
    """What one task moves and computes (from its tile references; nothing is read)."""

    op: str
    flops: float
    first_bytes: int
    first_gets: int
    rest_bytes: int
    rest_gets: int
    write_bytes: int
    working_set: int
    parts: tuple = ()   # (tile kernel, flops) pieces of the task's compute
    tile: int = 0       # the output tile's larger side (kernel rates depend on it)


def _parts(task: Task, rows: int, cols: int) -> tuple:
    """The task's flops split by tile kernel (numpywren.worker.factor_tasks / blocks.cholesky)."""
    flops = task.flops
    if task.op == "potrf":
        factor = min(flops, rows ** 3 / 3.0)
        return (("potrf", factor), ("syrk", flops - factor))
    if task.op in ("chol_panel", "trsm"):  # a triangular solve of the tile after GEMM updates
        # chol_panel: L[i, j] (m x n) <- C L[j, j]^-T, m n^2; trsm: X[i, c] (m x c) <- T[i, i]^-1 C, m^2 c
        solve = min(flops, float(rows) * cols * (cols if task.op == "chol_panel" else rows))
        return (("trsm", solve), ("gemm_update", flops - solve))
    if task.op == "chol_update":
        return (("syrk" if (task.params or {}).get("diagonal") else "gemm_update", flops),)
    return ((task.op, flops),) if flops else ()


def task_cost(task: Task) -> TaskCost:
    params = [_bytes(r) for r in _refs(task.params or {})]
    groups = input_groups(task)
    first, rest = params + groups[0], [b for g in groups[1:] for b in g]
    out = _bytes(task.output)
    working = peak_bytes(task)
    matrix, i, j = task.output
    rows, cols = matrix.block_shape(i, j)
    return TaskCost(task.op, task.flops, sum(first), len(first), sum(rest), len(rest), out, working,
                    _parts(task, rows, cols), max(rows, cols))


class ServerlessModel:
    """The duration of each task on ``platform`` (see the module docstring); plugs into SimulatedExecutor."""

    def __init__(self, platform: Platform, dag: DAG, memory_mb: int, prefixes: int = 1, seed: int = 0):
        self.p, self.memory_mb, self.prefixes = platform, memory_mb, max(1, prefixes)
        self.costs = {t.id: task_cost(t) for t in dag}
        self.reports_progress = platform.leases  # SimulatedExecutor: calls report progress with their leases
        self.rng = random.Random(seed)
        self.warm = 0                    # workers (containers) started so far
        self._free = {"bandwidth": 0.0, "get": 0.0, "put": 0.0}  # when each shared server is next free
        self.totals = dict.fromkeys(("busy", "compute", "transfer", "latency", "startup", "attempts", "cold",
                                     "gets", "puts", "bytes_read", "bytes_written"), 0.0)

    # -- the pieces of one task (uncontended) --------------------------------------------------
    def compute_seconds(self, c: TaskCost) -> float:
        return sum(f / (self.p.gflops(kernel, self.memory_mb, c.tile) * 1e9) for kernel, f in c.parts)

    def body_seconds(self, c: TaskCost) -> tuple[float, float, float]:
        """(seconds, transfer seconds, request-latency seconds) of a task once its worker runs it."""
        p = self.p
        read, write, lat = p.read_mb_s * MB, p.write_mb_s * MB, p.request_s
        per_read = p.requests_per_read * lat
        first = p.call_gets * lat + c.first_gets * per_read + c.first_bytes / read
        rest = c.rest_gets * per_read + c.rest_bytes / read
        compute = self.compute_seconds(c)
        streams = c.op in STREAMING_OPS or c.op in FACTOR_OPS
        overlapped = max(compute, rest) if (streams and p.overlap_io) else compute + rest
        puts = 1 + p.extra_puts
        seconds = first + overlapped + puts * lat + c.write_bytes / write
        transfer = (c.first_bytes + c.rest_bytes) / read + c.write_bytes / write
        requests = p.call_gets + (c.first_gets + c.rest_gets) * p.requests_per_read + puts
        return seconds, transfer, requests * lat

    def requests(self, c: TaskCost) -> tuple[int, int]:
        """(GETs, PUTs) of one attempt, the driver's result read included."""
        reads = (c.first_gets + c.rest_gets) * self.p.requests_per_read
        return self.p.call_gets + reads + self.p.extra_gets, 1 + self.p.extra_puts

    # -- SimulatedExecutor hooks -----------------------------------------------------------------
    def task_seconds(self, spec: dict, now: float, running: int) -> tuple[float, float]:
        c = self.costs[spec["id"]]
        startup = self.p.invoke_s + self.p.call_overhead_s
        if self.p.invoke_per_s:  # the driver launches calls one after another: the k-th at k / rate
            startup += max(0.0, self.totals["attempts"] / self.p.invoke_per_s - now)
        if running > self.warm:  # a worker that never ran: the platform starts a new container
            self.warm += 1
            self.totals["cold"] += 1
            ramp = (self.warm - 1) / self.p.scale_per_s if self.p.scale_per_s else 0.0
            startup += max(0.0, ramp - now) + self.p.cold_start_s
        body, transfer, latency = self.body_seconds(c)
        if self.p.straggler_rate and self.rng.random() < self.p.straggler_rate:
            body *= self.p.straggler_factor
        began = now + startup
        gets, puts = self.requests(c)
        moved = c.first_bytes + c.rest_bytes + c.write_bytes
        # shared servers: the task cannot end before the store has served its bytes and requests
        waits = [self._reserve("bandwidth", began, moved / (self.p.aggregate_mb_s * MB))
                 if self.p.aggregate_mb_s else 0.0]
        if self.p.get_per_s:
            waits.append(self._reserve("get", began, gets / (self.p.get_per_s * self.partitions(began))))
        if self.p.put_per_s:
            waits.append(self._reserve("put", began, puts / (self.p.put_per_s * self.partitions(began))))
        body = max(body, *waits)
        every = (spec.get("report") or spec.get("beat")) if self.reports_progress else None
        renewals = int(body / every) if every else 0  # lease renewals, with progress (numpywren.worker.leases)
        t = self.totals
        t["busy"] += startup + body
        t["startup"] += startup
        t["compute"] += self.compute_seconds(c)
        t["transfer"] += transfer
        t["latency"] += latency
        t["attempts"] += 1
        t["gets"] += gets
        t["puts"] += puts + renewals
        t["bytes_read"] += c.first_bytes + c.rest_bytes
        t["bytes_written"] += c.write_bytes
        return startup, body  # the worker claims its lease after its start-up

    def predicted_seconds(self, spec: dict) -> float:
        """A task's uncontended body (what the scheduler's backups take as its kind's time before any ends)."""
        return self.body_seconds(self.costs[spec["id"]])[0]

    def partitions(self, now: float) -> float:
        """S3 partitions serving the job's requests at ``now``: one per matrix prefix, or with the ramp
        (Platform.fresh_partitions) a fresh bucket's few, one more per partition_split_s of load."""
        if self.p.fresh_partitions is None:
            return self.prefixes
        grown = self.p.fresh_partitions + int(now / self.p.partition_split_s)
        return min(grown, self.prefixes * PREFIX_SPREAD)

    def failed(self, spec: dict) -> bool:
        return bool(self.p.failure_rate) and self.rng.random() < self.p.failure_rate

    def _reserve(self, server: str, now: float, seconds: float) -> float:
        """Queue ``seconds`` of work on a shared FIFO server; how long until it is done, from ``now``."""
        done = max(self._free[server], now) + seconds
        self._free[server] = done
        return done - now


@dataclass
class Prediction:
    """What a job would do on a platform: time, speed, traffic, cost, and what bounds it."""

    op: str
    sizes: tuple
    tile: int
    workers: int
    platform: str
    memory_mb: int
    seconds: float
    flops: float
    tasks: int
    attempts: int
    bytes_read: float
    bytes_written: float
    gets: int
    puts: int
    cold_starts: int
    driver_seconds: float
    bounds: dict = field(default_factory=dict)   # lower bound name -> seconds
    cost: pricing.Cost | None = None
    notes: list = field(default_factory=list)
    #: the job's fixed costs around its tasks: {"setup", "run", "teardown"} seconds (Platform.fixed_seconds);
    #: ``seconds`` includes "run" (the scheduler's wall time, what Report.wall_seconds measures),
    #: ``job_seconds`` all three (the whole call, numpywren.jobs.run)
    fixed: dict = field(default_factory=dict)
    backups: int = 0       # backup attempts the scheduler launched (numpywren.backups), and how many won
    backups_won: int = 0
    #: seconds summed over every attempt, by phase: "compute", "transfer" (bytes / bandwidth), "latency"
    #: (requests x request_s), "startup" (invoke, cold start, call overhead), "busy" (all of a task's time)
    phases: dict = field(default_factory=dict)
    backups_projected: int = 0  # of the backups, those launched on a progress projection (before overdue)

    @property
    def gflops(self) -> float:
        return self.flops / self.seconds / 1e9 if self.seconds else 0.0

    @property
    def job_seconds(self) -> float:
        """The whole job: the scheduler's wall time plus the jobs layer's setup and teardown."""
        return self.seconds + self.fixed.get("setup", 0.0) + self.fixed.get("teardown", 0.0)

    @property
    def bound(self) -> str:
        """The largest lower bound: what limits the job."""
        return max(self.bounds, key=self.bounds.get)

    def row(self) -> dict:
        """A flat dict (CSV row)."""
        return {"op": self.op, "sizes": "x".join(map(str, self.sizes)), "tile": self.tile, "workers": self.workers,
                "platform": self.platform, "memory_mb": self.memory_mb, "seconds": self.seconds,
                "job_seconds": self.job_seconds,
                "gflops": self.gflops, "tasks": self.tasks, "attempts": self.attempts,
                "read_gb": self.bytes_read / 1e9, "written_gb": self.bytes_written / 1e9, "gets": self.gets,
                "puts": self.puts, "cold_starts": self.cold_starts, "driver_s": self.driver_seconds,
                "bound": self.bound, **{f"bound_{k.replace(' ', '_').replace('-', '')}_s": v
                                        for k, v in self.bounds.items()},
                "cost_usd": self.cost.total if self.cost else float("nan")}

    def __str__(self) -> str:
        shape = "x".join(map(str, self.sizes))
        where = f" ({self.memory_mb} MB)" if self.platform != "local" else ""
        ranked = sorted(self.bounds.items(), key=lambda kv: -kv[1])
        lines = [f"{self.op} {shape}, tile {self.tile}, {self.workers} workers on {self.platform}{where}:",
                 (f"  predicted wall time {self.seconds:,.1f} s, {self.gflops:,.1f} GFLOPS "
                  f"({self.flops / 1e12:,.3g} TFLOP in {self.tasks:,} tasks, {self.attempts:,} attempts)"),
                 (f"  whole job {self.job_seconds:,.2f} s (fixed costs: setup {self.fixed.get('setup', 0):,.3f} s, "
                  f"scheduler {self.fixed.get('run', 0):,.3f} s, teardown {self.fixed.get('teardown', 0):,.3f} s)"),
                 (f"  store: read {self.bytes_read / 1e9:,.2f} GB, wrote {self.bytes_written / 1e9:,.2f} GB, "
                  f"{self.gets:,} GET and {self.puts:,} PUT requests; {self.cold_starts:,} cold starts; "
                  f"driver {self.driver_seconds:,.2f} s"),
                 f"  bound by {self.bound}: " + ", ".join(f"{k} {v:,.1f} s" for k, v in ranked)]
        if self.cost is not None:
            lines.append(f"  cost {self.cost}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def predict(op: str, sizes, workers: int, tile: int, *, memory_mb: int | None = None,
            platform: "str | Platform" = "lambda", dtype: str = "float64", concurrency: int | None = None,
            driver_seconds_per_task: float | None = None, seed: int = 0,
            backups: float | None = scheduler.BACKUP_FACTOR, **changes) -> Prediction:
    """Predict running ``op`` (matmul, syrk, kernel, cholesky) on ``sizes`` with ``workers`` workers.

    ``sizes``: matmul ``(N,)`` or ``(M, K, N)``; syrk and kernel ``(N, D)`` (X is N x D); cholesky
    ``(N,)``. ``tile`` is the square tile size. ``memory_mb`` (Lambda: also the vCPUs) and
    ``concurrency`` default to the platform's; ``changes`` override other platform parameters
    (e.g. ``failure_rate=0.01``) and are listed in the prediction's notes. The driver's cost per
    scheduler step is measured (this process's CPU time) unless ``driver_seconds_per_task`` fixes it.
    ``backups`` is the scheduler's backup-task factor (numpywren.backups; None for none).
    """
    p = get_platform(platform)
    if changes:
        p = p.with_(**changes)
    if op not in OPERATIONS:
        raise ValueError(f"unknown operation {op!r}; predict knows {', '.join(OPERATIONS)}")
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    if not isinstance(tile, int) or tile < 1:
        raise ValueError(f"tile must be a positive integer, got {tile!r}")
    memory_mb = p.memory_mb if memory_mb is None else memory_mb
    if not 128 <= memory_mb <= p.max_memory_mb:
        raise ValueError(f"memory must be between 128 and {p.max_memory_mb} MB on {p.name}, got {memory_mb}")
    limit = p.concurrency if concurrency is None else concurrency
    if limit is not None and limit < 1:
        raise ValueError(f"concurrency must be a positive integer, got {limit}")
    sizes = tuple(int(s) for s in sizes)
    notes = [f"{k}={v!r} (changed from the platform's)" for k, v in changes.items()]
    running = workers if limit is None else min(workers, limit)
    if running < workers:
        notes.append(f"only {running} of the {workers} workers run at once (concurrency limit {limit}; "
                     "ask AWS for a higher quota, then pass concurrency=)")
    with tempfile.TemporaryDirectory(prefix="numpywren-predict-") as root:
        store = LocalStore(root)  # handles need a store; the simulation never reads or writes tiles
        plan_dag, output_tiles = build_dag(op, sizes, tile, np.dtype(dtype), store, workers)
        prefixes = len({ref[0].key for t in plan_dag for ref in _refs((t.output, t.inputs, t.params))})
        model = ServerlessModel(p, plan_dag, memory_mb, prefixes, seed)
        need = max((c.working_set for c in model.costs.values()), default=0) / 2**20 + p.runtime_mb
        if need > memory_mb:
            raise ValueError(f"tile {tile} needs about {need:,.0f} MB per worker ({dtype}, inputs prefetched one "
                             f"group ahead), more than the {memory_mb} MB configured: use a smaller tile or more memory")
        longest = max((model.body_seconds(c)[0] for c in model.costs.values()), default=0.0)
        if p.task_limit_s and longest > p.task_limit_s:
            notes.append(f"WARNING: the longest task would run {longest:,.0f} s, over {p.name}'s limit of "
                         f"{p.task_limit_s:,.0f} s per call: it would fail there; use a smaller tile or more memory")
        ex = SimulatedExecutor(running, store, duration=model,
                               driver_time="measured" if driver_seconds_per_task is None else driver_seconds_per_task)
        try:
            report = scheduler.run(plan_dag, ex, run="predict", progress=False, backups=backups)
        finally:
            ex.shutdown()
    t = model.totals
    t["gets"] += ex.progress_reads  # the driver's reads of progress reports (numpywren.liveness)
    fixed = p.fixed_seconds(output_tiles, running)
    bounds = _bounds(model, plan_dag, running, ex.driver_seconds, t)
    cost = (pricing.estimate(t["busy"], int(t["attempts"]), int(t["puts"]), int(t["gets"]), memory_mb)
            if p.billed else None)
    return Prediction(op, sizes, tile, workers, p.name, memory_mb, report.wall_seconds + fixed["run"], report.flops,
                      len(plan_dag), int(t["attempts"]), t["bytes_read"], t["bytes_written"], int(t["gets"]),
                      int(t["puts"]), int(t["cold"]), ex.driver_seconds, bounds, cost, notes, fixed,
                      report.backups, report.backups_won,
                      {k: t[k] for k in ("compute", "transfer", "latency", "startup", "busy")},
                      report.backups_projected)


def _bounds(model: ServerlessModel, dag: DAG, running: int, driver: float, t: dict) -> dict:
    """Lower bounds on the wall time, one per limit (the largest is what bounds the job)."""
    p = model.p
    start = p.cold_start_s + p.invoke_s + p.call_overhead_s
    ramp = max(0.0, t["cold"] - 1) / p.scale_per_s if p.scale_per_s else 0.0  # the last new worker's wait
    store = t["transfer"] / running
    if p.aggregate_mb_s:
        store = max(store, (t["bytes_read"] + t["bytes_written"]) / (p.aggregate_mb_s * MB))
    requests = t["latency"] / running
    if p.get_per_s:
        requests = max(requests, t["gets"] / (p.get_per_s * model.prefixes))
    if p.put_per_s:
        requests = max(requests, t["puts"] / (p.put_per_s * model.prefixes))
    return {"compute": t["compute"] / running, "store bandwidth": store, "requests": requests,
            "driver": driver, "critical path": start + critical_path_seconds(model, dag),
            "start-up": max(start + ramp, t["attempts"] / p.invoke_per_s if p.invoke_per_s else 0.0)}


def critical_path_seconds(model: ServerlessModel, dag: DAG) -> float:
    """The longest chain of uncontended task durations (what infinitely many workers would take)."""
    finish: dict[str, float] = {}
    for task in dag:  # dependency order
        finish[task.id] = max((finish[d] for d in task.deps), default=0.0) + \
            model.body_seconds(model.costs[task.id])[0] + model.p.invoke_s + model.p.call_overhead_s
    return max(finish.values(), default=0.0)


# -- plans -----------------------------------------------------------------------------------------
def build_dag(op: str, sizes: tuple, tile: int, dtype, store, workers: int) -> tuple[DAG, int]:
    """The DAG the real builder makes for ``op`` (input handles are shape-only: nothing is read), and the
    number of output tiles the job verifies at its end."""
    import numpywren

    def matrix(key, shape):
        M = BigMatrix(store, key, shape, tile, dtype, generation="input")  # tiles clipped to the shape
        M.planned = True  # as a plan's output: builders do not look for its tiles in the store
        return M

    def need(count, what):
        if len(sizes) not in count:
            raise ValueError(f"{op} takes sizes {what}, got {len(sizes)} numbers: {','.join(map(str, sizes))}")
        if min(sizes) < 1:
            raise ValueError(f"sizes must be positive, got {','.join(map(str, sizes))}")

    if op == "matmul":
        need((1, 3), "N (square) or M,K,N")
        m, k, n = sizes * 3 if len(sizes) == 1 else sizes
        plan = numpywren.matmul(matrix("A", (m, k)), matrix("B", (k, n)), out="C", compute=False, workers=workers)
    elif op == "syrk":
        need((2,), "N,D (X is N x D)")
        plan = numpywren.syrk(matrix("X", sizes), out="C", compute=False, workers=workers)
    elif op == "kernel":
        need((2,), "N,D (X is N x D)")
        plan = numpywren.kernel(matrix("X", sizes), kind="rbf", out="K", compute=False, workers=workers)
    else:
        need((1,), "N (A is N x N)")
        plan = numpywren.cholesky(matrix("A", sizes * 2), out="L", compute=False, workers=workers)
    dag = plan.dag
    for m in dag.outputs():  # what jobs.run would create; specs carry it
        if not m.generation:
            m.generation = "planned"
    return dag, sum(len(o.matrix.stored_blocks()) for o in plan.outputs)


def scaling(op: str, sizes, tile: int, workers=(1, 3, 10, 30, 100, 300, 1000, 3000), **kwargs) -> list[Prediction]:
    """Predictions for each worker count (a strong-scaling curve)."""
    return [predict(op, sizes, w, tile, **kwargs) for w in workers]
