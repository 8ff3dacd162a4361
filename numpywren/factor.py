"""Factor and solve on tiled matrices: ``cholesky``, ``solve_triangular``, ``cho_solve`` (``numpywren.solve``, in
numpywren.decomp_lu, uses them for ``assume_a="pos"``).

Names, arguments and results follow scipy.linalg. Each builds a DAG of tile
tasks (one output tile per task) and runs it with the jobs layer, like
``numpywren.gemm``.

**Variant: left-looking Cholesky with a one-column lookahead; scratch bounded by A's triangle.**
Tile L[i, j] (i >= j) is written once, final, by one task that reads A[i, j] and the panel tiles it needs::

    L[j, j] = potrf(A[j, j] - sum_{k<j} L[j, k] L[j, k]^T)                    (syrk updates)
    L[i, j] = (A[i, j] - sum_{k<j} L[i, k] L[j, k]^T) L[j, j]^-T,  i > j      (gemm updates, trsm)

A right-looking variant updates the trailing matrix after every panel; with
idempotent tasks (a retry must not apply an update twice) each update has to
write a new version of the trailing tile, about g^3/6 tiles for a g x g grid,
O(N^3/t) bytes (tens of GB at N=32768). Plain left-looking writes nothing but
L, but a tile's whole update then runs in the task that finishes it, after the
last panel tile it needs: the critical path is long (at g=16 about half the
total work over 2 workers). So the update is split once: for j >= 2 an
*early* task (op ``chol_update``) applies the columns k < j - 1 as soon as they
exist, writing one scratch tile, and the final task applies the last column and
factors (potrf) or solves (trsm). This cuts the critical path about 3x
(g=16: from 0.51 to 0.18 of total work / 2) for one scratch tile per lower
tile: the scratch is at most A's stored triangle (N^2/2 numbers), written and
read once, deleted with the job. Panel tiles are re-read by the tasks that
need them (about g^3/3 tile reads in all). The other triangle of L is written
as zero tiles, so ``L.to_numpy()`` is scipy's result. ``solve`` keeps its
factor in job scratch too (lower tiles only).

**Triangular solves** are block substitution on every column block of the
right-hand side, also left-looking: X[i, c] = T[i, i]^-1 (B[i, c] - sum_k
T[i, k] X[k, c]), with ``trans`` read through the ``.T`` view of T (no copy).

**Errors.** A diagonal tile that is not positive definite raises
numpy.linalg.LinAlgError in its task, naming the diagonal block and rows; the
scheduler never retries it and submits nothing more, and these functions
re-raise that LinAlgError (the JobFailedError is attached as a note).
"""
from __future__ import annotations

import numpy as np

from blocks.cholesky import diagonal_flops, panel_flops
from numpywren import empty_shapes, jobs, protocol
from numpywren.compat import scipy_call
from numpywren.dag import DAG, Task
from numpywren.matrix import BigMatrix
from numpywren.scheduler import JobFailedError

#: Columns a tile task applies itself; the updates from earlier columns run ahead in a separate task.
LOOKAHEAD = 1


