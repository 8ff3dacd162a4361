"""QR and least squares of tall-and-skinny tiled matrices by TSQR (communication-avoiding QR).

``qr(A)`` factors every row block of A on its own (leaves), then factors the
stacked R factors of groups of ``fan_in`` nodes, level by level, until one
node is left: its R is A's R. Each node writes one tile (see
``numpywren.worker.qr_tasks`` for why): a *factor tile* (Householder form, Q and R in
one) when Q is wanted, a plain R tile otherwise. Q is then rebuilt top down:
the root's Q gives every child its ``n x n`` share M of the final Q
(``tsqr_apply`` tasks), down to the leaves, whose Q block is
``Q_leaf @ M_leaf``. No task ever holds more than one row block.

Intermediate tiles live in one scratch matrix per tree level (all nodes of a
level have the same tile height except the last, so a level fits the usual
ragged-last-tile layout); the run deletes them. R is written to a one-tile
output matrix under a temporary key, read back and deleted.

``lstsq(A, b)`` needs no Q at all: the leaves factor ``[A | b]`` (A's and b's
tiles of a row block side by side), and the R of the augmented matrix holds R,
``Q^T b`` and the residual norms (its last rows). Rank and singular values
come from ``numpy.linalg.svd`` of the small R.

``svd_compressed(A, k)``: randomized range finder (Halko et al.), with the
products by ``numpywren.matmul`` and the orthonormalizations by TSQR.
"""
from __future__ import annotations

import logging
import operator

import numpy as np

from blocks.qr import apply_q_flops, qr_flops
from numpywren import empty_shapes, jobs, protocol
from numpywren.compat import QRResult, scipy_call
from numpywren.dag import DAG, Task
from numpywren.matrix import BigMatrix

logger = logging.getLogger(__name__)

#: children per node of the reduction tree
FAN_IN = 4


@scipy_call("qr", algorithm="TSQR for one tile column, CAQR otherwise")
def qr(A: BigMatrix, mode: str = "reduced", executor=None, *, out: "BigMatrix | str | None" = None,
       fan_in: int = FAN_IN, tree: str = "flat", check_finite: bool = False, pivoting: bool = False,
       lwork: int | None = None, **options):
    """QR of a BigMatrix of any shape, as ``numpy.linalg.qr``: TSQR for a tall matrix in one tile column,
    CAQR otherwise.

    For one tile column, ``mode="reduced"`` returns ``QRResult(Q, R)`` (a named tuple, as numpy 2): Q a BigMatrix (m x n, A's row tiling,
    stored at ``out``, default a new key), R a numpy array (n x n).
    ``mode="r"`` returns R only (no Q is computed). A's columns must fit one
    tile column (``A.grid[1] == 1``). R's diagonal may differ from numpy's in
    sign (each row of R with the matching column of Q); ``Q @ R`` equals A.
    Run options as for every operation (numpywren.jobs.run_options);
    ``compute=False`` returns the plan, whose finishing step reads R back
    (``plan.value`` after ``numpywren.run(plan)``). ``resume=True`` is refused.

    Any other shape (several tile columns, wide) and ``mode="complete"`` go
    to CAQR (:func:`numpywren.caqr.qr`): ``QRResult(Q, R)`` with both BigMatrix.

    Parameters
    ----------
    A : BigMatrix
        Tall and skinny (rows >= columns), one tile column, for TSQR; any shape for CAQR.
    mode : {"reduced", "complete", "r"}, default "reduced"
        Return (Q, R) (Q with min(m, n) or, "complete", m columns), or R only.
    executor : Executor, optional
        Where the tasks run; default :func:`numpywren.get_executor`.
    out : BigMatrix or str, optional
        Key of Q (or U); default a new key.
    fan_in : int, default 4
        Fan-in of the TSQR reduction tree.
    tree : {"flat", "tsqr"}, default "flat"
        CAQR's panel trees: a chain of compact-WY TS kernels (about numpy's flops; docs/guide/qr.md), or
        TSQR trees of ``fan_in`` (a shorter critical path, more flops). TSQR (one tile column) ignores it.
    **options
        Run options (numpywren.jobs.run_options): ``retries``, ``backoff``, ``lease_seconds``,
        ``progress``, ``workers``, ``compute``.

    Returns
    -------
    tuple of (BigMatrix, numpy.ndarray) or numpy.ndarray
        (Q, R) or R.

    Raises
    ------
    ValueError
        An unknown mode, or A not tall and skinny in one tile column.
    NotImplementedError
        scipy's ``pivoting=True`` (``pivoting=False`` and ``lwork``, a LAPACK workspace size, are accepted).
    """
    _check_pivoting(pivoting, lwork, A)
    if tree not in ("flat", "tsqr"):   # validated for every shape, though only CAQR uses it
        raise ValueError(f"qr: tree must be 'flat' or 'tsqr', got {tree!r}")
    if isinstance(A, BigMatrix) and A.size == 0:  # numpy's empty results (numpywren.empty_shapes)
        if mode not in ("reduced", "complete", "r"):
            raise ValueError(f"qr: mode must be 'reduced', 'complete' or 'r', got {mode!r}")
        return empty_shapes.qr(A, mode, out, jobs.run_options(executor, check_finite=check_finite, **options))
    if isinstance(A, BigMatrix) and (mode == "complete" or A.grid[1] > 1 or A.shape[0] < A.shape[1]):
        from numpywren.caqr import qr as caqr_qr  # any other shape: CAQR, returning BigMatrix Q and R

        return caqr_qr(A, mode, executor, out=out, fan_in=_check_fan_in(fan_in), tree=tree, check_finite=check_finite,
                       **options)
    if mode not in ("reduced", "r"):
        raise ValueError(f"qr: mode must be 'reduced', 'complete' or 'r', got {mode!r}")
    _check_tall(A, "qr")
    fan_in = _check_fan_in(fan_in)
    _check_options(options)
    opts = jobs.run_options(executor, check_finite=check_finite, **options)
    plan, R, Q = tsqr_plan([A], mode, out, fan_in, opts.workers)

    def finish():
        r = _read_and_delete(R)
        return r if mode == "r" else QRResult(Q, r)
    plan.finish = finish
    return _submit(opts, plan, R, [A])


