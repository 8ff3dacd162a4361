"""Public linear-algebra operations on BigMatrix: matmul (``A @ B``), syrk (``X @ X.T``) and herk (``X @ X.H``).

Each builds a plan of tile tasks, runs it through the jobs layer and returns the
output matrix; the run's :class:`~numpywren.scheduler.Report` is attached as
``result.report``. Without ``out=`` the result is a temporary, like ``A @ B``:
deleted from the store with its last handle (``C.keep()`` makes it permanent).

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

import math

import numpy as np

from blocks.gemm import tile_flops
from numpywren import jobs
from numpywren.dag import DAG, Task
from numpywren.matrix import BigMatrix
from numpywren.temporaries import temporary

REDUCE_FAN_IN = 4


def matmul(A: BigMatrix, B: BigMatrix, out: "BigMatrix | str | None" = None, executor=None, *,
           split_k: int | None = None, check_finite: bool = False, compute: bool = True,
           **options) -> "BigMatrix | jobs.Plan":
    """C = A @ B on tiled matrices (views such as ``A.T`` work without copies).

    ``out`` is a key (or an existing BigMatrix) for the result, default a
    temporary under a new key (deleted with its last handle, as ``A @ B``); an existing ``out`` is replaced (a new generation) unless
    ``resume=True``, which continues the interrupted run recorded in
    ``<out>/job.json`` and recomputes only its missing tiles. ``split_k``
    overrides the automatic split of the k dimension (1 = no split).
    ``retries``, ``backoff``, ``lease_seconds``, ``progress`` and ``resume``
    go to :func:`numpywren.jobs.run`. ``compute=False`` returns the
    :class:`~numpywren.jobs.Plan` without touching the store (run it later
    with ``numpywren.run``, or compose it with others); it assumes
    ``workers=`` workers, default the executor's.

    Inputs are validated before any task runs: operand types, aligned shapes
    and inner tiles, every input tile present, ``out`` distinct from the inputs.
    float32 @ float64 promotes to float64 and real @ complex to complex, as numpy does
    (``np.result_type``); ``A.H @ B`` reads A's tiles conjugated. NaN and inf propagate
    as in numpy; ``check_finite=True`` instead reads every input tile first (on
    the workers) and raises ValueError naming the blocks that hold them.

    Parameters
    ----------
    A, B : BigMatrix
        The operands; A's column tiles must match B's row tiles.
    out : BigMatrix or str, optional
        The result's key (or an existing BigMatrix, replaced by a new generation); default a new key.
    executor : Executor, optional
        Where the tasks run; default :func:`numpywren.get_executor`.
    split_k : int, optional
        How many chunks the k dimension is split into (1 = no split); default automatic.
    check_finite : bool, default False
        Scan the inputs on the workers first and name the blocks holding NaN or inf.
    compute : bool, default True
        ``False`` returns the :class:`~numpywren.Plan` without touching the store.
    **options
        The run options every operation takes (``numpywren.jobs.RUN_OPTIONS``: ``retries``, ``backoff``,
        ``lease_seconds``, ``progress``, ``resume``, ``backups``, ``silence_seconds``, ``max_cost``; see
        :func:`numpywren.jobs.run`), and ``workers`` (with ``compute=False``).

    Returns
    -------
    BigMatrix or Plan
        C, with the run's report as ``C.report``; the plan with ``compute=False``.

    Raises
    ------
    TypeError
        An operand that is not a BigMatrix.
    ValueError
        Shapes or inner tiles that do not align, or ``out`` naming an input.
    JobFailedError
        A task failed after its retries; its ``__cause__`` is the task's own exception.
    """
    _check_operands(A, B)
    opts = jobs.run_options(executor, compute=compute, check_finite=check_finite, **options)
    plan = matmul_plan(A, B, out, opts.workers, split_k)
    if out is None:
        temporary(plan.result)  # before the run: a failed run's partial result goes too
    return opts.submit(plan, [A, B])


def matmul_plan(A: BigMatrix, B: BigMatrix, out, workers: int, split_k: int | None = None) -> jobs.Plan:
    """The plan of C = A @ B (see the module docstring for the decomposition)."""
    gi, gj, gk = A.grid[0], B.grid[1], A.grid[1]
    if gk == 0 or gi * gj == 0:   # an empty product, or an inner dimension of 0: C is zeros, as in numpy
        chunks = 1
    else:
        chunks = split_k if split_k is not None else gemm_split(gi * gj, gk, workers)
    if gk and not 1 <= chunks <= gk:
        raise ValueError(f"split_k must be between 1 and {gk} (the number of k blocks), got {chunks}")
    C = jobs.output_matrix(out, (A.shape[0], B.shape[1]), (A.tile_shape[0], B.tile_shape[1]),
                           np.result_type(A.dtype, B.dtype), A.store, inputs=(A, B))
    dag, scratch = DAG(), {}
    for i, j in C.block_indices():
        _add_gemm_tile(dag, scratch, A, B, C, i, j, chunks)
    return jobs.Plan(dag, [jobs.Output(C, "matmul", (A, B))], scratch, f"matmul {A.shape}@{B.shape}", workers)


def syrk(X: BigMatrix, out: "BigMatrix | str | None" = None, executor=None, *, check_finite: bool = False,
         compute: bool = True, **options) -> "BigMatrix | jobs.Plan":
    """C = X @ X.T, computing only the tiles with i >= j (C is stored as a symmetric matrix).

    Needs square-able row tiles: C's tile shape is (X.tile_shape[0],) * 2.
    Options and validation as in :func:`matmul`.

    Parameters
    ----------
    X : BigMatrix
        The operand.
    out : BigMatrix or str, optional
        The result's key (or an existing BigMatrix, replaced by a new generation); default a new key.
    executor : Executor, optional
        Where the tasks run; default :func:`numpywren.get_executor`.
    check_finite : bool, default False
        Scan the inputs on the workers first and name the blocks holding NaN or inf.
    compute : bool, default True
        ``False`` returns the :class:`~numpywren.Plan` without touching the store.
    **options
        The run options every operation takes (``numpywren.jobs.RUN_OPTIONS``: ``retries``, ``backoff``,
        ``lease_seconds``, ``progress``, ``resume``, ``backups``, ``silence_seconds``, ``max_cost``; see
        :func:`numpywren.jobs.run`), and ``workers`` (with ``compute=False``).

    Returns
    -------
    BigMatrix or Plan
        C = X @ X.T stored as one triangle of tiles; the plan with ``compute=False``.

    Raises
    ------
    TypeError
        X is not a BigMatrix.
    JobFailedError
        A task failed after its retries.
    """
    return _one_triangle("syrk", X, out, executor, check_finite, compute, options)


def herk(X: BigMatrix, out: "BigMatrix | str | None" = None, executor=None, *, check_finite: bool = False,
         compute: bool = True, **options) -> "BigMatrix | jobs.Plan":
    """C = X @ X.H (the conjugate transpose), computing only the tiles with i >= j: C is stored Hermitian.

    BLAS's HERK as a tile job: the tiles above the diagonal are never computed nor stored, and read
    back as the conjugate transpose of their mirror (``C.to_numpy()`` and every operation see the
    whole matrix). ``A.H @ A`` in one triangle is ``herk(A.H)``. For a real X this is :func:`syrk`.
    Options, validation and results as in :func:`syrk`.
    """
    return _one_triangle("herk", X, out, executor, check_finite, compute, options)


def _one_triangle(op: str, X, out, executor, check_finite: bool, compute: bool, options: dict):
    """X @ X.T (syrk) or X @ X.H (herk) as one stored triangle of tiles."""
    if not isinstance(X, BigMatrix):
        raise TypeError(f"{op} takes a BigMatrix, got {type(X).__name__}")
    opts = jobs.run_options(executor, compute=compute, check_finite=check_finite, **options)
    n, t = X.shape[0], X.tile_shape[0]
    hermitian = op == "herk" and X.dtype.kind == "c"
    C = jobs.output_matrix(out, (n, n), (t, t), X.dtype, X.store, symmetric=True, hermitian=hermitian,
                           inputs=(X,))
    right = X.H if op == "herk" else X.T
    dag = DAG()
    for i, j in C.stored_blocks():
        _add_gemm_tile(dag, {}, X, right, C, i, j, 1)
    plan = jobs.Plan(dag, [jobs.Output(C, op, (X,))], {}, f"{op} {X.shape}", opts.workers)
    if out is None:
        temporary(C)
    return opts.submit(plan, [X])


def gemm_split(output_tiles: int, k_blocks: int, workers: int) -> int:
    """How many k chunks to split each output tile into (see the module docstring)."""
    if output_tiles >= workers or k_blocks <= 1:
        return 1
    return min(k_blocks, math.ceil(workers / output_tiles))


# -- DAG construction ---------------------------------------------------------------------
def _add_gemm_tile(dag: DAG, scratch: dict, A: BigMatrix, B: BigMatrix, C: BigMatrix, i: int, j: int,
                   chunks: int) -> None:
    gk = A.grid[1]
    if gk == 0:
        dag.add(Task(f"{C.key}/Z{i}_{j}", "zeros", (C, i, j)))
        return
    m, n = C.block_shape(i, j)
    ranges = [range(c * gk // chunks, (c + 1) * gk // chunks) for c in range(chunks)]
    name = f"{C.key}/C{i}_{j}"

    def gemm_task(target, ks) -> Task:
        pairs = tuple(((A, i, k), (B, k, j)) for k in ks)
        flops = sum(tile_flops(m, n, A.block_shape(i, k)[1]) for k in ks)
        tid = name + (f"/k{ks.start}-{ks.stop}" if chunks > 1 else "")
        return dag.add(Task(tid, "gemm", target, pairs, flops=flops))

    if chunks == 1:
        gemm_task((C, i, j), ranges[0])
        return
    level, parts = 0, []
    for ks in ranges:
        parts.append((gemm_task((_partial(scratch, C, level, ks), i, j), ks), ks))
    # Reduction tree: groups of REDUCE_FAN_IN tiles are summed until one remains (written to C).
    while len(parts) > 1:
        level += 1
        groups = [parts[g:g + REDUCE_FAN_IN] for g in range(0, len(parts), REDUCE_FAN_IN)]
        last = len(groups) == 1
        parts = []
        for g, group in enumerate(groups):
            ks = range(group[0][1].start, group[-1][1].stop)
            target = (C, i, j) if last else (_partial(scratch, C, level, ks), i, j)
            task = dag.add(Task(f"{name}/sum{level}-{g}", "sum", target, tuple(t.output for t, _ in group),
                                deps=tuple(t.id for t, _ in group), flops=float(m * n * (len(group) - 1))))
            parts.append((task, ks))


def _partial(scratch: dict, C: BigMatrix, level: int, ks: range) -> BigMatrix:
    # One scratch matrix per (output, level, k range), shared by all output tiles. Named by the k blocks
    # it sums, so a resumed run that splits k differently never takes a partial for another range.
    return jobs.scratch_matrix(scratch, f"{C.key.replace('/', '~')}-l{level}-k{ks.start}-{ks.stop}", C,
                               C.shape, C.tile_shape, C.dtype)


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
