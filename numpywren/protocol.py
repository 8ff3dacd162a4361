"""The wire protocol between driver and workers, defined once: events, results, errors, store keys.

**Events** are small JSON objects; data never travels in them. Two kinds:

* ``"call"`` (PyWren's ``map``/``call_async``): the function and the arguments
  are cloudpickled objects in the store; the result is a pickle. Whoever can
  write the store can therefore run code on workers and on the driver (see the
  README's Security section).
* ``"tile"`` (every linear-algebra job): the task spec travels *inside* the
  event as plain JSON (an allow-listed operation name, matrix handles and
  block indices), and the result is JSON. Nothing on this path is unpickled,
  by the worker or by the driver; errors cross as an allow-listed type name
  plus message.

**Store keys** used by the runtime all live here (``jobs/...``); matrices keep
their own readable layout (``<key>/meta.json``, ``<key>/tiles/<hh>/<i>_<j>``,
``<key>/job.json``, see :mod:`numpywren.matrix`).

* ``jobs/<session>/<callset>/func-<sha>.pkl | args/<call>.pkl | results/<hh>/<call>.{pkl,json}``
  an executor's batches of calls ("callsets", PyWren's word), grouped by the
  executor session that created them; ``args/bundle-<call>.pkl`` holds the
  pickled arguments of several calls, one after another, and each call's
  event names its slice (``"args_at": [offset, length]``), so that a ``map``
  of small arguments costs one upload per bundle, not one per call;
* ``jobs/<session>/done/<ms>@<callset>@<call>[@<outcome>]``: a done-marker per
  finished call of a backend that asks for them (event field ``"done": true``,
  Lambda): written after the result, named by the worker's completion time in
  epoch milliseconds so that the driver finds new completions by listing from
  the last marker it saw (``StartAfter``), O(1) requests per completion however
  many are done. A small result also travels in the marker's name
  (``<outcome>``: the result object's exact bytes, zlib-compressed, base64url,
  at most MAX_OUTCOME_CHARS): the listing then delivers it and the driver reads
  no result object. The driver decodes it with ``decode_result``, exactly as
  the object (JSON for a tile task, never unpickled), and only for a call it
  has in flight; a marker without one (a long error, a long store prefix)
  sends the driver to the result key;
* ``jobs/<run>/leases/<hh>/<task>@<attempt> | scratch/<name>/...`` one run of a DAG
  job (leases and intermediate matrices such as split-k partials);
* ``<hh>`` (``spread``): a hash of the name, so that what every task writes (lease, result, and its tile,
  see numpywren.matrix) spreads over 256 key ranges S3 can split its request rate on. A fresh bucket starts
  with S3's baseline rate (3,500 writes/s, 5,500 reads/s per partition) for all of these together and splits
  partitions only under sustained load (answering 503 SlowDown meanwhile; numpywren.simulate models the
  ramp). Done-markers stay in one folder per session: the driver lists them in completion-time order from a
  cursor, one request per poll, and they are one write in four per task;
* ``jobs/<owner>/heartbeat``: refreshed while the session or run is alive, so
  ``numpywren store gc`` never removes what a live driver needs.
"""
from __future__ import annotations

import base64
import concurrent.futures
import json
import time
import traceback
import uuid
import zlib
from dataclasses import dataclass

import numpy as np

from numpywren.worker.faults import InjectedFault
from numpywren.serialize import dumps, loads
from numpywren.storage import KeyNotFoundError, StoreError
from numpywren.tile import CorruptTileError, InputChangedError, StaleTileError
from numpywren.tiled import TiledMatrix

#: 3: argument bundles (``args_at``) and results in done-markers. A worker of version 2 would ignore
#: ``args_at`` and unpickle a bundle's first arguments for every call of it: it must refuse these events.
EVENT_VERSION = 3
KINDS = ("call", "tile")
#: Optional event fields, each validated by ``validate_event``: ``not_after`` (epoch seconds; a worker
#: starting later drops the event, see numpywren.worker.lambda_handler), ``done`` (write a done-marker after
#: the result), ``env`` (a call's environment variables, str -> str), ``timeout`` (seconds the call may run,
#: counted from when the worker starts it: ``with_timeout``), ``deadline`` (the same as an epoch time, for a
#: caller that already started the clock; see ``call_deadline``) and, for a call, ``args_at`` ([offset,
#: length] of its arguments in an argument bundle). Any other field is refused.
OPTIONAL_FIELDS = ("not_after", "done", "args_at", "env", "timeout", "deadline")
EVENT_FIELDS = {"call": ("v", "kind", "store", "callset", "call", "func", "args", "result"),
                "tile": ("v", "kind", "store", "callset", "call", "task", "result")}
