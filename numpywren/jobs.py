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
   declared by the builder and live under ``jobs/<run>/scratch/`` (protocol).
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

import json
import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from numpywren import protocol, scheduler
from numpywren.dag import DAG
from numpywren.heartbeat import HEARTBEAT_SECONDS, Heartbeat
from numpywren.matrix import IO_THREADS, JOB_RECORD, BigMatrix
from numpywren.scheduler import JobFailedError, Report
from numpywren.storage import KeyNotFoundError

#: A run whose heartbeat is younger than this is alive (three missed beats mean dead).
LIVE_SECONDS = 3 * HEARTBEAT_SECONDS


@dataclass(eq=False)
class Output:
    """A matrix a plan computes, and what computes it (recorded in ``<key>/job.json``)."""

    matrix: BigMatrix
    op: str
    inputs: tuple
    params: dict = field(default_factory=dict)

    def spec(self) -> dict:
        """The computation, as recorded: a resume must describe the same one."""
        return {"op": self.op, "params": self.params,
                "inputs": [{"store": M.store.url, "key": M.key, "transposed": M.transposed, **M._layout(),
                            "generation": M.current_generation()} for M in self.inputs]}


@dataclass(eq=False)
class Plan:
    """A DAG of tile tasks plus the matrices it writes: a value to inspect, then run with :func:`run`.

    ``workers`` is the worker count the builder assumed (it shapes e.g. the split-k rule).
    """

    dag: DAG
    outputs: list[Output]
    scratch: dict[str, BigMatrix]
    desc: str
    workers: int

    @property
    def result(self) -> BigMatrix:
        return self.outputs[-1].matrix


def output_matrix(out, shape, tile_shape, dtype, store, *, symmetric: bool = False, inputs=()) -> BigMatrix:
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
    return BigMatrix(store, key, shape, tile_shape, dtype, symmetric=symmetric)


def scratch_matrix(scratch: dict, name: str, like: BigMatrix, shape, tile_shape, dtype) -> BigMatrix:
    """Declare an intermediate matrix; :func:`run` places it under ``jobs/<run>/scratch/<name>``."""
    if name not in scratch:
        scratch[name] = BigMatrix(like.store, protocol.scratch_key("unbound", name), shape, tile_shape, dtype)
    return scratch[name]


# -- validation helpers shared by the builders ---------------------------------------------------------
def check_complete(M: BigMatrix) -> None:
    """Every stored tile of ``M`` is present (one listing), named if not."""
    missing = M.missing_blocks()
    if missing:
        shown = ", ".join(map(str, missing[:5])) + (" ..." if len(missing) > 5 else "")
        raise ValueError(f"{M!r} is missing {len(missing)} of its tiles (stored block indices): {shown}")


def check_finite_values(matrices, executor) -> None:
    """Read every input tile on the workers (checksums and bindings included); name blocks holding NaN/inf."""
    from numpywren.dag import Task

    for M in {m.key: m for m in matrices}.values():
        stored = BigMatrix(M.store, M.key, M._shape, M._tile_shape, M.dtype, symmetric=M.symmetric,
                           generation=M.current_generation())
        blocks = stored.stored_blocks()
        specs = [Task(f"scan/{i}_{j}", "scan", (stored, i, j)).spec("scan", 1, 0.0) for i, j in blocks]
        futures = executor.submit_tasks(specs)
        try:
            counts = [r["nonfinite"] for r in executor.get_all_results(futures)]
        finally:
            executor.cleanup([futures[0].callset])
        bad = [(ij, n) for ij, n in zip(blocks, counts) if n]
        if bad:
            shown = ", ".join(f"{ij}: {n}" for ij, n in bad[:5]) + (" ..." if len(bad) > 5 else "")
            raise ValueError(f"{M!r} holds {sum(n for _, n in bad)} NaN or inf values (check_finite=True); "
                             f"blocks (stored indices) and counts: {shown}")


# -- running a plan ---------------------------------------------------------------------------------
#: options of every operation that go to :func:`run`
RUN_OPTIONS = ("retries", "backoff", "lease_seconds", "progress", "resume")


