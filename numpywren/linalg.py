"""Public linear-algebra operations on BigMatrix: matmul (``A @ B``) and syrk (``X @ X.T``).

Each builds a DAG of tile tasks, runs it with the scheduler and returns the
output matrix; the run's :class:`~numpywren.scheduler.Report` is attached as
``result.report``.

**GEMM decomposition rule.** Output tile C[i, j] = sum_k A[i, k] @ B[k, j].
When the output grid has at least as many tiles as there are workers
(``gi * gj >= workers``) each task accumulates over all k: no partial tiles,
least I/O. Otherwise the k range is split into ``s = min(gk, ceil(workers /
(gi * gj)))`` chunks so every worker has a partial product to compute, and the
partials are summed by a reduction tree of fan-in ``REDUCE_FAN_IN`` whose last
level writes C. Partial tiles live under the job's prefix and are deleted on
success.
"""
from __future__ import annotations

import hashlib
import json
import math

import numpy as np

from blocks.gemm import tile_flops
from numpywren import scheduler
from numpywren.api import get_executor
from numpywren.dag import DAG, Task
from numpywren.matrix import JOB_RECORD, BigMatrix
from numpywren.storage import KeyNotFoundError
from numpywren.tasks import gemm_tile, scan_tile, sum_tile

REDUCE_FAN_IN = 4


def matmul(A: BigMatrix, B: BigMatrix, out: "BigMatrix | str | None" = None, executor=None, *,
           split_k: int | None = None, retries: int = 2, backoff: float = 0.25,
           lease_seconds: float | None = None, check_finite: bool = False, progress: bool | None = None,
           resume: bool = False, job: str | None = None) -> BigMatrix:
    """C = A @ B on tiled matrices (views such as ``A.T`` work without copies).

    ``out`` is a key (or an existing BigMatrix) for the result, default a new
    key. ``split_k`` overrides the automatic split of the k dimension (1 = no
    split). ``resume=True`` keeps output tiles already present (a restarted
    driver continues where it stopped, recomputing none of them); otherwise an
    existing ``out`` is overwritten. ``job`` defaults to a name derived from
    ``out``, so a resumed run finds the split-k partial tiles of the first.
    ``retries``, ``backoff`` and ``lease_seconds`` go to the scheduler.

    Inputs are validated before any task runs: operand types, aligned shapes
    and inner tiles, every input tile present, ``out`` distinct from the inputs.
    float32 @ float64 promotes to float64, as numpy does. NaN and inf propagate
    as in numpy; ``check_finite=True`` instead reads every input tile first (on
    the workers) and raises ValueError naming the blocks that hold them.
    """
    _check_operands(A, B)
    executor = get_executor(executor)
    if check_finite:
        _check_finite([A, B], executor)
    gi, gj, gk = A.grid[0], B.grid[1], A.grid[1]
    chunks = split_k if split_k is not None else gemm_split(gi * gj, gk, executor.workers)
    if not 1 <= chunks <= gk:  # before _output, which replaces an existing ``out``
        raise ValueError(f"split_k must be between 1 and {gk} (the number of k blocks), got {chunks}")
    dtype = np.result_type(A.dtype, B.dtype)
    C = _output(out, (A.shape[0], B.shape[1]), (A.tile_shape[0], B.tile_shape[1]), dtype, A.store,
                symmetric=False, resume=resume, inputs=(A, B))
    _record_job(C, "matmul", (A, B), {}, resume)
    job = job or _job_name("gemm", C)
    dag = DAG()
    for i, j in C.block_indices():
        _add_gemm_tile(dag, A, B, C, i, j, chunks, job)
    return _run(dag, C, executor, job, retries, progress, resume, f"matmul {A.shape}@{B.shape}",
                backoff=backoff, lease_seconds=lease_seconds)


