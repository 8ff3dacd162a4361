"""Tile tasks and the DAG they form.

A Task names an allow-listed operation (``op``, a key of
``numpywren.worker.ops.OPS``) that a worker runs on the task itself; the task
carries BigMatrix handles and block indices, never tile data. Its output is
exactly one tile, so "the output tile exists (bound to this run)" means "the
task is done", which is what makes retries and resume safe.

On the wire a task is plain JSON (:meth:`Task.spec`): a table of matrix
handles and ``{"@": [matrix, i, j]}`` block references. Nothing is pickled.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from numpywren.matrix import BigMatrix

TileRef = tuple  # (BigMatrix, i, j): block (i, j) of a matrix (or of a view such as A.T)


@dataclass(slots=True, eq=False)
class Task:
    id: str
    op: str                         # worker side: numpywren.worker.ops.OPS[op](task) -> stats
    output: TileRef
    inputs: tuple = ()              # op-specific structure of TileRefs
    params: dict | None = None      # op-specific JSON-safe values (TileRefs allowed)
    deps: tuple[str, ...] = ()
    flops: float = 0.0
    run: str | None = None          # set on the worker: the run writing the output

    @property
    def output_key(self) -> str:
        matrix, i, j = self.output
        return matrix.tile_key(i, j)

    def spec(self, run: str, attempt: int, lease_seconds: float) -> dict:
        """The JSON task spec a worker receives (see numpywren.protocol)."""
        encode = _Encoder()
        spec = {"id": self.id, "op": self.op, "run": run, "attempt": attempt, "lease": lease_seconds,
                "flops": self.flops,
                "out": encode(self.output), "in": encode(self.inputs), "params": encode(self.params or {})}
        spec["m"] = [m.to_ref() for m in encode.matrices]
        return spec

    @classmethod
    def from_spec(cls, spec: dict) -> tuple["Task", int, float]:
        """Worker side: rebuild (task, attempt, lease seconds) from a spec, validating its structure."""
        try:
            matrices = [BigMatrix.from_ref(ref) for ref in spec["m"]]
            decode = _Decoder(matrices)
            task = cls(str(spec["id"]), str(spec["op"]), decode(spec["out"]), decode(spec["in"]),
                       decode(spec["params"]), flops=float(spec.get("flops", 0.0)), run=str(spec["run"]))
            attempt, lease = int(spec["attempt"]), float(spec["lease"])
        except (KeyError, TypeError, IndexError) as e:
            raise ValueError(f"malformed task spec ({e!r})") from None
        if not (isinstance(task.output, tuple) and len(task.output) == 3 and isinstance(task.params, dict)):
            raise ValueError("malformed task spec: output must be a block reference, params an object")
        return task, attempt, lease

    def __repr__(self) -> str:
        return f"Task({self.id!r}, op={self.op!r}, deps={len(self.deps)}, flops={self.flops:.3g})"


class _Encoder:
    """Block references -> ``{"@": [matrix index, i, j]}``, collecting the matrices in order of first use."""

    def __init__(self):
        self.matrices: list[BigMatrix] = []
        self._index: dict[int, int] = {}  # id(handle) -> position (the task keeps its handles alive)

    def __call__(self, value):
        if isinstance(value, tuple):
            if len(value) == 3 and isinstance(value[0], BigMatrix):
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
    def __init__(self, matrices: list[BigMatrix]):
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


class DAG:
    """Tasks in dependency order, with the reverse edges the scheduler needs."""

    def __init__(self, tasks: Iterable[Task] = ()):
        self.tasks: dict[str, Task] = {}
        for task in tasks:
            self.add(task)

    def add(self, task: Task) -> Task:
        if task.id in self.tasks:
            raise ValueError(f"duplicate task id {task.id!r}")
        missing = [d for d in task.deps if d not in self.tasks]
        if missing:  # adding in dependency order rules out cycles
            raise ValueError(f"task {task.id!r} depends on unknown tasks {missing}")
        self.tasks[task.id] = task
        return task

    def dependents(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {tid: [] for tid in self.tasks}
        for task in self.tasks.values():
            for dep in task.deps:
                out[dep].append(task.id)
        return out

    def outputs(self) -> set[BigMatrix]:
        return {t.output[0] for t in self.tasks.values()}

    @property
    def flops(self) -> float:
        return sum(t.flops for t in self.tasks.values())

    def __len__(self) -> int:
        return len(self.tasks)

    def __iter__(self):
        return iter(self.tasks.values())
