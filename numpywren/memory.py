"""Memory bounds: every task's peak memory from its tile shapes, checked against a worker's before a job runs.

A tile size that does not fit a worker's memory would otherwise fail at run
time, attempt after attempt. A task holds its parameter tiles, its input
tiles as its runner reads them (the streaming runners prefetch one group
ahead, so two groups at once), its output tile and one output-sized
workspace (a kernel's product or factor before it is written). A plan whose
largest task needs more than a worker allows is refused before anything is
created, naming the task kind, the bytes needed and allowed, and the largest
tile that fits.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # executors import this module, and the matrix module imports the executors
    from numpywren.dag import DAG, Task

#: Memory a worker's runtime takes before any tile: Python, numpy, SciPy, the handler (a local worker's
#: VmPeak is 228 MB with one BLAS thread, measured 2026-12-05; sim_params has Lambda's 250 MB).
RUNTIME_MB = 300
MB = 2 ** 20


@dataclass(frozen=True)
class Peak:
    """What one attempt of a task kind holds at its peak, from its tile shapes (declared per kind in PEAKS).

    ``streams``: "groups" if the runner reads its input groups one ahead (two groups resident), "last" if it
    reads its leading inputs up front and streams the groups of its last input, None if it reads all of
    them up front. ``stacks``: the runner copies its inputs into one stacked array (a second copy of them).
    ``outputs``: output-sized arrays held at once (the result, a kernel's workspace, factors kept beside it).
    """

    streams: str | None = None
    stacks: bool = False
    outputs: int = 2


#: Every tile operation's declaration (tests/test_memory.py enumerates numpywren.worker.ops and fails for one
#: missing). The default: all inputs read up front, the output and one output-sized workspace.
PEAKS: dict[str, Peak] = {
    # products streaming (A, B) pairs: two pairs resident, the product and the accumulator
    "gemm": Peak("groups"), "kernel": Peak("groups"), "row_norms": Peak("groups"),
    "sum": Peak(),  # the partial products read up front, their sum
    # factorizations: the diagonal/base tiles up front, the update pairs streamed
    "potrf": Peak("last"), "chol_panel": Peak("last"), "chol_update": Peak("last"), "trsm": Peak("last"),
    "lu_update": Peak("last"), "lu_solve": Peak("last"),
    "zeros": Peak(outputs=1),  # a broadcast zero encoded once
    # LU: the panel's rows gathered into one array and factored (its multiplier tiles, a params ref, one at a time)
    "lu_panel": Peak(stacks=True), "lu_diagonal": Peak(), "lu_gather_lower": Peak(),
    "lu_upper": Peak(), "lu_permute": Peak(), "lu_split": Peak(), "lu_permutation": Peak(),
    # LU conditioning: tiles read one at a time (a pass over A's tile column; passes over the packed LU)
    "lu_colsums": Peak(streams="groups"), "lu_rcond": Peak(streams="groups"),
    # TSQR and CAQR: the segments stacked, then factored or a factor applied to them
    "tsqr": Peak(stacks=True), "tsqr_r": Peak(), "tsqr_apply": Peak(),
    "caqr_factor": Peak(stacks=True), "caqr_apply": Peak(stacks=True), "caqr_take": Peak(stacks=True),
    # the band eigen/singular solvers: the tiles stacked into the band, then eigen- or singular vectors,
    # the values and the packed output (eigh: z beside out; svd: B dense, U and V^T beside out)
    "band_eigh": Peak(stacks=True, outputs=3), "band_svd": Peak(stacks=True, outputs=4),
    "elementwise": Peak(), "reduce": Peak(streams="groups"), "combine": Peak(),
    "generate": Peak(outputs=3),  # the function's block, its cast, the encoded tile
    "scan": Peak(outputs=1),  # reads one tile (its output reference) and checks it
    "verify": Peak(outputs=0),  # reads one tile's header
}
DEFAULT_PEAK = Peak()
#: ops whose runner streams input groups (two resident at once); the factor ops stream their last input
STREAMING_OPS = frozenset(op for op, p in PEAKS.items() if p.streams == "groups")
FACTOR_OPS = frozenset(op for op, p in PEAKS.items() if p.streams == "last")


class WorkerMemoryError(MemoryError):
    """A plan's largest task needs more memory than a worker has (raised before any task runs)."""


def block_refs(value):
    """Every (BigMatrix, i, j) block reference inside a task's inputs or params."""
    if (isinstance(value, tuple) and len(value) == 3 and hasattr(value[0], "block_shape")
            and isinstance(value[1], int)):
        yield value
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from block_refs(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from block_refs(v)


def block_bytes(ref) -> int:
    matrix, i, j = ref
    rows, cols = matrix.block_shape(i, j)
    return rows * cols * matrix.dtype.itemsize


def input_groups(task: Task) -> list[list[int]]:
    """Byte sizes of the task's input tiles, grouped as its runner reads them (first group up front)."""
    if task.op in STREAMING_OPS and task.inputs:
        return [[block_bytes(r) for r in block_refs(g)] for g in task.inputs]
    if task.op in FACTOR_OPS and task.inputs:
        *lead, streamed = task.inputs
        groups = [[block_bytes(r) for r in block_refs(g)] for g in streamed]
        first = [block_bytes(r) for r in block_refs(tuple(lead))] + (groups[0] if groups else [])
        return [first] + groups[1:]
    return [[block_bytes(r) for r in block_refs(task.inputs)]]


def peak_bytes(task: Task) -> int:
    """The most memory one attempt of ``task`` holds in tiles (module docstring; its kind's PEAKS entry)."""
    peak = PEAKS.get(task.op, DEFAULT_PEAK)
    groups = input_groups(task)
    params = sum(block_bytes(r) for r in block_refs(task.params or {}))
    inputs = 2 * max(map(sum, groups)) if len(groups) > 1 else sum(groups[0]) if groups else 0
    stacked = sum(map(sum, groups)) + params if peak.stacks else 0
    return params + inputs + stacked + peak.outputs * block_bytes(task.output)


def check_fits(dag: DAG, worker_mb: float | None) -> None:
    """Refuse ``dag`` if its largest task needs more than a worker of ``worker_mb`` MB allows (None: no limit)."""
    if worker_mb is None or not len(dag):
        return
    allowed = int((worker_mb - RUNTIME_MB) * MB)
    task = max(dag, key=peak_bytes)
    need = peak_bytes(task)
    if need <= allowed:
        return
    matrix = task.output[0]
    rows, cols = matrix.tile_shape
    scale = math.sqrt(max(allowed, 0) / need)  # every tile's side shrinks by this: bytes by its square
    fits = f"{max(1, int(rows * scale))} x {max(1, int(cols * scale))}"
    raise WorkerMemoryError(
        f"task kind {task.op!r} (task {task.id!r}) needs {need:,} bytes of tiles at tile {rows} x {cols} "
        f"({matrix.dtype}), more than the {max(allowed, 0):,} bytes a worker allows ({worker_mb:g} MB less "
        f"{RUNTIME_MB} MB for its runtime): the largest tile that fits is about {fits}; use smaller tiles or "
        f"workers with more memory")