@scipy_call("cholesky", algorithm="a tiled left-looking Cholesky")
def cholesky(A: BigMatrix, lower: bool = True, out: "BigMatrix | str | None" = None, executor=None, *,
             shift: float = 0.0, check_finite: bool = False, compute: bool = True,
             **options) -> "BigMatrix | jobs.Plan":
    """Cholesky factor of a symmetric (complex: Hermitian) positive definite tiled matrix: L with A = L L^H
    (``lower=True``) or U with A = U^H U, as ``scipy.linalg.cholesky`` (the other triangle of the result is
    zero; ^H is ^T for real A).

    Only one triangle of A is read (the lower for ``lower=True``, the upper
    otherwise, as LAPACK does), so a symmetric or Hermitian stored triangle (the
    output of ``syrk``, ``herk`` or ``kernel``) is a valid input; as LAPACK's
    zpotrf, the imaginary parts of a complex A's diagonal are not read. A needs square tiles.
    ``shift`` factors A + shift * I without writing it. Not positive
    definite: numpy.linalg.LinAlgError naming the diagonal block. ``out``,
    ``check_finite``, ``compute`` and the run options (``retries``,
    ``backoff``, ``lease_seconds``, ``progress``, ``resume``) as in
    :func:`numpywren.matmul`.

    Parameters
    ----------
    A : BigMatrix
        Symmetric positive definite, square tiles.
    lower : bool, default True
        Compute L (A = L L^T) or U (A = U^T U).
    out : BigMatrix or str, optional
        The result's key (or an existing BigMatrix, replaced by a new generation); default a new key.
    executor : Executor, optional
        Where the tasks run; default :func:`numpywren.get_executor`.
    shift : float, default 0.0
        Factor A + shift * I.
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
        The factor; the plan with ``compute=False``.

    Raises
    ------
    ValueError
        A is not square or its tiles are not square.
    numpy.linalg.LinAlgError
        A is not positive definite (the diagonal block and rows are named).
    """
    _check_square(A, "cholesky")
    opts = jobs.run_options(executor, compute=compute, check_finite=check_finite, **options)
    workers = opts.workers
    dtype = _float_dtype(A.dtype, allow_complex=True)
    R = jobs.output_matrix(out, A.shape, A.tile_shape, dtype, A.store, inputs=(A,))
    L = R if lower else R.H    # the upper factor U is stored as L^H (L^T if real): L's tiles go to R.H
    dag, scratch = DAG(), {}
    _add_cholesky(dag, A if lower else A.H, L, float(shift), scratch)
    for i, j in L.block_indices():
        if i < j:
            dag.add(Task(f"{R.key}/Z{i}_{j}", "zeros", (L, i, j)))
    params = {"lower": bool(lower), "shift": float(shift)}
    plan = jobs.Plan(dag, [jobs.Output(R, "cholesky", (A,), params)], scratch, f"cholesky {A.shape}", workers)
    return _linalg_errors(opts.submit, plan, [A])


@scipy_call("solve_triangular", algorithm="tiled block substitution")
def solve_triangular(T: BigMatrix, B, lower: bool = True, trans: bool = False, out=None, executor=None, *,
                     check_finite: bool = False, compute: bool = True, **options):
    """X with op(T) X = B for a triangular tiled T (op(T) = T, T^T with ``trans=True``, 1 or "T", T^H with
    ``trans=2`` or "C"), as ``scipy.linalg.solve_triangular``. Only the ``lower`` (or upper) triangle of T
    is read. T and B may be complex (the result's dtype is numpy's promotion of both).

    ``B`` is a BigMatrix (its row tiles must match T's) or a numpy array (1-D
    or 2-D), stored for the job and deleted afterwards; a numpy ``B`` gives a
    numpy result, a BigMatrix ``B`` a BigMatrix (at ``out``). Many columns
    make many independent substitutions (one per column block).

    Parameters
    ----------
    T : BigMatrix
        Triangular, square tiles.
    B : BigMatrix or numpy.ndarray
        Right-hand sides: a BigMatrix with matching row tiles, or a 1-D or 2-D numpy array.
    lower : bool, default True
        Read the lower (or the upper) triangle of T.
    trans : bool or {0, 1, 2, "N", "T", "C"}, default False
        Solve T^T X = B (True, 1, "T") or T^H X = B (2, "C"; T^T for a real T), as scipy.
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
    BigMatrix or numpy.ndarray or Plan
        X: numpy for a numpy ``B``, else a BigMatrix at ``out``; the plan with ``compute=False``.

    Raises
    ------
    ValueError
        Shapes or tiles that do not match, or an invalid ``trans``.
    """
    _check_square(T, "solve_triangular")
    if trans not in (0, 1, 2, "N", "T", "C"):   # False and True are 0 and 1
        raise ValueError(f"trans must be False/True, 0, 1, 2 or 'N', 'T', 'C', got {trans!r}")
    conj = trans in (2, "C") and T.dtype.kind == "c"
    trans = trans in (True, 1, 2, "T", "C")
    opts = jobs.run_options(executor, compute=compute, check_finite=check_finite, **options)
    workers = opts.workers

    def build(Bm: BigMatrix, out_):
        X = jobs.output_matrix(out_, Bm.shape, Bm.tile_shape, _float_dtype(T.dtype, Bm.dtype, allow_complex=True),
                               T.store, inputs=(T, Bm))
        dag = DAG()
        _add_trsm(dag, T, lower != trans, trans, Bm, X, "X", conj=conj)
        params = {"lower": bool(lower), "trans": trans, **({"conj": True} if conj else {})}
        return jobs.Plan(dag, [jobs.Output(X, "solve_triangular", (T, Bm), params)], {},
                         f"solve_triangular {T.shape} {Bm.shape}", workers)
    return _with_rhs(build, T, B, out, opts, [T])