#: Tile operations that only read (validation scans): they take no lease (numpywren.worker.leases).
READ_ONLY_OPS = frozenset({"scan", "verify"})
JOBS = "jobs"
HEARTBEAT = "heartbeat"
#: Task params naming tiles a task writes besides its output (a band task's ``writes``, the LU panel's
#: ``multipliers``, ``pivot_order`` and ``panel_blocks``). Those tiles must agree with one another and with the output (pivots, eigenvector
#: signs), so two live attempts of such a task must never interleave their writes: the scheduler sends
#: them no backup (numpywren.backups), and a worker counts them out of its input (worker.progress).
SIDE_OUTPUT_PARAMS = ("writes", "multipliers", "pivot_order", "panel_blocks")


#: A task whose params set VALUE_PARAM (true) returns its output block in its JSON result (``"value"``, see
#: ``encode_value``) instead of writing it as a tile: a small result the driver reads anyway (a reduction's
#: column) needs no stored tile, no verification read and no finishing read and delete. The value is
#: bound to the run and generation of the output, as a tile is (the driver checks both: numpywren.jobs).
VALUE_PARAM = "value"
#: Largest block a task may return as a value (its raw bytes; 1 MiB: a column of 131,072 float64 rows).
#: A builder writes a larger block as a tile; a worker refuses to return one.
VALUE_MAX_BYTES = 1 << 20


def has_side_outputs(params: dict | None) -> bool:
    """Whether a task with these params writes tiles besides its output (``SIDE_OUTPUT_PARAMS``)."""
    return any((params or {}).get(name) is not None for name in SIDE_OUTPUT_PARAMS)


# -- identities and keys ------------------------------------------------------------------------------
def new_id(prefix: str = "") -> str:
    """A fresh, unique id for a session or a run (``prefix`` makes it readable)."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}" if prefix else uuid.uuid4().hex[:12]


def owner_prefix(owner: str) -> str:
    """Everything a session or run keeps in the store lives under this prefix."""
    return f"{JOBS}/{owner}/"


def heartbeat_key(owner: str) -> str:
    return f"{JOBS}/{owner}/{HEARTBEAT}"


def callset_prefix(callset: str) -> str:
    """``callset`` is ``<session>/<n>``."""
    return f"{JOBS}/{callset}/"


def func_key(callset: str, digest: str) -> str:
    return f"{JOBS}/{callset}/func-{digest}.pkl"


def args_key(callset: str, call: str) -> str:
    return f"{JOBS}/{callset}/args/{call}.pkl"


def args_bundle_key(callset: str, first_call: str) -> str:
    """The argument bundle whose first call is ``first_call`` (see the module docstring)."""
    return f"{JOBS}/{callset}/args/bundle-{first_call}.pkl"


def call_args(event: dict, data: bytes) -> bytes | memoryview:
    """The pickled arguments of a call, from the bytes of the object its event names (its slice of a bundle)."""
    at = event.get("args_at")
    if at is None:
        return data
    offset, length = at
    if offset + length > len(data):
        raise ValueError(f"args_at {at} lies outside the {len(data)}-byte argument bundle {event['args']!r}")
    return memoryview(data)[offset:offset + length]


def spread(name: str) -> str:
    """``<hh>/<name>``: a 2-hex-digit hash folder, so that keys written once per task (leases, results) fall
    into 256 key ranges S3 can partition on, as tile keys do (numpywren.matrix), not one hot prefix."""
    return f"{zlib.crc32(name.encode()) & 0xFF:02x}/{name}"


def result_key(callset: str, call: str, kind: str) -> str:
    return f"{JOBS}/{callset}/results/{spread(call)}.{'json' if kind == 'tile' else 'pkl'}"


def done_prefix(session: str) -> str:
    """Where the done-markers of an executor session's calls appear (see the module docstring)."""
    return f"{JOBS}/{session}/done/"


