"""The jobs layer: a plan (a DAG of tile tasks and the matrices it writes) and the life of one run of it.

Operations (``linalg``, ``kernels``) only *build* a :class:`Plan`; :func:`run`
owns everything else, once:

1. **Identity.** Every run has a run id. ``resume=True`` adopts the id of the
   interrupted run recorded in the output's job record, after checking that
   the record describes the same computation and that its driver is dead (its
   heartbeat is older than ``LIVE_SECONDS``); a fresh run into an output that a
   live run is computing is refused, naming that run.
2. **Outputs.** A fresh run (re)creates each output with a new generation;
   its tiles are bound to that generation and run (numpywren.tile), so a tile
   left by any other run can never be read as part of this result.
   ``<out>/job.json`` records operation, parameters, inputs (with their
   generations), run id, driver and state.
3. **Scratch.** Intermediate matrices (split-k partials, row norms) are
   declared by the builder and live under ``jobs/<run>/scratch/`` (protocol);
   each tile is deleted once every task reading it was accepted (numpywren.scratch).
4. **Running.** The scheduler runs the DAG; a heartbeat (``jobs/<run>/heartbeat``)
   says the driver is alive.
5. **Verification.** Before reporting success, every output tile's header is
   checked to be bound to this run and generation (one small read per tile),
   and the job record must still name this run: a concurrent or leftover run
   that overwrote a tile makes the job fail, naming it, instead of returning a mix.
6. **Cleanup.** Scratch, leases and heartbeat go, on success and on failure
   (a killed driver leaves them to ``numpywren store gc``).
"""
from __future__ import annotations

import dataclasses
import heapq
import json
import logging
import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

from numpywren import budget, protocol, scheduler, temporaries
from numpywren.api import get_executor
from numpywren.backups import BACKUP_FACTOR
from numpywren.dag import DAG, Task
from numpywren.heartbeat import HEARTBEAT_SECONDS, Heartbeat
from numpywren.liveness import SILENCE_SECONDS
from numpywren.memory import block_bytes as _tile_bytes
from numpywren.memory import block_refs as _refs
from numpywren.memory import check_fits, peak_bytes, read_refs, side_outputs
from numpywren.matrix import IO_THREADS, JOB_RECORD, BigMatrix
from numpywren.scheduler import JobFailedError, Report, critical_path
from numpywren.scratch import ScratchTiles, planned_peak
from numpywren.storage import KeyNotFoundError
from numpywren.verification import VERIFY_ON_WORKERS_ABOVE, batch_size

log = logging.getLogger(__name__)
#: A run whose heartbeat is younger than this is alive (three missed beats mean dead).
LIVE_SECONDS = 3 * HEARTBEAT_SECONDS


@dataclass(eq=False)
class Output:
    """A matrix a plan computes, and what computes it (recorded in ``<key>/job.json``)."""

    matrix: BigMatrix
    op: str
    inputs: tuple
    params: dict = field(default_factory=dict)
    #: None: the tasks write the matrix's tiles. A dict: every task writing this matrix returns its block as a
    #: value (protocol.VALUE_PARAM, each block at most protocol.VALUE_MAX_BYTES); after the run it maps
    #: (i, j) -> block, checked to be this run's for this generation (run).
    values: dict | None = None

    def spec(self) -> dict:
        """The computation, as recorded: a resume must describe the same one."""
        return {"op": self.op, "params": self.params,
                "inputs": [{"store": M.store.url, "key": M.key, "transposed": M.transposed, **M._layout(),
                            **({"conjugated": True} if M.conjugated else {}),
                            "generation": M.current_generation()} for M in self.inputs]}


