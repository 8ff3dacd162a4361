"""Tile tasks and the DAG they form.

A Task names a module-level function (``run``) that a worker calls with the
task itself; the task carries BigMatrix handles and block indices, never
tile data. Its output is exactly one tile, so "the output tile exists" means
"the task is done" (which is what makes retries and resume safe).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

from numpywren.matrix import BigMatrix

TileRef = tuple  # (BigMatrix, i, j): block (i, j) of a matrix (or of a view such as A.T)


@dataclass
class Task:
    id: str
    run: Callable[["Task"], dict]   # worker side: reads inputs, computes, writes ``output``; returns stats
    output: TileRef
    inputs: tuple = ()              # runner-specific structure of TileRefs
    params: dict = field(default_factory=dict)
    deps: tuple[str, ...] = ()
    flops: float = 0.0

    @property
    def output_key(self) -> str:
        matrix, i, j = self.output
        return matrix.tile_key(i, j)

    def __repr__(self) -> str:
        return f"Task({self.id!r}, deps={len(self.deps)}, flops={self.flops:.3g})"


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