#: Longest outcome a done-marker's name carries (S3 keys stop at 1024 bytes, the store's prefix included).
MAX_OUTCOME_CHARS = 600
#: ... and the most bytes it may inflate to (a marker is input: no decompression bomb).
MAX_OUTCOME_BYTES = 1 << 16


def done_key(callset: str, call: str, when: float, result: bytes | None = None) -> str:
    """The done-marker of a call that finished at ``when`` (epoch seconds): keys sort by completion time.

    ``result`` (the bytes written under the call's result key) rides in the name when it is short enough.
    """
    session = callset.split("/", 1)[0]
    key = f"{done_prefix(session)}{int(when * 1000):014d}@{callset.replace('/', '~')}@{call}"
    outcome = encode_outcome(result) if result is not None else None
    return f"{key}@{outcome}" if outcome else key


def encode_outcome(result: bytes) -> str | None:
    """``result`` as the marker's outcome field (zlib, base64url without padding), or None if too long."""
    text = base64.urlsafe_b64encode(zlib.compress(result, 6)).rstrip(b"=").decode()
    return text if len(text) <= MAX_OUTCOME_CHARS and len(result) <= MAX_OUTCOME_BYTES else None


def decode_outcome(text: str) -> bytes:
    """The result bytes a marker's outcome field carries; ValueError if it is not one."""
    if len(text) > MAX_OUTCOME_CHARS:
        raise ValueError(f"malformed done-marker outcome: longer than {MAX_OUTCOME_CHARS} characters")
    try:
        packed = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        inflater = zlib.decompressobj()
        data = inflater.decompress(packed, MAX_OUTCOME_BYTES)
    except (ValueError, zlib.error) as exc:
        raise ValueError(f"malformed done-marker outcome: {exc}") from None
    if not inflater.eof or inflater.unconsumed_tail or inflater.unused_data:
        raise ValueError("malformed done-marker outcome: truncated, trailing data, or over "
                         f"{MAX_OUTCOME_BYTES} bytes")
    return data


def done_cursor(session: str, when: float) -> str:
    """A key sorting before every marker of ``session`` written at or after ``when`` (a StartAfter bound)."""
    return f"{done_prefix(session)}{max(0, int(when * 1000) - 1):014d}@~"


def parse_done_key(key: str) -> tuple[str, str, float, str | None]:
    """(callset, call, epoch seconds, outcome field or None) of a done-marker key; ValueError if it is not one.

    The outcome is not decoded here (see decode_outcome): the driver decodes only those of calls it awaits.
    """
    name = key.rpartition("/")[2]
    parts = name.split("@")
    try:
        if len(parts) not in (3, 4) or not parts[0].isdigit():
            raise ValueError
        outcome = parts[3] if len(parts) == 4 else None
        return parts[1].replace("~", "/"), parts[2], int(parts[0]) / 1000.0, outcome
    except ValueError:
        raise ValueError(f"not a done-marker key: {key!r}") from None


def lease_prefix(run: str) -> str:
    return f"{JOBS}/{run}/leases/"


def lease_key(run: str, task_id: str, attempt: int) -> str:
    # Task ids contain '/', which would make folders (and file/folder clashes) in a LocalStore.
    return f"{lease_prefix(run)}{spread(task_id.replace('/', '~'))}@{attempt}"


def lease_record(task_id: str, attempt: int, worker: str, start: float, seconds: float, beats: int = 0,
                 progress: float | None = None, ran: float | None = None) -> bytes:
    """The JSON a worker writes under its attempt's lease key (numpywren.worker.leases): who runs it, since when
    (``start``, worker clock), its ``beats`` so far, and, once it has some, its progress: the ``fraction`` of its
    input read after ``ran`` seconds on the worker's clock (numpywren.worker.progress)."""
    now = time.time()
    record = {"task": task_id, "attempt": attempt, "worker": worker, "start": start, "expires": start + seconds,
              "beats": beats, "renewed": now}
    if progress is not None and ran is not None:
        record.update(fraction=round(float(progress), 4), ran=round(float(ran), 3))
    return json.dumps(record).encode()