@dataclass(eq=False)
class Plan:
    """A DAG of tile tasks plus the matrices it writes: a value to inspect, then run with :func:`run`.

    ``workers`` is the worker count the builder assumed (it shapes e.g. the split-k rule).
    ``finish``, if given, is what :func:`run` does once the outputs are verified: read back a small
    result (qr's R, a reduction's column), delete what only served the plan; its return value is the
    operation's result (``plan.value``, also ``report.value``). Without it, the result is the last output.
    ``finite_inputs``: the inputs :func:`run` scans for NaN/inf before any task (``check_finite=True``
    given to an operation with ``compute=False``: the plan checks when it runs, as the operation would).
    """

    dag: DAG
    outputs: list[Output]
    scratch: dict[str, BigMatrix]
    desc: str
    workers: int
    finish: Callable[[], Any] | None = None
    finite_inputs: tuple = ()

    @property
    def result(self) -> BigMatrix:
        return self.outputs[-1].matrix

    @property
    def value(self):
        """The operation's result after :func:`run`: what ``finish`` returned, else the last output matrix."""
        if self.finish is None:
            return self.result
        if not hasattr(self, "_value"):
            raise RuntimeError(f"plan {self.desc!r} has not run yet: run it with numpywren.run(plan)")
        return self._value

    def stats(self) -> dict:
        """What running the plan means, before running it: tasks, edges, flops, bytes, critical path, the
        scratch it writes (deleted after the run, on success and on failure), the most of it held at once
        (``scratch_peak_bytes``: each tile freed after its last reader, numpywren.scratch, in a unit-time
        list schedule on ``workers`` slots) and its largest task's memory."""
        read = written = tiles = scratch = 0
        temporary = {id(m) for m in self.scratch.values()}
        for task in self.dag:
            refs = list(read_refs(task))
            read += sum(_tile_bytes(ref) for ref in refs)
            tiles += len(refs)
            out = _tile_bytes(task.output)
            whole = [m.size * m.dtype.itemsize for m in side_outputs(task)]
            written += out + sum(whole)
            scratch += (out if id(task.output[0]) in temporary else 0) + sum(
                b for m, b in zip(side_outputs(task), whole) if id(m) in temporary)
        largest = max(self.dag, key=peak_bytes, default=None)
        steps = _steps(self.dag, self.workers, critical_path(self.dag))
        flops_path = critical_path(self.dag, per_task=0.0)
        depth = _depth(self.dag)
        return {"tasks": len(self.dag), "edges": sum(len(t.deps) for t in self.dag), "flops": self.dag.flops,
                "bytes_read": read, "bytes_written": written, "tiles_read": tiles,
                "critical_path_tasks": max(depth.values(), default=0),
                "critical_path_flops": max(flops_path.values(), default=0.0),
                "peak_tiles_in_flight": _peak_tiles(self.dag, steps), "workers": self.workers,
                "scratch_matrices": sorted(self.scratch), "scratch_bytes_written": scratch,
                "scratch_peak_bytes": planned_peak(self.dag, self.scratch.values(), steps) if self.scratch else 0,
                "largest_task_bytes": peak_bytes(largest) if largest else 0,
                "largest_task_op": largest.op if largest else None}

    def __repr__(self) -> str:
        s = self.stats()
        scratch = (f", scratch {len(s['scratch_matrices'])} matrices ({s['scratch_bytes_written'] / 1e6:.4g} MB "
                   f"written, at most {s['scratch_peak_bytes'] / 1e6:.4g} MB at once: each tile is deleted after "
                   "its last reader, the rest after the run)" if self.scratch else "")
        return (f"Plan({self.desc!r}: {s['tasks']} tasks, {s['edges']} edges, {s['flops'] / 1e9:.3g} GFLOP, "
                f"reads {s['bytes_read'] / 1e6:.4g} MB, writes {s['bytes_written'] / 1e6:.4g} MB, critical path "
                f"{s['critical_path_tasks']} tasks, peak {s['peak_tiles_in_flight']} tiles in flight, largest task "
                f"{s['largest_task_bytes'] / 1e6:.4g} MB ({s['largest_task_op']}){scratch}, outputs "
                f"{[o.matrix.key for o in self.outputs]})")