@scipy_call("cho_factor", algorithm="a tiled left-looking Cholesky")
def cho_factor(A: BigMatrix, lower: bool = False, out: "BigMatrix | str | None" = None, executor=None, *,
               check_finite: bool = False, **options):
    """``(C, lower)`` for :func:`cho_solve`, as ``scipy.linalg.cho_factor`` (scipy's default ``lower=False``):
    C is :func:`cholesky`'s factor, a BigMatrix whose other triangle is zero (scipy's holds whatever A held
    there). ``compute=False`` returns cholesky's plan (its value is C)."""
    C = cholesky(A, lower=lower, out=out, executor=executor, check_finite=check_finite, **options)
    return C if isinstance(C, jobs.Plan) else (C, bool(lower))


@scipy_call("cho_solve", algorithm="tiled block substitution")
def cho_solve(c_and_lower, B, out=None, executor=None, *, check_finite: bool = False, compute: bool = True,
              **options):
    """X with A X = B, given ``(C, lower)`` from :func:`cholesky` (A = L L^H or U^H U), as
    ``scipy.linalg.cho_solve``: two triangular solves in one job (the intermediate is job scratch).
    ``B`` as in :func:`solve_triangular`.

    Parameters
    ----------
    c_and_lower : tuple of (BigMatrix, bool)
        The factor from :func:`cholesky` and whether it is lower.
    B : BigMatrix or numpy.ndarray
        Right-hand sides: a BigMatrix with matching row tiles, or a 1-D or 2-D numpy array.
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
    BigMatrix or numpy.ndarray or Plan
        X: numpy for a numpy ``B``, else a BigMatrix at ``out``; the plan with ``compute=False``.
    """
    C, lower = c_and_lower
    _check_square(C, "cho_solve")
    opts = jobs.run_options(executor, compute=compute, check_finite=check_finite, **options)
    workers = opts.workers

    def build(Bm: BigMatrix, out_):
        return _cho_plan(C, lower, {}, Bm, out_, "cho_solve", (C, Bm), {"lower": bool(lower)}, workers)
    return _with_rhs(build, C, B, out, opts, [C])


# -- DAG construction ---------------------------------------------------------------------
def _add_cholesky(dag: DAG, A: BigMatrix, L: BigMatrix, shift: float, scratch: dict) -> dict:
    """Left-looking Cholesky tasks writing the lower tiles of L from the lower tiles of A, with a
    lookahead of ``LOOKAHEAD`` columns (see the module docstring); returns {(i, j): id of the task that
    writes L[i, j]}."""
    ids: dict = {}
    g = A.grid[0]
    name = L.key if not L.transposed else L.key + "/T"
    S = None
    for j in range(g):
        n = A.block_shape(j, j)[0]
        cut = j - LOOKAHEAD      # columns k < cut are applied early, into a scratch tile
        for i in range(j, g):
            m = A.block_shape(i, j)[0]
            diagonal = i == j
            source, early, late = (A, i, j), range(max(0, cut)), range(max(0, cut), j)
            params = {"shift": shift} if shift and diagonal else None
            if cut >= 1:
                if S is None:
                    S = jobs.scratch_matrix(scratch, "partial", A, A.shape, A.tile_shape, L.dtype)
                updates = (tuple((L, j, k) for k in early) if diagonal
                           else tuple(((L, i, k), (L, j, k)) for k in early))
                deps = tuple(dict.fromkeys([ids[i, k] for k in early] + [ids[j, k] for k in early]))
                k_cols = sum(A.block_shape(j, k)[1] for k in early)
                flops = float(m) * n * k_cols * (1 if diagonal else 2)
                early_id = dag.add(Task(f"{name}/P{i}_{j}", "chol_update", (S, i, j), ((A, i, j), updates),
                                        {"diagonal": diagonal, **(params or {})}, deps=deps, flops=flops)).id
                source, params = (S, i, j), None
            k_cols = sum(A.block_shape(j, k)[1] for k in late)
            deps = [early_id] if cut >= 1 else []
            if diagonal:
                deps += [ids[j, k] for k in late]
                ids[j, j] = dag.add(Task(f"{name}/L{j}_{j}", "potrf", (L, j, j),
                                         (source, tuple((L, j, k) for k in late)), {**(params or {}), "of": A.key},
                                         deps=tuple(dict.fromkeys(deps)), flops=diagonal_flops(n, k_cols))).id
            else:
                deps += [ids[i, k] for k in late] + [ids[j, k] for k in (*late, j)]
                pairs = tuple(((L, i, k), (L, j, k)) for k in late)
                ids[i, j] = dag.add(Task(f"{name}/L{i}_{j}", "chol_panel", (L, i, j), (source, (L, j, j), pairs),
                                         deps=tuple(dict.fromkeys(deps)), flops=panel_flops(m, n, k_cols))).id
    return ids