def lease_progress(data: bytes) -> tuple[float, float] | None:
    """(seconds run, fraction of its input read) that a lease record reports; None if it reports no progress
    or is not a lease record (a driver reads what a worker wrote: nothing in it is trusted further)."""
    try:
        record = json.loads(data)
        ran, fraction = float(record["ran"]), float(record["fraction"])
    except (ValueError, TypeError, KeyError):
        return None
    if not (ran >= 0 and 0 <= fraction <= 1):  # NaN too
        return None
    return ran, fraction


#: Fields the driver adds to a task spec for its worker: ``beat``, seconds between lease renewals (the
#: heartbeat, numpywren.liveness), and ``report``, seconds between progress reports when shorter
#: (numpywren.backups sets it from the task's usual time, so a straggler shows early).
SPEC_TIMING_FIELDS = ("beat", "report")


def renew_seconds(spec: dict) -> float | None:
    """How often the worker of ``spec`` rewrites its lease: the shorter of ``beat`` and ``report``."""
    every = [float(spec[f]) for f in SPEC_TIMING_FIELDS if _number(spec.get(f)) and spec[f] > 0]
    return min(every) if every else None


def probe_key(nonce: str) -> str:
    """The one key a deploy-time probe writes, reads, lists and deletes (numpywren.worker.lambda_handler.probe)."""
    return f"{JOBS}/probe-{nonce}/probe"


def scratch_key(run: str, name: str) -> str:
    """Key of an intermediate matrix of a run (deleted when the run ends)."""
    return f"{JOBS}/{run}/scratch/{name}"


def is_scratch_key(key: str) -> bool:
    """Whether ``key`` is an intermediate matrix of some run (see ``scratch_key``)."""
    parts = key.split("/")
    return len(parts) >= 4 and parts[0] == JOBS and parts[2] == "scratch"


# -- tile task specs -----------------------------------------------------------------------------------------
#: (matrix handle, i, j): block (i, j) of a matrix (or of a view such as A.T), in a task's output, inputs, params
TileRef = tuple


@dataclass(slots=True, eq=False)
class TileTask:
    """A tile task as its worker sees it (decode_task): matrices are TiledMatrix handles, not the driver's."""
    id: str
    op: str
    output: TileRef
    inputs: tuple
    params: dict
    flops: float
    run: str
    attempt: int
    lease_seconds: float


def encode_task(task_id: str, op: str, output, inputs, params, flops: float, run: str, attempt: int,
                lease_seconds: float) -> dict:
    """The JSON spec of one attempt of a tile task: a table of matrix references (``to_ref()``) and
    ``{"@": [matrix, i, j]}`` block references in ``out``, ``in`` and ``params``. Nothing is pickled."""
    encode = _Encoder()
    spec = {"id": task_id, "op": op, "run": run, "attempt": attempt, "lease": lease_seconds, "flops": flops,
            "out": encode(output), "in": encode(inputs), "params": encode(params or {})}
    spec["m"] = [m.to_ref() for m in encode.matrices]
    return spec


def decode_task(spec: dict, load_matrix=TiledMatrix.from_ref) -> TileTask:
    """Worker side: the task a spec describes, its structure validated (ValueError naming what is wrong)."""
    try:
        decode = _Decoder([load_matrix(ref) for ref in spec["m"]])
        task = TileTask(str(spec["id"]), str(spec["op"]), decode(spec["out"]), decode(spec["in"]),
                        decode(spec["params"]), float(spec.get("flops", 0.0)), str(spec["run"]),
                        int(spec["attempt"]), float(spec["lease"]))
    except (KeyError, TypeError, IndexError) as e:
        raise ValueError(f"malformed task spec ({e!r})") from None
    if not (isinstance(task.output, tuple) and len(task.output) == 3 and isinstance(task.params, dict)):
        raise ValueError("malformed task spec: output must be a block reference, params an object")
    return task