def compose(*plans: Plan) -> Plan:
    """One plan running several: a task of a later plan waits only for the tasks that write the tiles it
    reads (not for the whole earlier plan), so ``(A @ B) @ C`` starts multiplying as soon as its first
    row of ``A @ B`` tiles exists. Plans must be given in dependency order; task ids must not clash
    (they are prefixed with their output's key, so distinct outputs suffice).

    Parameters
    ----------
    *plans : Plan
        Plans in dependency order.

    Returns
    -------
    Plan
        One plan; run it with :func:`run`.

    Raises
    ------
    ValueError
        No plans, or a plan writing a matrix that an earlier one reads.
    """
    if not plans:
        raise ValueError("compose needs at least one plan")
    _check_composable(plans)
    dag, writer, outputs, scratch = DAG(), {}, [], {}
    for plan in plans:
        for task in plan.dag:
            extra = {writer[_stored(ref)] for ref in _refs((task.inputs, task.params)) if _stored(ref) in writer}
            deps = task.deps + tuple(sorted(extra - set(task.deps)))
            dag.add(dataclasses.replace(task, deps=deps) if deps != task.deps else task)
        finals = {_where(o.matrix) for o in plan.outputs}  # tasks may write through a view (R.T) of one
        for task in plan.dag:  # later plans depend on this plan's final outputs, never its scratch
            if _where(task.output[0]) in finals:
                writer[_stored(task.output)] = task.id
        outputs += plan.outputs
        for name, m in plan.scratch.items():
            if name in scratch and scratch[name] is not m:
                raise ValueError(f"composed plans declare the same scratch matrix {name!r}")
            scratch[name] = m
    for task in list(dag):  # a task alone in its plan (numpywren.worker.lone) may not be alone in the whole
        if (task.params or {}).get("alone") and not dag.alone(task.id):
            dag.tasks[task.id] = dataclasses.replace(task, params={**task.params, "alone": False})
    finishes = [p.finish for p in plans if p.finish is not None]
    finish = (lambda: [f() for f in finishes][-1]) if finishes else None
    return Plan(dag, outputs, scratch, " -> ".join(p.desc for p in plans), max(p.workers for p in plans), finish,
                tuple(m for p in plans for m in p.finite_inputs))


def _where(matrix: BigMatrix) -> tuple[str, str]:
    """A matrix's place in the store: views (``A.T``) and other handles of one matrix share it."""
    return matrix.store.url, matrix.key


def _check_composable(plans) -> None:
    """Refuse a plan that writes what an earlier plan reads, or what another plan writes: creating an
    output deletes the tiles at its key before any task runs, so the earlier plan's input would be gone."""
    read_by: dict = {}
    written_by: dict = {}
    for k, plan in enumerate(plans, 1):
        for output in plan.outputs:
            where = _where(output.matrix)
            for what, plans_ in (("reads as an input", read_by), ("writes too", written_by)):
                if where in plans_:
                    raise ValueError(f"compose: plan {k} ({plan.desc}) writes {output.matrix.key!r}, which plan "
                                     f"{plans_[where]} {what}; write it to another key")
            written_by[where] = k
        for task in plan.dag:
            for matrix, _, _ in _refs((task.inputs, task.params)):
                read_by.setdefault(_where(matrix), k)


def _stored(ref) -> tuple:
    matrix, i, j = ref
    (si, sj), _ = matrix.stored_index(i, j)
    return matrix.store.url, matrix.key, si, sj


def _depth(dag: DAG) -> dict[str, int]:
    """Longest chain of tasks from each task to the end of the DAG."""
    depth: dict[str, int] = {}
    dependents = dag.dependents()
    for task in reversed(list(dag)):
        depth[task.id] = 1 + max((depth[d] for d in dependents[task.id]), default=0)
    return depth


def _steps(dag: DAG, workers: int, levels: dict[str, float]) -> list[list[str]]:
    """A unit-time list schedule on ``workers`` slots, longest path first: the tasks of each step."""
    waiting = {t.id: len(t.deps) for t in dag}
    dependents = dag.dependents()
    ready = [(-levels[tid], tid) for tid, n in waiting.items() if not n]
    heapq.heapify(ready)
    steps = []
    while ready:
        step = [heapq.heappop(ready)[1] for _ in range(min(workers, len(ready)))]
        steps.append(step)
        for tid in step:
            for child in dependents[tid]:
                waiting[child] -= 1
                if not waiting[child]:
                    heapq.heappush(ready, (-levels[child], child))
    return steps