def syrk(X: BigMatrix, out: "BigMatrix | str | None" = None, executor=None, *, retries: int = 2,
         backoff: float = 0.25, lease_seconds: float | None = None, check_finite: bool = False,
         progress: bool | None = None, resume: bool = False, job: str | None = None) -> BigMatrix:
    """C = X @ X.T, computing only the tiles with i >= j (C is stored as a symmetric matrix).

    Needs square-able row tiles: C's tile shape is (X.tile_shape[0],) * 2.
    Options and validation as in :func:`matmul`.
    """
    if not isinstance(X, BigMatrix):
        raise TypeError(f"syrk takes a BigMatrix, got {type(X).__name__}")
    _check_complete(X)
    executor = get_executor(executor)
    if check_finite:
        _check_finite([X], executor)
    n, t = X.shape[0], X.tile_shape[0]
    C = _output(out, (n, n), (t, t), X.dtype, X.store, symmetric=True, resume=resume, inputs=(X,))
    _record_job(C, "syrk", (X,), {}, resume)
    job = job or _job_name("syrk", C)
    dag = DAG()
    for i, j in C.stored_blocks():
        _add_gemm_tile(dag, X, X.T, C, i, j, 1, job)
    return _run(dag, C, executor, job, retries, progress, resume, f"syrk {X.shape}",
                backoff=backoff, lease_seconds=lease_seconds)


def _job_name(op: str, C: BigMatrix) -> str:
    """A job id derived from the output (store and key): the same ``out`` resumes the same job."""
    digest = hashlib.sha1(f"{C.store.url}|{C.key}".encode()).hexdigest()[:12]
    return f"{op}-{digest}"


def _record_job(C: BigMatrix, op: str, inputs, params: dict, resume: bool) -> None:
    """Write what computes C beside it (``<key>/job.json``); a resume must describe the same job.

    Without this, resuming into an ``out`` written from other inputs or
    parameters would keep its tiles as if they were this job's. Inputs are
    identified by store, key, orientation and metadata: rewriting an input's
    tiles in place under the same key is not detected.
    """
    spec = {"op": op, "params": params,
            "inputs": [{"store": M.store.url, "key": M.key, "transposed": M.transposed, **M._meta()}
                       for M in inputs]}
    key = f"{C.key}/{JOB_RECORD}"
    if resume:
        try:
            before = json.loads(C.store.get(key))
        except KeyNotFoundError:
            before = None  # the first driver died before writing it: no tile of it can exist either
        if before is not None and before != json.loads(json.dumps(spec)):
            raise ValueError(f"resume=True, but {C.key!r} was computed by another job ({before}), not this "
                             f"one ({spec}); run without resume=True to recompute it")
    C.store.put(key, json.dumps(spec, sort_keys=True).encode())


def gemm_split(output_tiles: int, k_blocks: int, workers: int) -> int:
    """How many k chunks to split each output tile into (see the module docstring)."""
    if output_tiles >= workers or k_blocks == 1:
        return 1
    return min(k_blocks, math.ceil(workers / output_tiles))


