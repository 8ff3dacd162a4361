"""Tile tasks and the DAG they form.

A Task names an allow-listed operation (``op``, a key of
``numpywren.worker.ops.OPS``) that a worker runs on the task itself; the task
carries BigMatrix handles and block indices, never tile data (its worker gets a
numpywren.protocol.TileTask with TiledMatrix handles). Its output is
exactly one tile, so "the output tile exists (bound to this run)" means "the
task is done", which is what makes retries and resume safe.

On the wire a task is plain JSON (:meth:`Task.spec`, encoded by numpywren.protocol): a table of
matrix handles and ``{"@": [matrix, i, j]}`` block references. Nothing is pickled.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from numpywren import protocol
from numpywren.protocol import TileRef  # noqa: F401 - (matrix, i, j), re-exported for the DAG builders


@dataclass(slots=True, eq=False)
class Task:
    id: str
    op: str                         # worker side: numpywren.worker.ops.OPS[op](task) -> stats
    output: TileRef
    inputs: tuple = ()              # op-specific structure of TileRefs
    params: dict | None = None      # op-specific JSON-safe values (TileRefs allowed)
    deps: tuple[str, ...] = ()
    flops: float = 0.0

    @property
    def output_key(self) -> str:
        matrix, i, j = self.output
        return matrix.tile_key(i, j)

    def spec(self, run: str, attempt: int, lease_seconds: float) -> dict:
        """The JSON task spec a worker receives (numpywren.protocol.encode_task)."""
        return protocol.encode_task(self.id, self.op, self.output, self.inputs, self.params, self.flops,
                                    run, attempt, lease_seconds)

    def __repr__(self) -> str:
        return f"Task({self.id!r}, op={self.op!r}, deps={len(self.deps)}, flops={self.flops:.3g})"


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

    def alone(self, task_id: str) -> bool:
        """Whether every other task is an ancestor or a descendant of ``task_id``: nothing else can run while
        it does (``numpywren.worker.lone`` lets such a task use the idle workers' cores)."""
        before, todo = set(), [task_id]
        while todo:
            for dep in self.tasks[todo.pop()].deps:
                if dep not in before:
                    before.add(dep)
                    todo.append(dep)
        after, todo, dependents = set(), [task_id], self.dependents()
        while todo:
            for child in dependents[todo.pop()]:
                if child not in after:
                    after.add(child)
                    todo.append(child)
        return len(before) + len(after) + 1 == len(self.tasks)

    def outputs(self) -> set:
        return {t.output[0] for t in self.tasks.values()}

    @property
    def flops(self) -> float:
        return sum(t.flops for t in self.tasks.values())

    def __len__(self) -> int:
        return len(self.tasks)

    def __iter__(self):
        return iter(self.tasks.values())