def _peak_tiles(dag: DAG, steps: list[list[str]]) -> int:
    """Most tiles held at once by running tasks, in the schedule ``steps``."""
    return max((sum(1 + sum(1 for _ in _refs((dag.tasks[t].inputs, dag.tasks[t].params))) for t in step)
                for step in steps), default=0)


def output_matrix(out, shape, tile_shape, dtype, store, *, symmetric: bool = False, hermitian: bool = False,
                  inputs=()) -> BigMatrix:
    """The handle of a plan's output (nothing is written until the plan runs)."""
    if isinstance(out, BigMatrix):
        store, key = out.store, out.key
    elif out is None or isinstance(out, str):
        key = out if out is not None else f"matrices/{protocol.new_id()}"
    else:
        raise TypeError(f"out must be a key (str) or a BigMatrix, got {type(out).__name__}")
    for M in inputs:
        if key.strip("/") == M.key and store.url == M.store.url:
            raise ValueError(f"out={key!r} is also an input ({M!r}); the result would overwrite "
                             "tiles still being read: choose another key")
    M = BigMatrix(store, key, shape, tile_shape, dtype, symmetric=symmetric, hermitian=hermitian)
    M.planned = True  # its tiles come from the plan: builders taking it as input do not look for them
    M.named = out is not None  # when the run creates it, a temporary at that key becomes permanent
    return M


def scratch_matrix(scratch: dict, name: str, like: BigMatrix, shape, tile_shape, dtype) -> BigMatrix:
    """Declare an intermediate matrix; :func:`run` places it under ``jobs/<run>/scratch/<name>``."""
    if name not in scratch:
        scratch[name] = BigMatrix(like.store, protocol.scratch_key("unbound", name), shape, tile_shape, dtype)
    return scratch[name]


# -- validation helpers (jobs.run checks that inputs are complete; builders need not) ---------------------------------------------------------
def check_complete(M: BigMatrix) -> None:
    """Every stored tile of ``M`` is present (one listing), named if not. A matrix that a plan will
    write (an output of a plan not yet run) is checked when that plan runs instead."""
    if getattr(M, "planned", False):
        return
    missing = M.missing_blocks()
    if missing:
        shown = ", ".join(map(str, missing[:5])) + (" ..." if len(missing) > 5 else "")
        raise ValueError(f"{M!r} is missing {len(missing)} of its tiles (stored block indices): {shown}")


def check_finite_values(matrices, executor) -> None:
    """Read every input tile on the workers (checksums and bindings included); name blocks holding NaN/inf."""
    for M in {m.key: m for m in matrices}.values():
        stored = M.T if M.transposed else M  # the stored orientation (of any kind of matrix, zarr-backed too)
        blocks = stored.stored_blocks()
        if not blocks:   # an empty matrix has no tile to scan
            continue
        specs = [Task(f"scan/{i}_{j}", "scan", (stored, i, j)).spec("scan", 1, 0.0) for i, j in blocks]
        futures = executor.submit_tasks(specs)
        try:
            counts = [r["nonfinite"] for r in executor.get_all_results(futures)]
        finally:
            executor.cleanup([futures[0].callset])
        bad = [(ij, n) for ij, n in zip(blocks, counts) if n]
        if bad:
            shown = ", ".join(f"{ij}: {n}" for ij, n in bad[:5]) + (" ..." if len(bad) > 5 else "")
            raise ValueError(f"{M!r} holds {sum(n for _, n in bad)} NaN or inf values (check_finite=True: an "
                             "array must not contain infs or NaNs); "
                             f"blocks (stored indices) and counts: {shown}")


# -- running a plan ---------------------------------------------------------------------------------
#: options of every operation that go to :func:`run` (the run's own, as opposed to the plan's)
RUN_OPTIONS = ("retries", "backoff", "lease_seconds", "progress", "resume", "backups", "silence_seconds",
               "max_cost")