def run_or_plan(plan: Plan, executor, inputs, check_finite: bool, compute: bool, options: dict):
    """The tail every operation shares: return the plan (``compute=False``), or validate, run, return the result."""
    unknown = set(options) - set(RUN_OPTIONS)
    if unknown:
        raise TypeError(f"unexpected options {sorted(unknown)} (known: {', '.join(RUN_OPTIONS)})")
    if not compute:
        return plan
    if check_finite:
        check_finite_values(inputs, executor)
    run(plan, executor, **options)
    return plan.result


def run(plan: Plan, executor, *, retries: int = 2, backoff: float = 0.25, lease_seconds: float | None = None,
        progress: bool | None = None, resume: bool = False) -> Report:
    """Run ``plan`` as one job (see the module docstring); return its report, attached to every output."""
    if resume and any(o.matrix.key.startswith("matrices/") for o in plan.outputs):
        raise ValueError("resume=True needs the output key of the interrupted run (out=...)")
    store = plan.outputs[0].matrix.store
    records = [_read_record(o.matrix) for o in plan.outputs]
    run_id = _claim(plan, records, resume)
    for o in plan.outputs:
        _create(o.matrix, overwrite=not resume)
    for name, m in plan.scratch.items():
        m.key = protocol.scratch_key(run_id, name)
        _create(m, overwrite=not resume)
    driver = f"{socket.gethostname()}:{os.getpid()}"
    for o in plan.outputs:
        _write_record(o, run_id, driver, "running")
    heartbeat = Heartbeat(store, run_id, info={"driver": driver, "outputs": [o.matrix.key for o in plan.outputs]})
    try:
        report = scheduler.run(plan.dag, executor, run=run_id, retries=retries, backoff=backoff,
                               lease_seconds=lease_seconds, progress=progress, skip_existing=resume,
                               desc=plan.desc)
        for o in plan.outputs:
            _verify(o.matrix, run_id)
            _write_record(o, run_id, driver, "done")
    finally:
        for m in plan.scratch.values():
            m.delete()
        heartbeat.stop()
        store.delete_prefix(protocol.owner_prefix(run_id))
    for o in plan.outputs:
        o.matrix.report = report
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


def _create(M: BigMatrix, overwrite: bool) -> None:
    """Create ``M``'s metadata in place (new generation), or adopt the existing one (resume)."""
    try:
        made = BigMatrix.create(M._shape, M._tile_shape, M.dtype, M.store, M.key, symmetric=M.symmetric,
                                overwrite=overwrite)
    except FileExistsError as e:
        raise ValueError(f"resume=True, but {M.key!r} holds a matrix of another shape, tile shape or "
                         f"dtype ({e}); run without resume=True to overwrite it") from None
    M.generation = made.generation


def _write_record(o: Output, run_id: str, driver: str, state: str) -> None:
    M = o.matrix
    record = {"run": run_id, "generation": M.generation, "state": state, "driver": driver,
              "time": time.time(), "spec": o.spec()}
    M.store.put(f"{M.key}/{JOB_RECORD}", json.dumps(record, sort_keys=True).encode())


def _verify(M: BigMatrix, run_id: str) -> None:
    """Every output tile is this run's, and the record still names this run; else fail, naming who wrote it."""
    record = _read_record(M) or {}
    if record.get("run") != run_id or record.get("generation") != M.generation:
        raise JobFailedError(f"{M.key!r} was taken over by run {record.get('run')!r} (driver "
                             f"{record.get('driver')}) while run {run_id!r} computed it; its tiles are that "
                             "run's, not this one's")
    blocks = M.stored_blocks()
    with ThreadPoolExecutor(min(IO_THREADS, max(1, len(blocks)))) as pool:
        bindings = list(pool.map(lambda ij: M.tile_binding(*ij), blocks))
    bad = [(ij, b) for ij, b in zip(blocks, bindings) if not b or (b["gen"], b["run"]) != (M.generation, run_id)]
    if bad:
        (i, j), binding = bad[0]
        who = ("missing or corrupt" if binding is None else
               f"written by run {binding['run']!r} for generation {binding['gen']}")
        raise JobFailedError(f"{len(bad)} tiles of {M.key!r} are not run {run_id!r}'s after it finished "
                             f"(block ({i}, {j}) is {who}): another run wrote into the same output; "
                             "rerun it once the other run has ended")