def _check_pivoting(pivoting, lwork, A) -> None:
    """scipy's column pivoting: refused by name. TSQR and CAQR reduce row blocks in a tree, each node seeing
    only its rows, so no node can choose the globally largest column (LAPACK geqp3's pivot) without a
    reduction per column: a different algorithm (tournament pivoting), not built."""
    if not isinstance(pivoting, (bool, np.bool_)):
        raise TypeError(f"qr: pivoting must be a bool, got {pivoting!r}")
    if pivoting:
        raise NotImplementedError("qr(pivoting=True): column-pivoted QR (scipy's geqp3) is not supported: TSQR/CAQR "
                                  "choose no column pivots; use pivoting=False, or numpywren.svd for a "
                                  "rank-revealing factorization")
    if lwork is None:   # a LAPACK workspace size: numpywren's tile kernels size their own; checked as scipy does
        return
    if not isinstance(lwork, (int, np.integer)) or isinstance(lwork, bool):
        raise TypeError(f"qr: lwork must be an int or None, got {lwork!r}")
    n = A.shape[1] if isinstance(A, BigMatrix) else 1
    if lwork != -1 and lwork < max(1, n):
        raise ValueError(f"qr: lwork must be -1 or at least the number of columns ({n}), got {lwork}")


@scipy_call("lstsq", algorithm="TSQR of [A | b], then an SVD of the small R")
def lstsq(A: BigMatrix, b, rcond: float | None = None, executor=None, *, fan_in: int = FAN_IN,
          check_finite: bool = False, **options):
    """Least-squares solution of A x = b, as ``numpy.linalg.lstsq``: ``(x, residuals, rank, s)``.

    A is a tall-and-skinny BigMatrix (rows >= columns, one tile column); b a
    numpy vector or matrix (stored for the job with A's row tiling, then
    deleted) or a BigMatrix with A's row tiles and one tile column. x,
    residuals and s are numpy arrays. ``rcond`` as in numpy (None: float64's
    machine epsilon times max(rows, columns), for float32 too: numpy computes
    in float64). A ``b`` with no columns gives numpy's empty x and residuals
    (rank and s of A still computed); NaN in ``b`` propagates to x. A rank-deficient A (numerical
    rank < columns at ``rcond``) gets numpy's minimum-norm solution from the SVD of the small R
    (residuals empty, as numpy's). ``numpywren.lstsq`` (numpywren.fullsvd) solves any other shape.
    Run options and ``compute=False`` as in :func:`qr`.

    Parameters
    ----------
    A : BigMatrix
        Tall and skinny (rows >= columns), one tile column.
    b : numpy.ndarray or BigMatrix
        Right-hand side(s).
    rcond : float, optional
        Cut-off ratio for small singular values, as numpy's.
    executor : Executor, optional
        Where the tasks run; default :func:`numpywren.get_executor`.
    fan_in : int, default 4
        Fan-in of the TSQR reduction tree.
    **options
        Run options (numpywren.jobs.run_options): ``retries``, ``backoff``, ``lease_seconds``,
        ``progress``, ``workers``, ``compute``.

    Returns
    -------
    x : numpy.ndarray
        The solution.
    residuals : numpy.ndarray
        Squared residual norms per column of b.
    rank : int
        Numerical rank of A.
    s : numpy.ndarray
        Singular values of A.

    Raises
    ------
    ValueError
        A not tall and skinny in one tile column (``numpywren.lstsq`` takes any shape).
    """
    if isinstance(A, BigMatrix) and A.size == 0:   # numpy's answer (numpywren.empty_shapes)
        return empty_shapes.lstsq(A, b, rcond, jobs.run_options(executor, check_finite=check_finite, **options))
    _check_tall(A, "lstsq")
    fan_in = _check_fan_in(fan_in)
    _check_options(options)
    opts = jobs.run_options(executor, check_finite=check_finite, **options)
    m, n = A.shape
    vector = False
    temp = None
    if isinstance(b, BigMatrix):
        if b.shape[0] != m or b.tile_shape[0] != A.tile_shape[0] or b.grid[1] != 1:
            raise ValueError(f"lstsq: b must have A's {m} rows in A's row tiles ({A.tile_shape[0]}) and one tile "
                             f"column; got {b!r}")
        jobs.check_complete(b)
        B = b
    else:
        array = np.asarray(b)
        if array.ndim not in (1, 2) or array.shape[0] != m:
            raise np.linalg.LinAlgError(f"lstsq: Incompatible dimensions: b must be a vector or matrix with A's {m} "
                                        f"rows, got shape {array.shape}")
        if not np.issubdtype(array.dtype, np.number):
            raise TypeError(f"lstsq: b must hold numbers, got dtype {array.dtype}")
        vector = array.ndim == 1
        array = array.reshape(m, -1).astype(np.result_type(A.dtype, array.dtype, np.float32), copy=False)
        if array.shape[1] == 0:   # numpy: x (n, 0), no residuals, A's rank and singular values
            B = None
        else:
            temp = protocol.scratch_key(protocol.new_id("lstsq"), "b")
            B = BigMatrix.from_numpy(array, (A.tile_shape[0], array.shape[1]), A.store, temp)
    dtype = np.result_type(A.dtype, B.dtype if B is not None else array.dtype)
    columns = [A, B] if B is not None else [A]
    try:
        plan, R, _ = tsqr_plan(columns, "r", None, fan_in, opts.workers)
    except BaseException:
        if temp is not None:
            B.delete()
        raise

    def finish():
        try:
            r = _read_and_delete(R)
        finally:
            if temp is not None:
                B.delete()
        return _solve_augmented(r, m, n, dtype, rcond, vector)
    plan.finish = finish
    try:
        return _submit(opts, plan, R, columns)
    except BaseException:
        if temp is not None and opts.compute:
            B.delete()
        raise