@dataclass
class RunOptions:
    """The options every public operation takes, validated once (see :func:`run_options`).

    ``executor`` (None: the default one, resolved only when computing), ``workers`` (the worker count the
    plan assumes: default the executor's), ``compute`` (False: return the :class:`Plan`), ``check_finite``
    (scan the inputs for NaN/inf on the workers first), and ``run``: the keyword arguments of :func:`run`
    (``retries``, ``backoff``, ``lease_seconds``, ``progress``, ``resume``). ``out`` stays an argument of
    each operation (what it means depends on the result).
    """

    executor: Any = None
    workers: int = 1
    compute: bool = True
    check_finite: bool = False
    run: dict = field(default_factory=dict)

    def submit(self, plan: Plan, inputs=()):
        """The tail every operation shares: the plan (``compute=False``), or validate, run, and return its value."""
        if not self.compute:
            if self.check_finite:   # the plan scans them when it runs
                plan.finite_inputs = tuple(plan.finite_inputs) + tuple(inputs)
            return plan
        if self.check_finite:
            for M in inputs:
                check_complete(M)
            check_finite_values(inputs, self.executor)
        run(plan, self.executor, **self.run)
        return plan.value


def run_options(executor=None, *, compute: bool = True, check_finite: bool = False, workers=None,
                **options) -> RunOptions:
    """Validate an operation's run options, naming any unknown one (see :class:`RunOptions`)."""
    unknown = set(options) - set(RUN_OPTIONS)
    if unknown:
        raise TypeError(f"unexpected options {sorted(unknown)} (known: executor, workers, compute, check_finite, "
                        f"out, {', '.join(RUN_OPTIONS)})")
    if not isinstance(compute, bool):
        raise TypeError(f"compute must be True or False, got {compute!r}")
    if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool) or workers < 1):
        raise ValueError(f"workers must be a positive int, got {workers!r}")
    if compute:
        executor = get_executor(executor)
    if workers is None:
        workers = executor.workers if executor is not None else (os.cpu_count() or 1)
    return RunOptions(executor, workers, compute, bool(check_finite), options)


def executor_and_workers(executor, compute: bool, options: dict):
    """Older form of :func:`run_options` (kept for builders not yet moved to it)."""
    opts = run_options(executor, compute=compute, workers=options.pop("workers", None))
    return opts.executor, opts.workers


def run_or_plan(plan: Plan, executor, inputs, check_finite: bool, compute: bool, options: dict):
    """Older form of :meth:`RunOptions.submit`."""
    opts = run_options(None, compute=False, **options)
    return RunOptions(executor, plan.workers, compute, check_finite, opts.run).submit(plan, inputs)