class _Encoder:
    """Block references -> ``{"@": [matrix index, i, j]}``, collecting the matrices in order of first use."""

    def __init__(self):
        self.matrices: list[TiledMatrix] = []
        self._index: dict[int, int] = {}  # id(handle) -> position (the task keeps its handles alive)

    def __call__(self, value):
        if isinstance(value, tuple):
            if len(value) == 3 and isinstance(value[0], TiledMatrix):
                matrix, i, j = value
                index = self._index.get(id(matrix))
                if index is None:
                    index = self._index[id(matrix)] = len(self.matrices)
                    self.matrices.append(matrix)
                return {"@": [index, int(i), int(j)]}
            return [self(v) for v in value]
        if isinstance(value, list):
            return [self(v) for v in value]
        if isinstance(value, dict):
            return {str(k): self(v) for k, v in value.items()}
        return value


class _Decoder:
    def __init__(self, matrices: list[TiledMatrix]):
        self.matrices = matrices

    def __call__(self, value):
        if isinstance(value, dict):
            if set(value) == {"@"}:
                m, i, j = value["@"]
                if not all(isinstance(v, int) and not isinstance(v, bool) for v in (m, i, j)) or m < 0:
                    raise TypeError(f"bad block reference {value!r}")
                return self.matrices[m], i, j
            return {k: self(v) for k, v in value.items()}
        if isinstance(value, list):
            return tuple(self(v) for v in value)
        return value


# -- events --------------------------------------------------------------------------------------------
def call_event(store_url: str, callset: str, call: str, func: str, args: str, env: dict | None = None,
               not_after: float | None = None, args_at: tuple[int, int] | None = None) -> dict:
    """``env``: environment variables set around the call on the worker (optional field, str -> str);
    ``not_after``: epoch seconds after which a worker drops the event unrun (optional);
    ``args_at``: (offset, length) of the call's arguments in the bundle ``args`` (optional)."""
    event = {"v": EVENT_VERSION, "kind": "call", "store": store_url, "callset": callset, "call": call,
             "func": func, "args": args, "result": result_key(callset, call, "call")}
    if args_at is not None:
        event["args_at"] = [int(args_at[0]), int(args_at[1])]
    if env:
        event["env"] = check_env(env)
    if not_after is not None:
        event["not_after"] = float(not_after)
    return event


def check_env(env) -> dict | None:
    """``env`` as a plain dict of variable name -> value (None if empty), or a one-line error naming the offender."""
    if env is None:
        return None
    if not isinstance(env, dict):
        raise TypeError(f"extra_env must be a dict of str -> str, got {type(env).__name__}")
    for name, value in env.items():
        if not isinstance(name, str) or not name or "=" in name or "\0" in name:
            raise ValueError(f"extra_env: {name!r} is not a valid environment variable name")
        if not isinstance(value, str) or "\0" in value:
            raise TypeError(f"extra_env[{name!r}] must be a str without NUL bytes, got {value!r}")
    return dict(env) or None


def tile_event(store_url: str, callset: str, call: str, task: dict, not_after: float | None = None) -> dict:
    """A tile task's event; its run id travels in ``task["run"]``."""
    event = {"v": EVENT_VERSION, "kind": "tile", "store": store_url, "callset": callset, "call": call,
             "task": task, "result": result_key(callset, call, "tile")}
    if not_after is not None:
        event["not_after"] = float(not_after)
    return event


def with_timeout(event: dict, seconds: float | None) -> dict:
    """``event`` with its ``timeout`` field: the call may run ``seconds`` from when its worker starts it."""
    return event if seconds is None else {**event, "timeout": float(seconds)}


def call_deadline(event: dict, started: float) -> float | None:
    """Epoch seconds by which the call must end (None: no limit), for a call its worker started at ``started``.

    The one place a ``timeout`` becomes a deadline: like Lambda's, the clock starts with the call, not with
    the worker process (its imports) nor with the invocation.
    """
    if event.get("deadline") is not None:
        return float(event["deadline"])
    timeout = event.get("timeout")
    return None if timeout is None else started + float(timeout)


def task_lease(event: dict) -> tuple[str, str] | None:
    """(store URL, key) of the lease a tile event's worker claims when it starts (None: no lease).

    For a driver that watches starts (numpywren.executors.aws_lambda) without reading the task spec.
    """
    task = event.get("task") if event.get("kind") == "tile" else None
    if not isinstance(task, dict) or task.get("op") in READ_ONLY_OPS:
        return None
    try:
        store = task["m"][task["out"]["@"][0]]["store"]
        return store, lease_key(task["run"], task["id"], task["attempt"])
    except (KeyError, IndexError, TypeError):
        return None


