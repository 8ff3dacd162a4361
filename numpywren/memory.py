"""Memory bounds: every task's peak memory from its tile shapes, checked against a worker's before a job runs.

A tile size that does not fit a worker's memory would otherwise fail at run
time, attempt after attempt. A task holds its parameter tiles, its input
tiles as its runner reads them (the streaming runners prefetch one group
ahead, so two groups at once), its output tile and one output-sized
workspace (a kernel's product or factor before it is written). A plan whose
largest task needs more than a worker allows is refused before anything is
created, naming the task kind, the bytes needed and allowed, and the largest
tile that fits.

The one-worker solves of ``eigh`` and ``svd`` (the band problem) also hold
arrays of the problem's order n, whatever the tiles (a ``workspace`` in their
PEAKS entry, from ``blocks.eigen.band_workspace``); they write whole scratch
matrices besides their output tile (``params["writes"]``, see
:func:`side_outputs`). Their refusal names the largest order that fits; they
are checked against this machine's memory when the executor does not say
its workers' (local workers run here).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

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
    ``workspace``: bytes held beside the tiles that do not scale with them (a one-worker solve's arrays of
    the problem's order), from the task. ``assembled``: bytes the runner builds from its tiles before it
    drops them (a band solve's matrix); with it, the workspace follows the tiles instead of adding to them.
    """

    streams: str | None = None
    stacks: bool = False
    outputs: int = 2
    workspace: Callable[["Task"], int] | None = None
    assembled: Callable[["Task"], int] | None = None


def band_workspace_bytes(task: Task) -> int:
    """A band task's LAPACK arrays (``blocks.eigen.band_workspace``): its order n is its output row's length
    (the eigenvalues or singular values); the vectors it writes are in there."""
    from blocks.eigen import band_workspace

    matrix = task.output[0]
    p = task.params
    kind = "eigh" if task.op == "band_eigh" else "svd"
    elements = band_workspace(kind, matrix.shape[1], p["bandwidth"], bool(p["vectors"]))
    return int(elements * matrix.dtype.itemsize)


def band_matrix_bytes(task: Task) -> int:
    """The band matrix a band task assembles from its tiles: dense for the SVD's vectors (``upper_band_dense``),
    LAPACK band storage for its values (``upper_band``) and for eigh (``lower_band``)."""
    matrix = task.output[0]
    n, b = matrix.shape[1], task.params["bandwidth"]
    dense = task.op == "band_svd" and task.params["vectors"]
    return (n * n if dense else n * (b + 1)) * matrix.dtype.itemsize


def lu_panel_bytes(task: Task) -> int:
    """The panel an LU panel task gathers: the n - k t rows not factored yet, w columns."""
    p = task.params
    n, t, k = int(p["n"]), int(p["t"]), int(p["k"])
    return (n - k * t) * min(t, n - k * t) * np.dtype(p["dtype"]).itemsize


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
    # LU: the panel's rows and their multipliers from the previous panel gathered (streamed tile row by tile
    # row), updated and factored (getrf's copy beside both; the tiles it writes beside, one at a time)
    "lu_panel": Peak("last", assembled=lambda task: 3 * lu_panel_bytes(task)), "lu_diagonal": Peak(), "lu_gather_lower": Peak(),
    "lu_upper": Peak(), "lu_permute": Peak(), "lu_split": Peak(), "lu_permutation": Peak(),
    # LU conditioning: tiles read one at a time (a pass over A's tile column; passes over the packed LU)
    "lu_colsums": Peak(streams="groups"), "lu_rcond": Peak(streams="groups"),
    # TSQR and CAQR: the segments stacked, then factored or a factor applied to them
    "tsqr": Peak(stacks=True), "tsqr_r": Peak(), "tsqr_apply": Peak(),
    "caqr_factor": Peak(stacks=True), "caqr_apply": Peak(stacks=True), "caqr_take": Peak(stacks=True),
    # the band eigen/singular solvers: the tiles stacked and assembled into the band (svd: dense B), dropped,
    # then LAPACK's arrays of order n (vectors and work); the output is the values' row
    "band_eigh": Peak(stacks=True, outputs=1, workspace=band_workspace_bytes, assembled=band_matrix_bytes),
    "band_svd": Peak(stacks=True, outputs=1, workspace=band_workspace_bytes, assembled=band_matrix_bytes),
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


def side_outputs(task: Task) -> list:
    """The matrices a task writes whole besides its output tile (``params["writes"]``: a block reference
    (M, 0, 0) per matrix), before its output tile, so that the output tile says they are all written."""
    return [ref[0] for ref in block_refs((task.params or {}).get("writes", ()))]


def _params_read(task: Task) -> dict:
    return {k: v for k, v in (task.params or {}).items() if k != "writes"}