def run(plan: Plan, executor=None, *, retries: int = 2, backoff: float = 0.25, lease_seconds: float | None = None,
        progress: bool | None = None, resume: bool = False, backups: float | None = BACKUP_FACTOR,
        silence_seconds: float = SILENCE_SECONDS, max_cost: float | None = None) -> Report:
    """Run ``plan`` as one job (see the module docstring); return its report, attached to every output.

    ``max_cost`` (USD): refuse a plan predicted to cost more, and stop the run (cleanly: what is done stays
    for ``resume=True``) before it could cost more; numpywren.budget. Needs an executor with a price model.

    ``executor`` defaults to the shared default executor (numpywren.get_executor). The plan's finishing
    step, if any, runs last; its value is ``plan.value`` and ``report.value``.

    Parameters
    ----------
    plan : Plan
        What to run (from an operation with ``compute=False``, or :func:`compose`).
    executor : Executor, optional
        Where the tasks run.
    retries : int, default 2
        Attempts after a task's first failure.
    backoff : float, default 0.25
        Seconds before the first retry, doubling with each.
    lease_seconds : float, optional
        How long a started task may go without a result before it is re-issued.
    progress : bool, optional
        Show a progress bar (``None``: only on a terminal).
    resume : bool, default False
        Continue the interrupted run recorded with the outputs.
    backups : float or None, default 1.5
        An attempt running longer than this many times its kind's usual time gets a backup attempt
        (numpywren.backups; None: never).
    silence_seconds : float, default 60
        How long an attempt may show no sign of life (not started, or its lease not renewed) before it
        is re-issued (numpywren.liveness).

    Returns
    -------
    Report
        What the job did and how fast.

    Raises
    ------
    JobFailedError
        A task failed after its retries, or another run took over an output.
    """
    executor = get_executor(executor)
    if not plan.outputs and not len(plan.dag):   # nothing to run or write: an empty matrix's answer
        report = Report(run=protocol.new_id("empty"), workers=executor.workers)
        report.value = plan._value = plan.finish() if plan.finish is not None else None
        return report
    check_fits(plan.dag, executor.worker_memory_mb)  # before anything is created or read
    if resume and any(o.matrix.key.startswith("matrices/") for o in plan.outputs):
        raise ValueError("resume=True needs the output key of the interrupted run (out=...)")
    store = plan.outputs[0].matrix.store
    produced = {(o.matrix.store.url, o.matrix.key) for o in plan.outputs}
    for o in plan.outputs:  # inputs the plan does not write itself must be complete now
        for M in o.inputs:
            if (M.store.url, M.key) not in produced:
                M.planned = False
                check_complete(M)
    spending = budget.start(plan, executor, max_cost) if max_cost is not None else None  # refused: nothing read
    scan = [M for M in plan.finite_inputs if (M.store.url, M.key) not in produced]
    if scan:   # check_finite=True of an operation built with compute=False
        for M in scan:
            M.planned = False
            check_complete(M)
        check_finite_values(scan, executor)
    records = [_read_record(o.matrix) for o in plan.outputs]
    run_id = _claim(plan, records, resume)
    for o in plan.outputs:
        _create(o.matrix, overwrite=not resume, run_id=run_id)
        o.matrix.planned = False
    for name, m in plan.scratch.items():
        m.key = protocol.scratch_key(run_id, name)
        _create(m, overwrite=not resume, run_id=run_id)
    scratch = ScratchTiles(plan.dag, plan.scratch.values()) if plan.scratch else None
    driver = f"{socket.gethostname()}:{os.getpid()}"
    for o in plan.outputs:
        _write_record(o, run_id, driver, "running")
    heartbeat = Heartbeat(store, run_id, info={"driver": driver, "outputs": [o.matrix.key for o in plan.outputs]})
    if spending is not None:
        executor.budget = spending
    try:
        try:
            report = scheduler.run(plan.dag, executor, run=run_id, retries=retries, backoff=backoff,
                                   lease_seconds=lease_seconds, progress=progress, skip_existing=resume,
                                   desc=plan.desc, backups=backups, silence_seconds=silence_seconds,
                                   scratch=scratch)
        except JobFailedError as e:
            if spending is None or spending.stopped is None:
                raise
            stop = budget.BudgetExceededError(
                f"{plan.desc} stopped by its budget: {spending.stopped}; spent ${spending.spent:.6f} on "
                f"{spending.tally['invocations']} invocations. Finished tiles are kept: run again with "
                f"resume=True and a larger max_cost to finish")
            stop.budget = spending.summary()
            raise stop from e
        finally:
            if spending is not None:
                executor.budget = None
        if spending is not None:
            report.budget = spending.summary()
        for o in plan.outputs:
            if o.values is None:
                _verify(o.matrix, run_id, executor)
            else:
                _take_values(o, plan.dag, report, run_id)
            _write_record(o, run_id, driver, "done")
    except BaseException:
        for o in plan.outputs:  # best effort: the record says what happened (a resume may continue it)
            try:
                _write_record(o, run_id, driver, "failed")
            except Exception:  # noqa: BLE001 - the original error matters more
                log.warning("could not record the failure of run %s in %s", run_id, o.matrix.key, exc_info=True)
        raise
    finally:
        for m in plan.scratch.values():
            m.delete()
        heartbeat.stop()
        store.delete_prefix(protocol.owner_prefix(run_id))
    for o in plan.outputs:
        o.matrix.report = report
    report.value = None
    if plan.finish is not None:
        plan._value = report.value = plan.finish()
    return report


def _read_record(M: BigMatrix) -> dict | None:
    try:
        record = json.loads(M.store.get(f"{M.key}/{JOB_RECORD}"))
    except KeyNotFoundError:
        return None
    except ValueError:
        raise ValueError(f"{M.key}/{JOB_RECORD} in {M.store.url} is not a job record; delete the matrix "
                         "(BigMatrix.delete) or choose another out") from None
    return record if isinstance(record, dict) else None