def _read_and_delete(R: BigMatrix) -> np.ndarray:
    try:
        return R.to_numpy()
    finally:
        R.delete()


def _submit(opts, plan, R: BigMatrix, inputs):
    """Run (or return) the plan; a failed run's R tile goes (its finishing step deletes it otherwise)."""
    try:
        return opts.submit(plan, inputs)
    except BaseException:
        if opts.compute:
            R.delete()
        raise


def _solve_augmented(r: np.ndarray, m: int, n: int, dtype, rcond, vector: bool):
    """x, residuals, rank, s from the R factor of [A | b] (see the module docstring). For complex data
    ``Q^T`` is ``Q^H``; s and the residuals are real, as numpy's."""
    R, qtb = r[:n, :n], r[:n, n:]
    real = np.finfo(dtype).dtype
    s = np.linalg.svd(R, compute_uv=False).astype(real, copy=False)
    if rcond is None:   # numpy's default: it computes in float64 whatever the input's precision
        rcond = np.finfo(np.float64).eps * max(m, n)
    rank = int(np.count_nonzero(s > rcond * s[0])) if s.size and s[0] > 0 else 0
    if rank < n:  # numpy's minimum-norm solution: A = Q R, so min ||R x - Q^T b|| with the least ||x||
        u, sr, vh = np.linalg.svd(R)
        keep = sr > rcond * sr[0] if sr.size and sr[0] > 0 else np.zeros(sr.shape, bool)
        x = (vh[keep].conj().T @ ((u[:, keep].conj().T @ qtb) / sr[keep][:, None])).astype(dtype, copy=False)
        return (x[:, 0] if vector else x), np.empty((0,), dtype=real), rank, s
    from scipy.linalg import solve_triangular  # not at import time: a Lambda layer may lack scipy

    x = solve_triangular(R, qtb, check_finite=False).astype(dtype, copy=False)   # NaN in b propagates
    if m > n and qtb.shape[1]:
        residuals = np.sum(np.abs(r[n:, n:]) ** 2, axis=0).astype(real, copy=False)
    else:
        residuals = np.empty((0,), dtype=real)
    return (x[:, 0] if vector else x), residuals, rank, s