def _number(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float))


def validate_event(event) -> None:
    """Refuse anything that is not an event of this protocol version, naming what is wrong."""
    if not isinstance(event, dict):
        raise ValueError(f"malformed numpywren event: expected a JSON object, got {type(event).__name__}")
    if event.get("v") != EVENT_VERSION:
        raise ValueError(f"event version {event.get('v')!r} is not supported (this worker speaks {EVENT_VERSION})")
    kind = event.get("kind")
    if kind not in KINDS:
        raise ValueError(f"malformed numpywren event: unknown kind {kind!r} (expected one of {KINDS})")
    missing = [f for f in EVENT_FIELDS[kind] if f not in event]
    if missing:
        raise ValueError(f"malformed numpywren event: missing {missing}")
    unknown = sorted(set(event) - set(EVENT_FIELDS[kind]) - set(OPTIONAL_FIELDS))
    if unknown:
        raise ValueError(f"malformed numpywren event: unknown fields {unknown} (numpywren.protocol declares "
                         f"{list(EVENT_FIELDS[kind])} and optional {list(OPTIONAL_FIELDS)})")
    for name in ("store", "callset", "call", "result") + (("func", "args") if kind == "call" else ()):
        if not isinstance(event[name], str):
            raise ValueError(f"malformed numpywren event: {name!r} must be a string")
    if "env" in event:
        try:
            check_env(event["env"])
        except (TypeError, ValueError) as exc:
            raise ValueError(f"malformed numpywren event: {exc}") from None
    for name in ("not_after", "deadline"):
        if event.get(name) is not None and not _number(event[name]):
            raise ValueError(f"malformed numpywren event: {name!r} must be a number (epoch seconds)")
    timeout = event.get("timeout")
    if timeout is not None and not (_number(timeout) and timeout > 0):
        raise ValueError("malformed numpywren event: 'timeout' must be a positive number of seconds")
    if not isinstance(event.get("done", False), bool):
        raise ValueError("malformed numpywren event: 'done' must be true or false")
    if "args_at" in event:
        at = event["args_at"]
        if (kind != "call" or not isinstance(at, list) or len(at) != 2
                or any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in at)):
            raise ValueError("malformed numpywren event: 'args_at' must be [offset, length] (non-negative "
                             "integers) of a call's arguments")
    if "@" in event["callset"] + event["call"] or "~" in event["callset"]:
        raise ValueError("malformed numpywren event: callset and call may not contain '@' or '~'")
    if not event["result"].startswith(callset_prefix(event["callset"])):
        raise ValueError(f"malformed numpywren event: result key {event['result']!r} is outside its callset")


# -- outcomes --------------------------------------------------------------------------------------------
def error_fields(exc: BaseException) -> dict:
    """What every error payload carries, JSON-safe: type name, message, remote traceback.

    Out of memory crosses as MemoryError whatever its subclass (numpy's ``_ArrayMemoryError``), so
    the driver knows that no retry on a worker of the same size can fix it."""
    name = "MemoryError" if isinstance(exc, MemoryError) else type(exc).__qualname__
    return {"ok": False, "type": name, "message": str(exc), "traceback": "".join(traceback.format_exception(exc))}


# -- errors that cross the wire ----------------------------------------------------------------------------
class RemoteError(RuntimeError):
    """A remote exception whose type is not rebuilt on the driver (its type name leads the message)."""


class WorkerDiedError(RuntimeError):
    """The worker running a call died (killed, crashed, out of memory) or hit its timeout."""


class RemoteExitError(RuntimeError):
    """The call ended with ``sys.exit`` (SystemExit): re-raised as such it would end the driver."""

    def __init__(self, message: str, code=None):
        super().__init__(message)
        self.code = code


class TaskDeadlineError(TimeoutError):
    """The worker had too little time left (Lambda's remaining time) to finish the call."""


#: Error types a JSON result may name: rebuilt from their message on the driver, nothing unpickled.
ERROR_TYPES: dict[str, type[BaseException]] = {
    t.__qualname__: t for t in (
        ValueError, TypeError, IndexError, KeyError, ArithmeticError, ZeroDivisionError, OverflowError,
        MemoryError, TimeoutError, RuntimeError, OSError, CorruptTileError, StaleTileError, InputChangedError,
        KeyNotFoundError, StoreError, TaskDeadlineError, WorkerDiedError, InjectedFault,
        concurrent.futures.CancelledError)}