def _claim(plan: Plan, records: list, resume: bool) -> str:
    """This run's id: a new one, or (resume) the interrupted run's, after the checks of the module docstring."""
    for o, record in zip(plan.outputs, records):
        if record is None or record.get("state") != "running":
            continue
        age = _heartbeat_age(o.matrix.store, record.get("run"))
        if age is not None and age < LIVE_SECONDS:
            raise JobFailedError(f"{o.matrix.key!r} is being computed by run {record['run']!r} (driver "
                                 f"{record.get('driver')}, heartbeat {age:.0f} s ago); wait for it, or stop it "
                                 f"and retry in {LIVE_SECONDS:.0f} s")
    if not resume:
        return protocol.new_id(plan.outputs[-1].op)
    runs = set()
    for o, record in zip(plan.outputs, records):
        _check_layout(o.matrix)
        if record is not None and record.get("spec") != json.loads(json.dumps(o.spec())):
            raise ValueError(f"resume=True, but {o.matrix.key!r} was computed by another job ({record.get('spec')}),"
                             f" not this one ({o.spec()}); run without resume=True to recompute it")
        if record is not None:
            runs.add(record.get("run"))
    if len(runs) > 1:
        raise ValueError(f"resume=True, but the outputs were written by different runs {sorted(map(str, runs))}")
    return runs.pop() if runs else protocol.new_id(plan.outputs[-1].op)


def _check_layout(M: BigMatrix) -> None:
    """Resume: an existing ``M`` must have the planned shape, tiles and dtype (its tiles are kept)."""
    try:
        existing = BigMatrix.open(M.store, M.key)
    except KeyError:
        return
    if existing._layout() != M._layout():
        raise ValueError(f"resume=True, but {M.key!r} holds a matrix of another shape, tile shape or dtype "
                         f"({existing!r}); run without resume=True to overwrite it")


def _heartbeat_age(store, run_id) -> float | None:
    """Seconds since the run's driver last beat; None if it has none or is known dead (same host, no process)."""
    if not isinstance(run_id, str):
        return None
    try:
        beat = json.loads(store.get(protocol.heartbeat_key(run_id)))
        age = max(0.0, time.time() - float(beat["time"]))
    except (KeyNotFoundError, ValueError, KeyError, TypeError):
        return None
    host, _, pid = str(beat.get("driver", "")).rpartition(":")
    if host == socket.gethostname() and pid.isdigit() and not _process_alive(int(pid)):
        return None
    return age


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _create(M: BigMatrix, overwrite: bool, run_id: str) -> None:
    """Create ``M``'s metadata in place (new generation), or adopt the existing one (resume).

    An output of another format (a zarr array) prepares itself (``M.prepare_output``)."""
    prepare = getattr(M, "prepare_output", None)
    if prepare is not None:
        return prepare(run_id, overwrite)
    try:
        made = BigMatrix.create(M._shape, M._tile_shape, M.dtype, M.store, M.key, symmetric=M.symmetric,
                                hermitian=M.hermitian, overwrite=overwrite)
    except FileExistsError as e:
        raise ValueError(f"resume=True, but {M.key!r} holds a matrix of another shape, tile shape or "
                         f"dtype ({e}); run without resume=True to overwrite it") from None
    M.generation = made.generation
    if getattr(M, "named", False):
        temporaries.release(M.store.url, M.key)  # a named result is never deleted with an old handle


def _write_record(o: Output, run_id: str, driver: str, state: str) -> None:
    M = o.matrix
    record = {"run": run_id, "generation": M.generation, "state": state, "driver": driver,
              "time": time.time(), "spec": o.spec()}
    M.store.put(f"{M.key}/{JOB_RECORD}", json.dumps(record, sort_keys=True).encode())