# -- the plan -----------------------------------------------------------------------------------------
def tsqr_plan(columns: list, mode: str, out, fan_in: int, workers: int):
    """The TSQR plan of the matrix whose row blocks are the row blocks of ``columns`` side by side.

    Returns ``(plan, R, Q)``: R the one-tile output (temporary key), Q the
    output BigMatrix in mode ``"reduced"`` (else None).
    """
    A = columns[0]
    dtype = np.result_type(*(M.dtype for M in columns))
    m, c = A.shape[0], sum(M.shape[1] for M in columns)
    form = "r" if mode == "r" else "factor"
    dag, scratch = DAG(), {}
    # A node to factor: (input tile refs, ids of the tasks writing them, rows of the stacked matrix).
    # levels[l]: the factored nodes of level l as (task id, output tile ref, rows, r = min(rows, c)).
    nodes = [([(M, i, 0) for M in columns], (), A.block_shape(i, 0)[0]) for i in range(A.grid[0])]
    levels = []
    while True:
        level, root = len(levels), len(nodes) == 1
        heights = [rows + 1 if form == "factor" else min(rows, c) for _, _, rows in nodes]
        if root and form == "r":
            target = jobs.output_matrix(None, (heights[0], c), (heights[0], c), dtype, A.store, inputs=columns)
        else:
            target = jobs.scratch_matrix(scratch, f"tsqr-{form}{level}", A, (sum(heights), c), (heights[0], c),
                                         dtype)
        done = []
        for v, (refs, deps, rows) in enumerate(nodes):
            task = dag.add(Task(f"tsqr/{form}{level}/{v}", "tsqr", (target, v, 0), tuple(refs),
                                {"form": form, "leaf": level == 0}, deps=deps, flops=qr_flops(rows, c)))
            done.append((task.id, (target, v, 0), rows, min(rows, c)))
        levels.append(done)
        if root:
            break
        groups = [done[g:g + fan_in] for g in range(0, len(done), fan_in)]
        nodes = [([ref for _, ref, _, _ in group], tuple(tid for tid, _, _, _ in group),
                  sum(r for _, _, _, r in group)) for group in groups]
    if form == "r":
        ((_, root_ref, _, _),) = levels[-1]
        R = root_ref[0]
        return jobs.Plan(dag, [jobs.Output(R, "qr", tuple(columns), {"mode": mode})], scratch,
                         f"tsqr {m}x{c} (R only)", workers), R, None
    return _add_q(dag, scratch, levels, columns, out, fan_in, dtype, workers)