def _add_trsm(dag: DAG, T: BigMatrix, lower: bool, trans: bool, B: BigMatrix, X: BigMatrix, tag: str,
              t_ids: dict | None = None, b_ids: dict | None = None, conj: bool = False) -> dict:
    """Block substitution tasks for op(T) X = B, one per X tile; op(T) = T^T if ``trans`` (T^H if also
    ``conj``; its tiles are read as stored and transposed by the worker: no view of a scratch matrix), lower-triangular if
    ``lower``. ``t_ids``/``b_ids`` map stored tiles of T / tiles of B computed in the same DAG to their
    tasks. Returns {(i, c): task id}."""
    t_ids, b_ids = t_ids or {}, b_ids or {}
    g = T.grid[0]
    order = range(g) if lower else range(g - 1, -1, -1)

    def tile(i, k):   # block (i, k) of op(T), as stored
        return (T, k, i) if trans else (T, i, k)
    ids: dict = {}
    for c in range(B.grid[1]):
        for i in order:
            ks = range(i) if lower else range(i + 1, g)
            rows, cols = B.block_shape(i, c)
            pairs = tuple((tile(i, k), (X, k, c)) for k in ks)
            deps = [ids[k, c] for k in ks] + [t_ids[tile(i, k)[1:]] for k in (*ks, i) if tile(i, k)[1:] in t_ids]
            if (i, c) in b_ids:
                deps.append(b_ids[i, c])
            flops = sum(2.0 * rows * cols * B.block_shape(k, c)[0] for k in ks) + float(rows) * rows * cols
            ids[i, c] = dag.add(Task(f"{X.key}/{tag}{i}_{c}", "trsm", (X, i, c), ((B, i, c), tile(i, i), pairs),
                                     {"lower": lower, "trans": trans, **({"conj": True} if conj else {})},
                                     deps=tuple(dict.fromkeys(deps)),
                                     flops=flops)).id
    return ids


def _cho_plan(C: BigMatrix, lower: bool, c_ids: dict, B: BigMatrix, out, op: str, inputs: tuple, params: dict,
              workers: int, dag: DAG | None = None, scratch: dict | None = None) -> jobs.Plan:
    """A X = B for A = L L^H (``lower``, C = L) or U^H U (C = U) as two substitutions, forward into
    scratch Y then backward into X, appended to ``dag`` (whose tasks ``c_ids`` compute C's tiles)."""
    dag, scratch = dag if dag is not None else DAG(), scratch if scratch is not None else {}
    _check_rhs(C, B)
    dtype = _float_dtype(C.dtype, B.dtype, allow_complex=True)
    conj = C.dtype.kind == "c"
    X = jobs.output_matrix(out, B.shape, B.tile_shape, dtype, C.store, inputs=inputs)
    Y = jobs.scratch_matrix(scratch, "Y", C, B.shape, B.tile_shape, dtype)
    y_ids = _add_trsm(dag, C, True, not lower, B, Y, "Y", t_ids=c_ids, conj=conj)           # L Y = B
    _add_trsm(dag, C, False, lower, Y, X, "X", t_ids=c_ids, b_ids=y_ids, conj=conj)          # L^H X = Y
    return jobs.Plan(dag, [jobs.Output(X, op, inputs, params)], scratch, f"{op} {C.shape} {B.shape}", workers)