ERROR_TYPES["LinAlgError"] = np.linalg.LinAlgError


def rebuild_error(payload: dict) -> BaseException:
    """The exception of a JSON error payload: an allow-listed type built from its message, else RemoteError.

    Only the type's constructor runs, with one string: nothing from the store is unpickled.
    """
    name, message = str(payload.get("type", "Exception")), str(payload.get("message", ""))
    cls = ERROR_TYPES.get(name)
    try:
        exc = cls(message) if cls is not None else None
    except Exception:  # noqa: BLE001 - a constructor that wants other arguments
        exc = None
    if exc is None:
        exc = RemoteError(f"{name}: {message}")
    return exc


def encode_value(block: np.ndarray, run: str, generation: str) -> dict:
    """A task's output block as JSON-safe data (exact: the raw little-endian bytes, base64), bound to the
    run and the output's generation; ValueError above VALUE_MAX_BYTES."""
    block = np.ascontiguousarray(block, block.dtype.newbyteorder("<"))
    if block.nbytes > VALUE_MAX_BYTES:
        raise ValueError(f"a {block.shape} {block.dtype} block ({block.nbytes} bytes) is larger than a value "
                         f"may be ({VALUE_MAX_BYTES} bytes): write it as a tile")
    return {"dtype": block.dtype.name, "shape": list(block.shape), "run": run, "gen": generation,
            "data": base64.b64encode(block.tobytes()).decode()}


def decode_value(value, dtype, shape) -> tuple[np.ndarray, str, str]:
    """(block, run, generation) of an ``encode_value`` result; ValueError unless it holds a ``shape`` block of
    ``dtype`` (a value is input: its size is checked before it is decoded)."""
    dtype = np.dtype(dtype)
    try:
        if value["dtype"] != dtype.name or [int(n) for n in value["shape"]] != list(shape):
            raise ValueError(f"a {value['dtype']} block of shape {value['shape']}, expected {dtype.name} {shape}")
        text = value["data"]
        if not isinstance(text, str) or len(text) > 4 * (VALUE_MAX_BYTES // 3 + 1):
            raise ValueError("the data is not a string of at most VALUE_MAX_BYTES")
        data = base64.b64decode(text, validate=True)
        block = np.frombuffer(bytearray(data), dtype.newbyteorder("<")).astype(dtype, copy=False).reshape(shape)
        return block, str(value["run"]), str(value["gen"])
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"malformed task value: {e}") from None


def dumps_json(payload: dict) -> bytes:
    return json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()


def loads_json(data: bytes) -> dict:
    payload = json.loads(data)
    if not isinstance(payload, dict) or not isinstance(payload.get("ok"), bool):
        raise ValueError("not a numpywren result payload")
    return payload


def error_payload(exc: BaseException, kind: str) -> dict:
    """The error outcome of a call. A ``"call"`` result also carries the pickled exception (a
    pickle result is read by unpickling anyway); a ``"tile"`` result stays plain JSON."""
    payload = error_fields(exc)
    if kind == "call":
        try:
            payload["exception"] = dumps(exc)
        except Exception:  # noqa: BLE001 - type name, message and traceback still arrive
            payload["exception"] = None
    return payload


def encode_result(kind: str, payload: dict) -> bytes:
    """Serialize an outcome for the result key; an unserializable value becomes an error, not a loss."""
    try:
        return dumps_json(payload) if kind == "tile" else dumps(payload)
    except Exception as exc:  # noqa: BLE001
        if not payload["ok"]:
            raise
        what = "JSON-serialized" if kind == "tile" else "pickled"
        error = TypeError(f"the call's return value cannot be {what}: {exc}")
        return encode_result(kind, {**error_payload(error, kind), "stats": payload.get("stats", {})})


def decode_result(kind: str, data: bytes) -> dict:
    """Read an outcome; a tile result is parsed as JSON and never unpickled."""
    if kind == "tile":
        return loads_json(data)
    return loads(data)