def read_refs(task: Task):
    """The block references a task reads: its inputs and its params' references but ``writes``."""
    return block_refs((task.inputs, _params_read(task)))


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
    params = sum(block_bytes(r) for r in block_refs(_params_read(task)))
    inputs = 2 * max(map(sum, groups)) if len(groups) > 1 else sum(groups[0]) if groups else 0
    stacked = sum(map(sum, groups)) + params if peak.stacks else 0
    tiles = params + inputs + stacked
    workspace = peak.workspace(task) if peak.workspace else 0
    if peak.assembled:   # the runner assembles its problem, drops the tiles, then solves
        body = max(tiles + peak.assembled(task), workspace)
    else:
        body = tiles + workspace
    return body + peak.outputs * block_bytes(task.output)


def check_fits(dag: DAG, worker_mb: float | None) -> None:
    """Refuse ``dag`` if its largest task needs more than a worker of ``worker_mb`` MB allows (None: unknown;
    then only a one-worker solve is checked, against this machine's memory)."""
    tasks, machine = list(dag), worker_mb is None
    if machine:
        tasks, worker_mb = [t for t in tasks if _peak(t).workspace], machine_mb()
    if not tasks or worker_mb is None:
        return
    allowed = int((worker_mb - RUNTIME_MB) * MB)
    task = max(tasks, key=peak_bytes)
    need = peak_bytes(task)
    if need <= allowed:
        return
    matrix = task.output[0]
    if _peak(task).workspace:
        raise WorkerMemoryError(_one_worker_message(task, need, allowed, worker_mb, machine))
    rows, cols = matrix.tile_shape
    scale = math.sqrt(max(allowed, 0) / need)  # every tile's side shrinks by this: bytes by its square
    fits = f"{max(1, int(rows * scale))} x {max(1, int(cols * scale))}"
    raise WorkerMemoryError(
        f"task kind {task.op!r} (task {task.id!r}) needs {need:,} bytes of tiles at tile {rows} x {cols} "
        f"({matrix.dtype}), more than the {max(allowed, 0):,} bytes a worker allows ({worker_mb:g} MB less "
        f"{RUNTIME_MB} MB for its runtime): the largest tile that fits is about {fits}; use smaller tiles or "
        f"workers with more memory")


def _peak(task: Task) -> Peak:
    return PEAKS.get(task.op, DEFAULT_PEAK)


def machine_mb() -> float | None:
    """This machine's physical memory in MB (None where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / MB
    except (ValueError, OSError, AttributeError):
        return None


def largest_band_order(kind: str, vectors: bool, worker_mb: float, bandwidth: int, dtype="float64",
                       tiles: int = 0) -> int:
    """The largest order n whose band problem (``kind`` "eigh" or "svd", with or without ``vectors``) fits a
    worker of ``worker_mb`` MB beside ``tiles`` bytes of input tiles (``blocks.eigen.band_workspace``)."""
    from blocks.eigen import band_workspace

    allowed, itemsize = (worker_mb - RUNTIME_MB) * MB - tiles, np.dtype(dtype).itemsize
    lo, hi = 0, 1
    while band_workspace(kind, hi, bandwidth, vectors) * itemsize <= allowed:
        lo, hi = hi, 2 * hi
    while hi - lo > 1:   # band_workspace(lo) fits, band_workspace(hi) does not
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if band_workspace(kind, mid, bandwidth, vectors) * itemsize <= allowed else (lo, mid)
    return lo


def _one_worker_message(task: Task, need: int, allowed: int, worker_mb: float, machine: bool) -> str:
    """Why a band task cannot run, and the largest order a worker of this memory solves (tiles as they are)."""
    matrix, p = task.output[0], task.params
    n, kind, vectors = matrix.shape[1], ("eigh" if task.op == "band_eigh" else "svd"), bool(p["vectors"])
    fits = largest_band_order(kind, vectors, worker_mb, p["bandwidth"], matrix.dtype,
                              max(0, need - band_workspace_bytes(task)))
    values = f", {'eigvalsh' if kind == 'eigh' else 'svd(compute_uv=False)'} if the values suffice" if vectors else ""
    what = {("eigh", True): "eigh's band eigenvectors", ("eigh", False): "eigvalsh's band eigenvalues",
            ("svd", True): "svd's band singular vectors", ("svd", False): "svd's band singular values"}
    worker = (f"this machine's memory ({worker_mb:,.0f} MB; the executor does not say its workers')" if machine
              else f"a worker's {worker_mb:g} MB")
    return (f"{what[kind, vectors]} are computed on one worker (task {task.id!r}): at order {n} ({matrix.dtype}) "
            f"that needs {need:,} bytes, more than the {max(allowed, 0):,} bytes allowed by {worker} less "
            f"{RUNTIME_MB} MB for its runtime; such a worker solves orders up to about {fits}. Use workers with "
            f"more memory{values}, or {'eigsh' if kind == 'eigh' else 'svd_compressed'} for a few of them "
            "(docs/guide/any-shape.md)")