def _verify(M: BigMatrix, run_id: str, executor=None) -> None:
    """Every output tile is this run's, and the record still names this run; else fail, naming who wrote it.

    The tiles' headers are read from the driver (IO_THREADS at once), or, for more than
    VERIFY_ON_WORKERS_ABOVE tiles, by the workers in batches (numpywren.verification): time
    O(tiles / workers), not O(tiles / IO_THREADS). An output of another format verifies (and
    publishes) itself (``M.verify_output``).
    """
    record = _read_record(M) or {}
    verify = getattr(M, "verify_output", None)
    if verify is not None:
        if record.get("run") != run_id:
            raise JobFailedError(f"{M.key!r} was taken over by run {record.get('run')!r} (driver "
                                 f"{record.get('driver')}) while run {run_id!r} computed it")
        return verify(run_id)
    _check_still_ours(M, run_id, record)
    blocks = M.stored_blocks()
    if executor is not None and len(blocks) > VERIFY_ON_WORKERS_ABOVE and executor.workers > 1:
        bad = _bad_tiles_on_workers(M, run_id, blocks, executor)
    else:
        with ThreadPoolExecutor(min(IO_THREADS, max(1, len(blocks)))) as pool:
            bindings = list(pool.map(lambda ij: M.tile_binding(*ij), blocks))
        bad = [(ij, b) for ij, b in zip(blocks, bindings)
               if not b or (b["gen"], b["run"]) != (M.generation, run_id)]
    if bad:
        (i, j), binding = bad[0]
        who = ("missing or corrupt" if binding is None else
               f"written by run {binding['run']!r} for generation {binding['gen']}")
        raise JobFailedError(f"{len(bad)} tiles of {M.key!r} are not run {run_id!r}'s after it finished "
                             f"(block ({i}, {j}) is {who}): another run wrote into the same output; "
                             "rerun it once the other run has ended")


def _check_still_ours(M: BigMatrix, run_id: str, record: dict) -> None:
    """The job record still names this run and generation, and so does the matrix's metadata."""
    try:
        current = BigMatrix.open(M.store, M.key).generation
    except (KeyError, ValueError):
        current = None
    if record.get("run") != run_id or record.get("generation") != M.generation or current != M.generation:
        raise JobFailedError(f"{M.key!r} was taken over by run {record.get('run')!r} (driver "
                             f"{record.get('driver')}) while run {run_id!r} computed it; its tiles are that "
                             "run's, not this one's")


def _take_values(o: Output, dag: DAG, report: Report, run_id: str) -> None:
    """Verify an output whose tasks returned their blocks as values (no tiles): its record still names this
    run (as _verify checks), and each block is the accepted attempt's, bound to this run and generation;
    fill ``o.values``."""
    M = o.matrix
    _check_still_ours(M, run_id, _read_record(M) or {})
    o.values.clear()
    for task in dag:
        matrix, i, j = task.output
        if _where(matrix) != _where(M):
            continue
        value = report.values.get(task.id)
        if value is None or not task.params.get(protocol.VALUE_PARAM):
            raise JobFailedError(f"task {task.id!r} of run {run_id!r} returned no value for {M.key!r}")
        try:
            block, run, generation = protocol.decode_value(value, matrix.dtype, matrix.block_shape(i, j))
        except ValueError as e:
            raise JobFailedError(f"task {task.id!r} of run {run_id!r}: {e}") from None
        if (run, generation) != (run_id, M.generation):
            raise JobFailedError(f"task {task.id!r} returned a value of run {run!r} for generation {generation}, "
                                 f"not run {run_id!r}'s for generation {M.generation}")
        o.values[(i, j)] = block


def _bad_tiles_on_workers(M: BigMatrix, run_id: str, blocks: list, executor) -> list:
    """The (block, binding) of ``M``'s tiles in ``blocks`` not bound to ``run_id`` and its generation, read
    by the workers in batches (numpywren.verification)."""
    size = batch_size(len(blocks), executor.workers, IO_THREADS)
    specs = [Task(f"verify/{k}", "verify", (M, *blocks[k]),
                  params={"blocks": [list(ij) for ij in blocks[k:k + size]], "gen": M.generation,
                          "run": run_id}).spec(run_id, 1, 0.0)
             for k in range(0, len(blocks), size)]
    futures = executor.submit_tasks(specs)
    try:
        results = executor.get_all_results(futures)
    finally:
        executor.cleanup([futures[0].callset])
    return [((i, j), binding) for r in results for i, j, binding in r["bad"]]