# -- right-hand sides, errors, validation ------------------------------------------------------
def _with_rhs(build, T: BigMatrix, B, out, opts: jobs.RunOptions, inputs):
    """The plan of ``build(B as a BigMatrix, out)``; a numpy ``B`` is stored under the run's scratch first
    and the plan's finishing step reads the result back as numpy (both deleted afterwards)."""
    if isinstance(B, BigMatrix):
        _check_rhs(T, B)
        return _linalg_errors(opts.submit, build(B, out), inputs + [B])
    if out is not None:
        raise ValueError("out= is for a BigMatrix right-hand side; a numpy B gives a numpy result")
    b = np.asarray(B)
    if b.ndim not in (1, 2) or b.shape[0] != T.shape[0]:
        raise ValueError(f"B must be 1-D or 2-D with {T.shape[0]} rows (the order of the matrix), got shape "
                         f"{b.shape}")
    if b.size == 0:   # no right-hand sides: numpy's/scipy's empty result (a plan of no task)
        return empty_shapes.solution(b.shape, _float_dtype(T.dtype, b.dtype, allow_complex=True), opts, "solve")
    b2 = b.reshape(b.shape[0], -1).astype(_float_dtype(b.dtype, allow_complex=True), copy=False)
    prefix = protocol.scratch_key(protocol.new_id("rhs"), "rhs")
    store = T.store
    Bm = BigMatrix.from_numpy(b2, (T.tile_shape[0], max(1, min(b2.shape[1], T.tile_shape[0]))), store,
                              f"{prefix}/B")
    try:
        plan = build(Bm, f"{prefix}/X")
    except BaseException:
        store.delete_prefix(f"{prefix}/")
        raise

    def finish():
        try:
            x = plan.result.to_numpy()
        finally:
            store.delete_prefix(f"{prefix}/")
        return x.reshape(b.shape) if b.ndim == 1 else x
    plan.finish = finish
    if not opts.compute:   # B stays stored until the plan runs (its finishing step deletes it)
        return opts.submit(plan, inputs + [Bm])
    try:
        return _linalg_errors(opts.submit, plan, inputs + [Bm])
    finally:
        store.delete_prefix(f"{prefix}/")


def _linalg_errors(fn, *args):
    """Re-raise a task's LinAlgError itself (numpy-like), the job failure attached as a note."""
    try:
        return fn(*args)
    except JobFailedError as e:
        cause = e.__cause__
        if isinstance(cause, np.linalg.LinAlgError):
            cause.add_note(f"(numpywren: {e})")
            cause.task_id, cause.attempts = e.task_id, e.attempts
            raise cause from None
        raise


def _float_dtype(*dtypes, allow_complex: bool = False) -> np.dtype:
    """The dtype a factorization computes in (numpy's promotion, at least float32). ``allow_complex``: the
    operation has a complex path (cholesky, solve_triangular, cho_solve); the others refuse complex."""
    dtype = np.result_type(*dtypes, np.float32)
    allowed = (np.float32, np.float64) + ((np.complex64, np.complex128) if allow_complex else ())
    if dtype not in allowed:
        kinds = "float32/float64/complex64/complex128" if allow_complex else "real float32/float64"
        numpys = f"array type {dtype} is unsupported in linalg (as numpy.linalg says): " if dtype.kind in "fc" else ""
        raise TypeError(f"{numpys}factor and solve need {kinds} data, got {dtype}")
    return dtype


def _check_square(A, name: str) -> None:
    if not isinstance(A, BigMatrix):
        raise TypeError(f"{name}: the matrix must be a BigMatrix, got {type(A).__name__} "
                        "(store it with BigMatrix.from_numpy first)")
    if A.shape[0] != A.shape[1]:   # numpy's LinAlgError, a ValueError as scipy's
        raise np.linalg.LinAlgError(f"{name}: the matrix must be square, got shape {A.shape}")
    if A.tile_shape[0] != A.tile_shape[1]:
        raise ValueError(f"{name}: the matrix needs square tiles, got {A.tile_shape}; re-tile it")
    jobs.check_complete(A)


def _check_rhs(T: BigMatrix, B: BigMatrix) -> None:
    if B.shape[0] != T.shape[0]:
        raise ValueError(f"B has {B.shape[0]} rows but the matrix has order {T.shape[0]}")
    if B.tile_shape[0] != T.tile_shape[0]:
        raise ValueError(f"B's row tiles ({B.tile_shape[0]}) must match the matrix's tiles ({T.tile_shape[0]}); "
                         "re-tile B")
    if B.key != T.key:
        jobs.check_complete(B)


def cholesky_flops(n: int) -> float:
    """The conventional flop count of a Cholesky factorization, n^3 / 3."""
    return n ** 3 / 3.0


__all__ = ["cholesky", "solve_triangular", "cho_solve", "cholesky_flops"]