def _add_q(dag, scratch, levels, columns, out, fan_in, dtype, workers):
    """Reduced mode: R out of the root's factor tile, then Q top down (see the module docstring)."""
    A = columns[0]
    m, c = A.shape[0], sum(M.shape[1] for M in columns)
    ((root_id, root_ref, _, k),) = levels[-1]
    R = jobs.output_matrix(None, (k, c), (k, c), dtype, A.store, inputs=columns)
    dag.add(Task("tsqr/R", "tsqr_r", (R, 0, 0), (root_ref,), deps=(root_id,), flops=0.0))
    Q = jobs.output_matrix(out, (m, k), (A.tile_shape[0], k), dtype, A.store, inputs=columns)
    # shares[(level, v)] = (task id, ref) of node v's M (None for the root: M = identity).
    shares = {(len(levels) - 1, 0): None}
    for level in range(len(levels) - 1, 0, -1):
        children = levels[level - 1]
        rs = [r for _, _, _, r in children]
        M = jobs.scratch_matrix(scratch, f"tsqr-m{level - 1}", A, (sum(rs), k), (rs[0], k), dtype)
        for p, (pid, pref, prows, pk) in enumerate(levels[level]):
            share = shares[(level, p)]
            offset = 0
            for v in range(p * fan_in, min((p + 1) * fan_in, len(children))):
                inputs = (pref,) if share is None else (pref, share[1])
                deps = (pid,) if share is None else (pid, share[0])
                task = dag.add(Task(f"tsqr/m{level - 1}/{v}", "tsqr_apply", (M, v, 0), inputs,
                                    {"rows": [offset, offset + rs[v]]}, deps=deps,
                                    flops=apply_q_flops(prows, pk, k)))
                shares[(level - 1, v)] = (task.id, (M, v, 0))
                offset += rs[v]
    for i, (tid, ref, rows, r) in enumerate(levels[0]):
        share = shares[(0, i)]
        inputs = (ref,) if share is None else (ref, share[1])
        deps = (tid,) if share is None else (tid, share[0])
        dag.add(Task(f"{Q.key}/Q{i}", "tsqr_apply", (Q, i, 0), inputs, {"rows": [0, rows]}, deps=deps,
                     flops=apply_q_flops(rows, r, k)))
    outputs = [jobs.Output(Q, "qr", tuple(columns), {"mode": "reduced"}), jobs.Output(R, "qr_r", tuple(columns))]
    return jobs.Plan(dag, outputs, scratch, f"tsqr {m}x{c}", workers), R, Q


# -- validation ---------------------------------------------------------------------------------------
def _check_tall(A, name: str) -> None:
    if not isinstance(A, BigMatrix):
        raise TypeError(f"{name} takes a BigMatrix, got {type(A).__name__} (store it with BigMatrix.from_numpy)")
    m, n = A.shape
    if A.grid[1] > 1:
        raise ValueError(f"{name}: A's {n} columns are split over {A.grid[1]} column tiles of {A.tile_shape[1]}; "
                         f"TSQR needs them in one tile column: store A again with tile_shape=({A.tile_shape[0]}, "
                         f"{n}) (e.g. BigMatrix.from_numpy or from_function)")
    if m < n:
        raise ValueError(f"{name}: A is {m}x{n}, wider than tall; TSQR needs rows >= columns "
                         "(numpywren.lstsq solves any shape through the SVD)")
    jobs.check_complete(A)


def _check_fan_in(fan_in) -> int:
    try:
        value = operator.index(fan_in)
    except TypeError:
        value = None
    if value is None or isinstance(fan_in, bool) or value < 2:
        raise ValueError(f"fan_in must be an int >= 2, got {fan_in!r}")
    return value


def _check_options(options: dict) -> None:
    if options.get("resume"):
        raise ValueError("resume=True is not supported by qr/lstsq (R is read back and deleted by the run); "
                         "rerun instead")
    options.pop("resume", None)