# -- DAG construction ---------------------------------------------------------------------
def _add_gemm_tile(dag: DAG, A: BigMatrix, B: BigMatrix, C: BigMatrix, i: int, j: int,
                   chunks: int, job: str) -> None:
    gk = A.grid[1]
    m, n = C.block_shape(i, j)
    ranges = [range(c * gk // chunks, (c + 1) * gk // chunks) for c in range(chunks)]

    def gemm_task(target, ks) -> Task:
        pairs = tuple(((A, i, k), (B, k, j)) for k in ks)
        flops = sum(tile_flops(m, n, A.block_shape(i, k)[1]) for k in ks)
        tid = f"{job}/C{i}_{j}" + (f"/k{ks.start}-{ks.stop}" if chunks > 1 else "")
        return dag.add(Task(tid, gemm_tile, target, pairs, flops=flops))

    if chunks == 1:
        gemm_task((C, i, j), ranges[0])
        return
    level, parts = 0, []
    for c, ks in enumerate(ranges):
        partial = _partial(C, job, chunks, level, c)
        parts.append(gemm_task((partial, i, j), ks))
    # Reduction tree: groups of REDUCE_FAN_IN tiles are summed until one remains (written to C).
    while len(parts) > 1:
        level += 1
        groups = [parts[g:g + REDUCE_FAN_IN] for g in range(0, len(parts), REDUCE_FAN_IN)]
        last = len(groups) == 1
        parts = []
        for g, group in enumerate(groups):
            target = (C, i, j) if last else (_partial(C, job, chunks, level, g), i, j)
            tid = f"{job}/C{i}_{j}/sum{level}-{g}"
            parts.append(dag.add(Task(tid, sum_tile, target, tuple(t.output for t in group),
                                      deps=tuple(t.id for t in group), flops=float(m * n * (len(group) - 1)))))


def _partial(C: BigMatrix, job: str, chunks: int, level: int, chunk: int) -> BigMatrix:
    # Handles only: the metadata is written once per partial matrix by _run. The key is a pure
    # function of (job, split, level, chunk), so a resumed driver finds the partials of the first
    # one, and a resume with another split (another worker count) never mixes k ranges.
    return BigMatrix(C.store, f"jobs/{job}/partials/s{chunks}-l{level}-c{chunk}", C.shape, C.tile_shape,
                     C.dtype)


def _run(dag: DAG, C: BigMatrix, executor, job, retries, progress, resume, desc, *,
         backoff: float = 0.25, lease_seconds: float | None = None) -> BigMatrix:
    """Run the DAG; intermediate matrices (split-k partials, ...) are deleted on success and failure.

    (A driver killed outright cannot delete them: its resumed run reuses them.)
    """
    partials = {t.output[0] for t in dag if t.output[0].key != C.key}
    for p in partials:
        BigMatrix.create(p.shape, p.tile_shape, p.dtype, p.store, p.key, overwrite=not resume)
    try:
        report = scheduler.run(dag, executor, job=job, retries=retries, backoff=backoff,
                               lease_seconds=lease_seconds, progress=progress, skip_existing=resume,
                               desc=desc)
    finally:
        for p in partials:
            p.delete()
    C.report = report
    return C


# -- validation ---------------------------------------------------------------------------------
def _check_operands(A, B) -> None:
    for name, M in (("A", A), ("B", B)):
        if not isinstance(M, BigMatrix):
            raise TypeError(f"matmul operand {name} must be a BigMatrix, got {type(M).__name__} "
                            "(store it with BigMatrix.from_numpy first)")
    if A.shape[1] != B.shape[0]:
        raise ValueError(f"matmul: shapes {A.shape} and {B.shape} are not aligned "
                         f"({A.shape[1]} (dim 1 of A) != {B.shape[0]} (dim 0 of B))")
    if A.tile_shape[1] != B.tile_shape[0]:
        raise ValueError(f"matmul: inner tile sizes differ: A's tiles are {A.tile_shape} and B's "
                         f"{B.tile_shape}; re-tile one so that A.tile_shape[1] == B.tile_shape[0]")
    _check_complete(A)
    if B.key != A.key:
        _check_complete(B)


def _check_complete(M: BigMatrix) -> None:
    missing = M.missing_blocks()
    if missing:
        shown = ", ".join(map(str, missing[:5])) + (" ..." if len(missing) > 5 else "")
        raise ValueError(f"{M!r} is missing {len(missing)} of its tiles (stored block indices): {shown}")


def _check_finite(matrices, executor) -> None:
    """Read every input tile on the workers (checksums included); name the blocks holding NaN or inf."""
    for M in {m.key: m for m in matrices}.values():
        stored = BigMatrix(M.store, M.key, M._shape, M._tile_shape, M.dtype, symmetric=M.symmetric)
        blocks = stored.stored_blocks()
        futures = executor.map(scan_tile, [(stored, i, j) for i, j in blocks])
        try:
            counts = executor.get_all_results(futures)
        finally:
            executor.cleanup([futures[0].job])
        bad = [(ij, n) for ij, n in zip(blocks, counts) if n]
        if bad:
            shown = ", ".join(f"{ij}: {n}" for ij, n in bad[:5]) + (" ..." if len(bad) > 5 else "")
            raise ValueError(f"{M!r} holds {sum(n for _, n in bad)} NaN or inf values (check_finite=True); "
                             f"blocks (stored indices) and counts: {shown}")


def _output(out, shape, tile_shape, dtype, store, symmetric: bool, resume: bool,
            inputs=()) -> BigMatrix:
    if isinstance(out, BigMatrix):
        store, key = out.store, out.key
    else:
        key = out
    if resume and key is None:
        raise ValueError("resume=True needs the output key of the interrupted run (out=...)")
    for M in inputs:
        if key is not None and key.strip("/") == M.key and store.url == M.store.url:
            raise ValueError(f"out={key!r} is also an input ({M!r}); the result would overwrite "
                             "tiles still being read: choose another key")
    try:
        return BigMatrix.create(shape, tile_shape, dtype, store, key, symmetric=symmetric,
                                overwrite=not resume)
    except FileExistsError as e:
        raise ValueError(f"resume=True, but {key!r} holds a matrix of another shape, tile shape or "
                         f"dtype ({e}); run without resume=True to overwrite it") from None
