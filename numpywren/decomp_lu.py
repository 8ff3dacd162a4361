"""General square matrices: ``solve`` (scipy's, dispatching on ``assume_a``), ``lu_factor``, ``lu_solve``,
``lu``, ``inv``, ``det``, ``slogdet``, with scipy's and numpy's names, arguments and results.

**Variant: left-looking blocked LU with panel-wide partial pivoting, rows kept in place.**
The pivots of panel k are chosen by partial pivoting (LAPACK getrf) over *every* row of the
panel's tile column not factored yet, in one task: the same pivots as GEPP on the whole matrix
(up to rounding), so the stability is partial pivoting's, not a tile-local approximation. One
tile column (a panel) is the most any task or driver step holds; everything else streams.

Rows are never swapped in the store. Scratch tiles keep the rows of A where they are, and a
small *record* per panel (one tile: the pivot order so far, the first zero pivot, the packed
diagonal block) says which rows are factored and in which order. With rows in place, the updates
of a tile from earlier panels are a plain sum (rows already factored carry zero multipliers; the
update tasks skip them, and the rows an earlier record lists as factored), so each tile is written
once, left-looking, as in ``numpywren.factor``'s Cholesky::

    E[i, k] = A[i, k] - sum_{m < k-1} Lt[i, m] U[m, k]          (lookahead: runs early, k >= 2)
    R[k]    = getrf over the rows of E[:, k] - Lt[:, k-1] U[k-1, k] not factored yet     (one task:
              pivot order, LU_kk; it computes U[k-1, k] and applies that last update itself, and
    Lt[i, k] = (those rows) U_kk^-1 on tile row i's unfactored rows, 0 elsewhere   writes getrf's L)
    LU[k, m] = rows of Lt[:, m] that panel k factored, in pivot order             (m < k, gather)
    LU[k, j] = L_kk^-1 (A[rows of panel k, j] - sum_{m<k} LU[k, m] LU[m, j])      (j > k)

The row exchanges travel with the updates: every task that needs a row reads it where it is.
``LU`` is scipy's packed factor; ``piv`` (LAPACK's interchanges) is derived from the last record.
**Scratch**: E and Lt (two N x N matrices of A's tiles, written once, deleted with the job),
g records of N + 1 + t^2 numbers and g pivot orders (a record's first N + 1 numbers, all that
the updates, gathers and permutations read). **Critical path**: the panel tasks, one after the
other; panel k streams its tile column with Lt[:, k-1], computes U[k-1, k] (a trsm on the rows
panel k-1 factored, as the ``lu_upper`` task writing it does beside) and its rows' last update
(one gemm), then getrf ((N - k t) t^2 flops); the other updates, U blocks and gathers run ahead
or beside. The panel task writes its multipliers Lt[:, k] and pivot order before its record
(its output, the tile whose presence means the task is done), so no task recomputes them.

Solves with the factor permute B's rows (one gather task per tile), then substitute forward
with the unit lower L and backward with U, as in ``numpywren.factor``. In ``solve`` and ``inv`` the
factorization and the substitutions are one DAG: tile row i of P^T B reads panel i's pivot
order (those positions are final once panel i has pivoted), so the permutation and the forward
substitution run alongside the factorization; only the backward substitution follows its last panel.

**Errors and warnings** as numpy/scipy: an exactly zero pivot makes ``solve``, ``inv`` and
``lu_solve`` raise numpy.linalg.LinAlgError naming the diagonal block; ``lu_factor`` and ``lu``
warn (scipy's LinAlgWarning) and return the factor; ``det``/``slogdet`` return 0 / (0, -inf).
``solve`` warns (LinAlgWarning) when LAPACK gecon's reciprocal condition estimate is below eps, as
scipy does; the estimate is made by tile tasks (:func:`_add_rcond`, docs/guide/general-matrices.md).
"""
from __future__ import annotations

import warnings

import numpy as np

from blocks.lu import record_length, unpack_record
from numpywren import empty_shapes, jobs, protocol
from numpywren.compat import scipy_call
from numpywren.dag import DAG, Task
from numpywren.heartbeat import Heartbeat
from numpywren.factor import (_add_cholesky, _check_rhs, _check_square, _cho_plan, _float_dtype, _linalg_errors,
                              _with_rhs, solve_triangular)
from numpywren.matrix import BigMatrix

try:  # scipy's warning class when scipy is there (it is for factor and solve tiles)
    from scipy.linalg import LinAlgWarning
except ImportError:  # pragma: no cover
    class LinAlgWarning(RuntimeWarning):
        """An ill-conditioned or singular matrix (scipy.linalg.LinAlgWarning's role)."""

SlogdetResult = np.linalg._linalg.SlogdetResult


def _dtype(*dtypes) -> np.dtype:
    """The dtype a solve or LU computes in: numpy's promotion, at least float32, complex included."""
    return _float_dtype(*dtypes, allow_complex=True)


# -- public functions ---------------------------------------------------------------------------------
#: scipy.linalg.solve's ``assume_a`` names, as this module serves them (LU for every non-"pos" structure but the
#: triangular ones; see docs/guide/general-matrices.md)
ASSUME_A = {None: None, "gen": "gen", "general": "gen", "sym": "sym", "symmetric": "sym", "her": "her",
            "hermitian": "her", "pos": "pos", "positive definite": "pos", "diagonal": "gen", "tridiagonal": "gen",
            "lower triangular": "lower", "upper triangular": "upper"}


@scipy_call("solve", algorithm="LU with partial pivoting, or Cholesky for assume_a='pos'")
def solve(A: BigMatrix, B, lower: bool = False, overwrite_a: bool = False, overwrite_b: bool = False,
          check_finite: bool = False, assume_a: str | None = None, transposed: bool = False, *, out=None,
          executor=None, shift: float = 0.0, compute: bool = True, **options):
    """X with A X = B (A^T X = B if ``transposed``), as ``scipy.linalg.solve`` (same arguments and defaults,
    but ``check_finite=False``: the check is a pass over A's tiles).

    ``assume_a=None`` (scipy's default) solves by LU with partial pivoting (below), reading only
    the stored triangle of a matrix stored as one (``syrk``, ``kernel``): "sym". ``"gen"`` is LU; ``"sym"``
    is LU of the symmetric matrix the ``lower`` (or upper) triangle defines; ``"pos"`` is Cholesky of
    that triangle (a matrix whose stored blocks are not symmetric raises ValueError, after a check of a
    few tiles); ``"lower triangular"``/``"upper triangular"`` substitute. ``shift`` (Cholesky only, so it
    implies ``"pos"`` when ``assume_a`` is None) solves (A + shift I) X = B. ``B`` as in
    :func:`solve_triangular`; with no columns the result is empty.
    Singular: numpy.linalg.LinAlgError naming the block; ill-conditioned: scipy's LinAlgWarning.
    """
    if assume_a not in ASSUME_A:
        raise ValueError(f"{assume_a!r} is not a recognized matrix structure (one of {sorted(map(str, ASSUME_A))})")
    kind = ASSUME_A[assume_a]
    _check_square(A, "solve")
    if kind is None:   # shift= is Cholesky's (kernel ridge): it implies "pos"
        kind = "pos" if shift else "her" if getattr(A, "hermitian", False) else "sym" if A.symmetric else "gen"
    if shift and kind != "pos":
        raise ValueError("shift= is for assume_a='pos' (Cholesky of A + shift I)")
    if kind == "her" and A.dtype.kind != "c":   # a real Hermitian matrix is a symmetric one
        kind = "sym"
    if transposed and A.dtype.kind == "c":      # scipy's own refusal, kept so that results match scipy's
        raise NotImplementedError("scipy.linalg.solve can currently not solve a^T x = b or a^H x = b for "
                                  "complex matrices.")
    if kind in ("lower", "upper"):
        return solve_triangular(A, B, lower=kind == "lower", trans=bool(transposed), out=out, executor=executor,
                                check_finite=check_finite, compute=compute, **options)
    if kind != "pos":
        M = A.T if transposed and kind == "gen" else A
        return solve_general(M, B, symmetric=None if kind == "gen" else ("lower" if lower else "upper"),
                             hermitian=kind == "her", out=out,
                             executor=executor, check_finite=check_finite, compute=compute, **options)
    lower = bool(lower) or A.symmetric     # a matrix stored as one triangle: that (lower) triangle
    if not A.symmetric:
        _check_symmetric_blocks(A)
    opts = jobs.run_options(executor, compute=compute, check_finite=check_finite, **options)
    workers = opts.workers
    T = A if lower else (A.H if A.dtype.kind == "c" else A.T)   # the lower triangle of the Hermitian matrix

    def build(Bm: BigMatrix, out_):
        dag, scratch = DAG(), {}
        # factored in the solution's precision, as scipy does (float32 A with float64 B: float64 throughout)
        L = jobs.scratch_matrix(scratch, "L", A, A.shape, A.tile_shape, _dtype(A.dtype, Bm.dtype))
        ids = _add_cholesky(dag, T, L, float(shift), scratch)
        return _cho_plan(L, True, ids, Bm, out_, "solve", (A, Bm),
                         {"assume_a": "pos", "lower": lower, "shift": float(shift)}, workers, dag, scratch)
    return _with_rhs(build, A, B, out, opts, [A])


def _check_symmetric_blocks(A: BigMatrix) -> None:
    """assume_a="pos" on a matrix stored in full: compare a few blocks with their mirror images (the first
    diagonal block, the corner pair) and refuse a matrix that is plainly not symmetric, instead of
    silently factoring one triangle of it."""
    g = A.grid[0]
    pairs = [(0, 0)] + ([(g - 1, 0)] if g > 1 else [])
    eps = np.finfo(_dtype(A.dtype)).eps
    for i, j in pairs:
        x, y = A.get_block(i, j), A.get_block(j, i)
        scale = max(float(np.abs(x).max(initial=0)), float(np.abs(y).max(initial=0)))
        diff = float(np.abs(x - y.conj().T).max(initial=0))   # Hermitian for a complex A
        if diff > np.sqrt(eps) * scale:
            raise ValueError(f"solve(assume_a='pos'): {A.key} is not symmetric: block ({i}, {j}) differs from the "
                             f"transpose of block ({j}, {i}) by up to {diff:.3g}; use assume_a='gen' (LU) or None")


def lu_factor(A: BigMatrix, overwrite_a: bool = False, check_finite: bool = True, *, out=None, executor=None,
              compute: bool = True, **options):
    """``(lu, piv)`` with A = P L U, as ``scipy.linalg.lu_factor``: ``lu`` a BigMatrix holding U and the
    unit lower L, ``piv`` LAPACK's 0-based interchanges (int32 numpy array). An exactly singular A warns
    (LinAlgWarning) and returns the factor, as scipy does. ``overwrite_a`` is accepted and ignored (A is
    never written). ``out`` names ``lu``; run options as in :func:`numpywren.matmul`. ``compute=False``
    returns the Plan (to inspect: its outputs are the panel records, then ``lu``). An empty A (m x n) of any
    shape gives scipy's m x n ``lu`` and no pivots."""
    if isinstance(A, BigMatrix) and A.size == 0:
        return empty_shapes.lu_factor(A, out, jobs.run_options(executor, compute=compute, **options))
    _check_square(A, "lu_factor")
    opts = jobs.run_options(executor, compute=compute, check_finite=check_finite, **options)
    LU = jobs.output_matrix(out, A.shape, A.tile_shape, _dtype(A.dtype), A.store, inputs=(A,))
    R = _record_matrix(A, f"{LU.key}.records", LU.store)
    dag, scratch = DAG(), {}
    _add_lu(dag, A, LU, R, scratch, raise_singular=False)
    plan = jobs.Plan(dag, [jobs.Output(R, "lu_records", (A,)), jobs.Output(LU, "lu_factor", (A,))], scratch,
                     f"lu_factor {A.shape}", opts.workers)

    def finish():   # after the run: LAPACK's piv from the last record, the records deleted
        try:
            order, info, _ = _summary(R, A)
        finally:
            R.delete()
        _warn_singular(info)
        return LU, _ipiv(order)
    plan.finish = finish
    return _submit(opts, plan, [A], R)


def lu_solve(lu_and_piv, b, trans: int = 0, overwrite_b: bool = False, check_finite: bool = True, *, out=None,
             executor=None, **options):
    """x with A x = b (``trans=0``), A^T x = b (1) or A^H x = b (2), given ``(lu, piv)`` from :func:`lu_factor`, as
    ``scipy.linalg.lu_solve``. ``b`` as in :func:`numpywren.solve_triangular` (numpy in, numpy out). An
    exactly zero pivot in U raises numpy.linalg.LinAlgError naming its diagonal block."""
    LU, piv = lu_and_piv
    _check_square(LU, "lu_solve")
    if trans not in (0, 1, 2):
        raise ValueError(f"trans must be 0, 1 or 2, got {trans!r}")
    n = LU.shape[0]
    piv = np.asarray(piv)
    if piv.shape != (n,) or n and (not np.issubdtype(piv.dtype, np.integer) or piv.min() < 0 or piv.max() >= n):
        raise ValueError(f"piv must be {n} integers in [0, {n}) (from lu_factor), got {piv.dtype} {piv.shape}")
    opts = jobs.run_options(executor, check_finite=check_finite, **options)
    empty = _empty_result(LU, b, out, opts, "lu_solve")
    if empty is not None:
        return empty
    held = _CallScratch(LU.store)
    try:
        order = BigMatrix.from_numpy(_order(piv)[None, :].astype(np.float64), (1, max(1, n)), LU.store,
                                     held.key("order"))
    except BaseException:
        held.close()
        raise

    def build(Bm, out_):
        dag, scratch = DAG(), {}
        X = jobs.output_matrix(out_, Bm.shape, Bm.tile_shape, _dtype(LU.dtype, Bm.dtype), LU.store,
                               inputs=(LU, Bm))
        _add_lu_solve(dag, scratch, LU, {}, (order, 0, 0), None, Bm, X, bool(trans), LU.key,
                      conjugate=trans == 2 and X.dtype.kind == "c")
        return jobs.Plan(dag, [jobs.Output(X, "lu_solve", (LU, Bm, order), {"trans": int(trans)})], scratch,
                         f"lu_solve {LU.shape} {Bm.shape}", opts.workers)
    return _then(opts, lambda: _with_rhs(build, LU, b, out, opts, [LU]), lambda x: x,
                 held.close)


def lu(A: BigMatrix, permute_l: bool = False, overwrite_a: bool = False, check_finite: bool = True,
       p_indices: bool = False, *, executor=None, **options):
    """``(P, L, U)`` with A = P L U, as ``scipy.linalg.lu``: L, U (and P) BigMatrices. ``p_indices=True``
    gives P as row indices (a numpy int array p with A = L[p] U) instead of a dense N x N matrix;
    ``permute_l=True`` gives ``(P L, U)``. An exactly singular A warns (LinAlgWarning). An empty A of any shape
    gives scipy's empty factors."""
    if isinstance(A, BigMatrix) and A.size == 0:
        return empty_shapes.lu(A, permute_l, p_indices, jobs.run_options(executor, **options))
    _check_square(A, "lu")
    opts = jobs.run_options(executor, check_finite=check_finite, **options)
    dtype = _dtype(A.dtype)
    dag, scratch = DAG(), {}
    LU = jobs.scratch_matrix(scratch, "LU", A, A.shape, A.tile_shape, dtype)
    held = _CallScratch(A.store)
    R = _record_matrix(A, held.key("records"))
    ids = _add_lu(dag, A, LU, R, scratch, raise_singular=False)
    L = (jobs.scratch_matrix(scratch, "L", A, A.shape, A.tile_shape, dtype) if permute_l
         else jobs.output_matrix(None, A.shape, A.tile_shape, dtype, A.store, inputs=(A,)))
    U = jobs.output_matrix(None, A.shape, A.tile_shape, dtype, A.store, inputs=(A,))
    l_ids = {}
    for i, j in LU.block_indices():
        for M, part in ((L, "L"), (U, "U")):
            keep = i > j if part == "L" else i < j
            if i == j or keep:
                l_ids[part, i, j] = dag.add(Task(f"{M.key}/{part}{i}_{j}", "lu_split", (M, i, j), ((LU, i, j),),
                                                 {"part": part if i == j else "copy"},
                                                 deps=(ids["LU", i, j],))).id
            else:
                l_ids[part, i, j] = dag.add(Task(f"{M.key}/Z{i}_{j}", "zeros", (M, i, j))).id
    outputs = [jobs.Output(R, "lu_records", (A,))]
    last = (scratch["orders"], A.grid[0] - 1, 0)
    n = A.shape[0]
    if permute_l:
        PL = jobs.output_matrix(None, A.shape, A.tile_shape, dtype, A.store, inputs=(A,))
        for i, j in PL.block_indices():
            dag.add(Task(f"{PL.key}/P{i}_{j}", "lu_permute", (PL, i, j),
                         (last, tuple((L, r, j) for r in range(A.grid[0]))), {"n": n, "t": A.tile_shape[0],
                                                                               "inverse": True},
                         deps=(ids["R", A.grid[0] - 1], *(l_ids["L", r, j] for r in range(A.grid[0])))))
        outputs += [jobs.Output(PL, "lu", (A,), {"part": "PL"})]
    elif not p_indices:
        P = jobs.output_matrix(None, A.shape, A.tile_shape, np.finfo(dtype).dtype, A.store,   # real, as scipy's
                               inputs=(A,))
        for i, j in P.block_indices():
            dag.add(Task(f"{P.key}/P{i}_{j}", "lu_permutation", (P, i, j), (last,), {"n": n},
                         deps=(ids["R", A.grid[0] - 1],)))
        outputs += [jobs.Output(P, "lu", (A,), {"part": "P"})]
    if not permute_l:
        outputs += [jobs.Output(L, "lu", (A,), {"part": "L"})]
    outputs += [jobs.Output(U, "lu", (A,), {"part": "U"})]
    plan = jobs.Plan(dag, outputs, scratch, f"lu {A.shape}", opts.workers)

    def after(_):
        order, info, _ = _summary(R, A)
        _warn_singular(info)
        if permute_l:
            return PL, U
        return (np.argsort(order).astype(np.int32) if p_indices else P), L, U
    return _then(opts, lambda: _linalg_errors(opts.submit, plan, [A]), after, held.close)


def solve_general(A: BigMatrix, B, *, symmetric: str | None = None, hermitian: bool = False, out=None,
                  executor=None, check_finite: bool = False, compute: bool = True, **options):
    """X with A X = B by LU with partial pivoting, in one job (the general branch of
    :func:`numpywren.solve`). ``symmetric="lower"``/``"upper"`` reads only that triangle of A (scipy's
    ``assume_a="sym"``; with ``hermitian``, of a complex Hermitian A, scipy's "her"). Singular:
    LinAlgError naming the block; ill-conditioned: LinAlgWarning."""
    _check_square(A, "solve")
    opts = jobs.run_options(executor, compute=compute, check_finite=check_finite, **options)
    empty = _empty_result(A, B, out, opts, "solve")
    if empty is not None:
        return empty
    held = _CallScratch(A.store)
    R = _record_matrix(A, held.key("records"),
                       rhs_dtype=B.dtype if isinstance(B, BigMatrix) else np.asarray(B).dtype)
    K = jobs.output_matrix(held.key("rcond"), (1, 1), (1, 1), np.float64, A.store, inputs=(A,))

    def build(Bm, out_):
        dag, scratch = DAG(), {}
        dtype = _dtype(A.dtype, Bm.dtype)   # factored in the solution's precision, as scipy does
        LU = jobs.scratch_matrix(scratch, "LU", A, A.shape, A.tile_shape, dtype)
        ids = _add_lu(dag, A, LU, R, scratch, symmetric=symmetric, hermitian=hermitian, raise_singular=True)
        X = jobs.output_matrix(out_, Bm.shape, Bm.tile_shape, dtype, A.store, inputs=(A, Bm))
        orders = scratch["orders"]
        _add_lu_solve(dag, scratch, LU, ids, (orders, A.grid[0] - 1, 0), ids["R", A.grid[0] - 1], Bm, X, False,
                      A.key, orders=orders)
        _add_rcond(dag, A, LU, orders, ids, K, scratch, symmetric=symmetric, hermitian=hermitian)
        return jobs.Plan(dag, [jobs.Output(R, "lu_records", (A,)), jobs.Output(K, "lu_rcond", (A,)),
                               jobs.Output(X, "solve", (A, Bm), {"assume_a": "gen", "symmetric": symmetric})],
                         scratch, f"solve {A.shape} {Bm.shape}", opts.workers)

    def after(x):
        _warn_conditioning(float(K.get_block(0, 0)[0, 0].real),
                           _dtype(A.dtype, B.dtype if isinstance(B, BigMatrix) else np.asarray(B).dtype))
        return x
    return _then(opts, lambda: _with_rhs(build, A, B, out, opts, [A]), after, held.close)


@scipy_call("inv", algorithm="a blocked LU with partial pivoting")
def inv(A: BigMatrix, *, out=None, executor=None, check_finite: bool = False, **options) -> BigMatrix:
    """The inverse of a square tiled matrix, as ``numpy.linalg.inv`` (a BigMatrix): LU, then P^T I
    substituted column block by column block (the identity is never stored). Singular: LinAlgError
    naming the block."""
    _check_square(A, "inv")
    opts = jobs.run_options(executor, check_finite=check_finite, **options)
    if A.shape[0] == 0:   # numpy's 0 x 0 (numpywren.empty_shapes)
        return empty_shapes.inv(A, out, opts)
    dtype = _dtype(A.dtype)
    dag, scratch = DAG(), {}
    LU = jobs.scratch_matrix(scratch, "LU", A, A.shape, A.tile_shape, dtype)
    R = jobs.scratch_matrix(scratch, "records", A, (A.grid[0], record_length(*_nt(A))),
                            (1, record_length(*_nt(A))), _record_dtype(A.dtype))
    ids = _add_lu(dag, A, LU, R, scratch, raise_singular=True)
    X = jobs.output_matrix(out, A.shape, A.tile_shape, dtype, A.store, inputs=(A,))
    orders = scratch["orders"]
    _add_lu_solve(dag, scratch, LU, ids, (orders, A.grid[0] - 1, 0), ids["R", A.grid[0] - 1], None, X, False, A.key,
                  orders=orders)
    plan = jobs.Plan(dag, [jobs.Output(X, "inv", (A,))], scratch, f"inv {A.shape}", opts.workers)
    return _linalg_errors(opts.submit, plan, [A])


def slogdet(A: BigMatrix, *, executor=None, check_finite: bool = False, **options) -> SlogdetResult:
    """``(sign, logabsdet)`` of a square tiled matrix, as ``numpy.linalg.slogdet`` (a SlogdetResult);
    singular: (0, -inf). For a complex A the sign is a complex number of modulus 1 and logabsdet is real."""
    _check_square(A, "slogdet")
    dtype = _dtype(A.dtype)
    real = np.finfo(dtype).dtype
    opts = jobs.run_options(executor, check_finite=check_finite, **options)
    if A.shape[0] == 0:   # the empty product: (1, 0), as numpy
        return empty_shapes.slogdet(A, opts)
    dag, scratch = DAG(), {}
    LU = jobs.scratch_matrix(scratch, "LU", A, A.shape, A.tile_shape, dtype)
    held = _CallScratch(A.store)
    R = _record_matrix(A, held.key("records"))
    _add_lu(dag, A, LU, R, scratch, raise_singular=False)
    plan = jobs.Plan(dag, [jobs.Output(R, "lu_records", (A,))], scratch, f"slogdet {A.shape}", opts.workers)

    def after(_):
        order, info, diagonal = _summary(R, A)
        if info:
            return SlogdetResult(dtype.type(0.0), real.type(-np.inf))
        magnitude = np.abs(diagonal)
        sign = _parity(order) * np.prod(diagonal / magnitude)   # each factor +-1, or a complex unit
        return SlogdetResult(dtype.type(sign), real.type(np.sum(np.log(magnitude))))
    return _then(opts, lambda: _linalg_errors(opts.submit, plan, [A]), after, held.close)


@scipy_call("det", algorithm="a blocked LU with partial pivoting")
def det(A: BigMatrix, *, executor=None, check_finite: bool = False, **options):
    """The determinant, as ``numpy.linalg.det`` (sign * exp(logabsdet), as numpy computes it; 0.0 if singular)."""
    _check_square(A, "det")
    result = slogdet(A, executor=executor, check_finite=check_finite, **options)
    if isinstance(result, jobs.Plan):   # compute=False: the determinant is the plan's value
        inner = result.finish
        result.finish = lambda: _det(inner())
        return result
    return _det(result)


def _det(result: SlogdetResult):
    sign, logdet = result
    return sign * np.exp(logdet)


class _CallScratch:
    """What one call keeps outside its runs (the panel records it reads after the run, lu_solve's pivot
    order), under ``jobs/<owner>/`` with the owner's heartbeat, as a run keeps its scratch: ``numpywren store
    gc`` leaves it while the call is alive (until ``close``; for a plan built with ``compute=False``, until
    its finishing step has run) and removes it once the heartbeat stops (a killed driver)."""

    def __init__(self, store):
        self.store, self.owner = store, protocol.new_id("lu")
        self._beat = Heartbeat(store, self.owner, info={"scratch": "lu"})

    def key(self, name: str) -> str:
        return protocol.scratch_key(self.owner, name)

    def close(self) -> None:
        """Stop the heartbeat and delete everything under the owner (the heartbeat included)."""
        self._beat.stop()
        self.store.delete_prefix(protocol.owner_prefix(self.owner))


def _then(opts, submit, after, cleanup):
    """``after(submit())`` now, then ``cleanup()``; or (``compute=False``) the plan, whose finishing step does
    both when it has run, so that a plan run later gives what the immediate call gives."""
    if opts.compute:
        try:
            return after(submit())
        finally:
            cleanup()
    try:
        plan = submit()
    except BaseException:
        cleanup()
        raise
    inner = plan.finish

    def finish():
        try:
            return after(inner() if inner is not None else plan.result)
        finally:
            cleanup()
    plan.finish = finish
    return plan


def _submit(opts, plan, inputs, R: BigMatrix):
    """Run (or return) the plan; a failed run's records are deleted with it."""
    try:
        return _linalg_errors(opts.submit, plan, inputs)
    except BaseException:
        R.delete()
        raise


# -- DAG construction ---------------------------------------------------------------------------------
def _nt(A: BigMatrix) -> tuple[int, int]:
    return A.shape[0], A.tile_shape[0]


def _record_matrix(A: BigMatrix, key: str, store=None, rhs_dtype=None) -> BigMatrix:
    """The panel records of A's factorization (one 1 x (N + 1 + t^2) float64 tile per panel; complex128 for
    a complex A), at ``key``."""
    length = record_length(*_nt(A))
    return jobs.output_matrix(key, (A.grid[0], length), (1, length), _record_dtype(A.dtype, rhs_dtype or A.dtype),
                              store or A.store,
                              inputs=(A,))


def _record_dtype(*dtypes) -> np.dtype:
    """The dtype of the panel records (``blocks.lu.pack_record``) of a factor in ``result_type(*dtypes)``:
    float64, or complex128 for a complex factor."""
    return np.dtype(np.complex128 if np.result_type(*dtypes).kind == "c" else np.float64)


def _input_ref(A: BigMatrix, i: int, j: int, symmetric: str | None, hermitian: bool = False):
    """Block (i, j) of A, or of the symmetric matrix A's ``symmetric`` triangle defines (the other
    triangle's blocks read transposed from it; diagonal tiles are completed by the task)."""
    if symmetric == "lower" and i < j or symmetric == "upper" and i > j:
        return (A.H if hermitian else A.T, i, j)
    return (A, i, j)


def _symmetry(A: BigMatrix, symmetric: str | None, hermitian: bool):
    """(params naming the triangle a diagonal tile is completed from, or {}; ``a_ref(i, j)``: block (i, j)
    of the matrix the LU factors, read from that triangle)."""
    sym = {"sym": "lower" if A.symmetric else symmetric}   # a matrix stored as one triangle: its (lower) one
    hermitian = hermitian or getattr(A, "hermitian", False)   # a complex matrix stored as one triangle
    sym = ({**sym, "hermitian": True} if hermitian else sym) if sym["sym"] else {}

    def a_ref(i, j):
        return _input_ref(A, i, j, sym.get("sym") if not A.symmetric else None, hermitian)
    return sym, a_ref


def _add_rcond(dag: DAG, A: BigMatrix, LU: BigMatrix, orders: BigMatrix, ids: dict, K: BigMatrix, scratch: dict, *,
               symmetric: str | None = None, hermitian: bool = False) -> str:
    """LAPACK gecon's reciprocal condition estimate of A in K (1 x 1): |A|'s column sums per tile column
    (they run beside the factorization), then one task making the few passes over the packed LU that
    Hager's estimator needs (``blocks.lu.inverse_norm1_estimate``). Returns the estimate's task id."""
    n, t = _nt(A)
    g = A.grid[0]
    sym, a_ref = _symmetry(A, symmetric, hermitian)
    S = jobs.scratch_matrix(scratch, "colsums", A, (1, n), (1, t), np.float64)
    sums = [dag.add(Task(f"{K.key}/S{j}", "lu_colsums", (S, 0, j), tuple((a_ref(i, j),) for i in range(g)), sym,
                         flops=float(n) * A.block_shape(0, j)[1])).id for j in range(g)]
    lu_tiles = [(i, j) for i in range(g) for j in range(g)]
    return dag.add(Task(f"{K.key}/K", "lu_rcond", (K, 0, 0),
                        (((orders, g - 1, 0),),) + tuple(((S, 0, j),) for j in range(g)) + tuple(((LU, i, j),)
                                                                                         for i, j in lu_tiles),
                        {"n": n, "t": t}, deps=(ids["R", g - 1], *sums, *(ids["LU", i, j] for i, j in lu_tiles)),
                        flops=10.0 * n * n)).id


def _add_lu(dag: DAG, A: BigMatrix, LU: BigMatrix, R: BigMatrix, scratch: dict, *, symmetric: str | None = None,
            hermitian: bool = False, raise_singular: bool) -> dict:
    """The LU tasks (module docstring): LU's tiles and the records R. Returns {("LU", i, j) or ("R", k): id}."""
    n, t = _nt(A)
    g = A.grid[0]
    sym, a_ref = _symmetry(A, symmetric, hermitian)
    base = {"n": n, "t": t}
    name = LU.key
    E = Lt = None
    O = jobs.scratch_matrix(scratch, "orders", A, (g, n + 1), (1, n + 1), np.float64)
    if g > 1:
        Lt = jobs.scratch_matrix(scratch, "Lt", A, A.shape, A.tile_shape, LU.dtype)
        # the blocks each panel k >= 1 writes beside its record: L[k, k-1] (Ln[k, 0]) and U[k-1, k] (Un[0, k])
        Ln = jobs.scratch_matrix(scratch, "Lnext", A, (n, t), (t, t), LU.dtype)
        Un = jobs.scratch_matrix(scratch, "Unext", A, (t, n), (t, t), LU.dtype)
    if g > 2:
        E = jobs.scratch_matrix(scratch, "E", A, A.shape, A.tile_shape, LU.dtype)
    ids: dict = {}
    lt: dict = {}

    def update_flops(i, j, ms, live=1.0):
        """Flops of the products; ``live``: the expected share of the tile's rows not yet factored (the
        kernel skips the others; rows are spread over the tile rows in general)."""
        rows, cols = A.block_shape(i, j)
        return live * sum(2.0 * rows * cols * A.block_shape(m, m)[0] for m in ms)

    e_ids: dict = {}

    def early_updates(j):
        """E[:, j]: column j's updates from panels m < j - 1 (they run while panel j - 1 is factored)."""
        early = range(j - 1)
        for i in range(g):
            deps = [lt[i, m] for m in early] + [ids["LU", m, j] for m in early] + [ids["R", j - 2]]
            e_ids[i, j] = dag.add(Task(f"{name}/E{i}_{j}", "lu_update", (E, i, j), (a_ref(i, j), tuple(
                ((Lt, i, m), (LU, m, j)) for m in early)), {**sym, **base, "skip": (O, j - 2, 0)},
                deps=tuple(dict.fromkeys(deps)), flops=update_flops(i, j, early, (n - (j - 1) * t) / n))).id

    for k in range(g):
        w = A.block_shape(k, k)[0]
        if 1 <= k < g - 1:
            early_updates(k + 1)
        # the panel's tiles: A's (k <= 1) or E's (k >= 2, updated through panel k - 2); the panel task applies
        # panel k - 1's update, Lt[:, k-1] U[k-1, k], itself, computing U[k-1, k] from its tiles and record k-1
        if k == 0:
            groups, deps = tuple((a_ref(i, 0),) for i in range(g)), []
        else:
            cols = [a_ref(i, k) for i in range(g)] if k == 1 else [(E, i, k) for i in range(g)]
            groups = tuple((c, (Lt, i, k - 1)) for i, c in enumerate(cols))
            deps = ([e_ids[i, k] for i in range(g)] if k >= 2 else []) + [ids["R", k - 1]]
        panel_params = {**base, "k": k, "dtype": LU.dtype.name, "raise_singular": raise_singular, "of": A.key,
                        "pivot_order": (O, k, 0), **(sym if k <= 1 else {})}
        if k < g - 1:   # the panel also writes its multipliers, Lt[:, k] (before its order and record)
            panel_params["multipliers"] = (Lt, 0, k)
        if k:
            panel_params["panel_blocks"] = ((Ln, k, 0), (Un, 0, k))
        t_prev = A.block_shape(k - 1, k - 1)[0] if k else 0
        flops = float(n - k * t) * w * w + (2.0 * (n - k * t) + t_prev) * w * t_prev   # getrf, update, trsm
        ids["R", k] = dag.add(Task(f"{name}/R{k}", "lu_panel", (R, k, 0), ((R, k - 1, 0) if k else None, groups),
                                   panel_params, deps=tuple(dict.fromkeys(deps)), flops=flops)).id
        rid = ids["R", k]
        ids["LU", k, k] = dag.add(Task(f"{name}/D{k}", "lu_diagonal", (LU, k, k), ((R, k, 0),), base,
                                       deps=(rid,))).id
        if k < g - 1:
            for i in range(g):
                lt[i, k] = rid
        if k:   # L[k, k-1] and U[k-1, k], which the panel task wrote beside its record: copied into LU
            for key, src in (((k, k - 1), (Ln, k, 0)), ((k - 1, k), (Un, 0, k))):
                ids[("LU",) + key] = dag.add(Task(f"{name}/{'L' if key[0] > key[1] else 'U'}{key[0]}_{key[1]}",
                                                  "lu_split", (LU,) + key, (src,), {"part": "copy"},
                                                  deps=(rid,))).id
        for m in range(k - 1):
            ids["LU", k, m] = dag.add(Task(f"{name}/L{k}_{m}", "lu_gather_lower", (LU, k, m),
                                           ((O, k, 0), tuple((Lt, i, m) for i in range(g))), {**base, "k": k},
                                           deps=tuple(dict.fromkeys((rid, *(lt[i, m] for i in range(g))))))).id
        for j in range(k + 2, g):   # (U[k, k+1] is panel k+1's)
            cols = A.block_shape(k, j)[1]
            ids["LU", k, j] = dag.add(Task(
                f"{name}/U{k}_{j}", "lu_upper", (LU, k, j),
                ((R, k, 0), tuple(a_ref(i, j) for i in range(g)), tuple(((LU, k, m), (LU, m, j)) for m in range(k))),
                {**base, **sym}, deps=(rid, *(ids["LU", k, m] for m in range(k)), *(ids["LU", m, j] for m in range(k))),
                flops=update_flops(k, j, range(k)) + float(w) * w * cols)).id
    return ids


def _add_substitution(dag: DAG, T: BigMatrix, B, X: BigMatrix, tag: str, *, lower: bool, unit: bool, trans: bool,
                      of: str, t_ids: dict, b_ids: dict, conjugate: bool = False) -> dict:
    """Block substitution with the L (``unit`` lower) or U part of a packed LU (or their transposes, read
    as stored), one task per X tile; ``t_ids`` map LU tiles computed in the same DAG to their tasks."""
    g = T.grid[0]
    order = range(g) if lower else range(g - 1, -1, -1)

    def tile(i, k):
        return (T, k, i) if trans else (T, i, k)
    ids: dict = {}
    for c in range(X.grid[1]):
        for i in order:
            ks = range(i) if lower else range(i + 1, g)
            rows, cols = X.block_shape(i, c)
            deps = [ids[k, c] for k in ks] + [t_ids[("LU",) + tile(i, k)[1:]] for k in (*ks, i)
                                               if ("LU",) + tile(i, k)[1:] in t_ids]
            if (i, c) in b_ids:
                deps.append(b_ids[i, c])
            flops = sum(2.0 * rows * cols * X.block_shape(k, c)[0] for k in ks) + float(rows) * rows * cols
            ids[i, c] = dag.add(Task(f"{X.key}/{tag}{i}_{c}", "lu_solve", (X, i, c),
                                     ((B, i, c), tile(i, i), tuple((tile(i, k), (X, k, c)) for k in ks)),
                                     {"lower": lower, "unit": unit, "trans": trans, "of": of,
                                      **({"conjugate": True} if conjugate else {})},
                                     deps=tuple(dict.fromkeys(deps)), flops=flops)).id
    return ids


def _add_lu_solve(dag: DAG, scratch: dict, LU: BigMatrix, lu_ids: dict, order_ref, order_id, B, X: BigMatrix,
                  trans: bool, of: str, orders: BigMatrix | None = None, conjugate: bool = False) -> None:
    """X = A^-1 B (or A^-T B, A^-H B with ``conjugate``) from the packed LU and the pivot order at
    ``order_ref``; ``B`` None is the identity (for inv). ``orders``: the panels' pivot orders of an LU in the
    same DAG; tile row i of P^T B then reads the order from panel i's (its positions are final once panel i
    has pivoted), so the permutation and the forward substitution run alongside the factorization instead
    of after its last panel."""
    n, t = _nt(LU)
    like = X
    Y = jobs.scratch_matrix(scratch, "perm", like, X.shape, X.tile_shape, X.dtype)
    Z = jobs.scratch_matrix(scratch, "half", like, X.shape, X.tile_shape, X.dtype)
    g = LU.grid[0]
    dep = (order_id,) if order_id else ()
    if not trans:   # A = P L U:  L U x = P^T b
        def order_of(i):
            if orders is None:
                return order_ref, dep
            return (orders, i, 0), (lu_ids["R", i],)
        p_ids = {(i, c): dag.add(Task(f"{X.key}/P{i}_{c}", "lu_permute", (Y, i, c),
                                      (order_of(i)[0], tuple((B, r, c) for r in range(g)) if B is not None else ()),
                                      {"n": n, "t": t}, deps=order_of(i)[1])).id for i, c in Y.block_indices()}
        z_ids = _add_substitution(dag, LU, Y, Z, "F", lower=True, unit=True, trans=False, of=of, t_ids=lu_ids,
                                  b_ids=p_ids)
        _add_substitution(dag, LU, Z, X, "B", lower=False, unit=False, trans=False, of=of, t_ids=lu_ids,
                          b_ids=z_ids)
    else:           # A^T = U^T L^T P^T:  U^T z = b, L^T y = z, x = P y
        z_ids = _add_substitution(dag, LU, B, Z, "F", lower=True, unit=False, trans=True, of=of, t_ids=lu_ids,
                                  b_ids={}, conjugate=conjugate)
        y_ids = _add_substitution(dag, LU, Z, Y, "B", lower=False, unit=True, trans=True, of=of, t_ids=lu_ids,
                                  b_ids=z_ids, conjugate=conjugate)
        for i, c in X.block_indices():
            dag.add(Task(f"{X.key}/P{i}_{c}", "lu_permute", (X, i, c), (order_ref, tuple((Y, r, c) for r in range(g))),
                         {"n": n, "t": t, "inverse": True},
                         deps=tuple(dict.fromkeys(dep + tuple(y_ids[r, c] for r in range(g))))))


# -- after the run: records, pivots, warnings -------------------------------------------------------
def _summary(R: BigMatrix, A: BigMatrix) -> tuple[np.ndarray, int, np.ndarray]:
    """(pivot order, first zero pivot (1-based, 0 if none), U's diagonal), reading one record at a time."""
    n, t = _nt(A)
    diagonal = np.empty(n, R.dtype)
    order, info = np.arange(n), 0
    for k in range(R.grid[0]):
        w = A.block_shape(k, k)[0]
        order, info, lu = unpack_record(R.get_block(k, 0), n, t, w)
        diagonal[k * t:k * t + w] = np.diagonal(lu)
    return order, info, diagonal


def _ipiv(order: np.ndarray) -> np.ndarray:
    """LAPACK's interchanges (row r swapped with piv[r], in turn) that put the rows in ``order``."""
    n = order.size
    current, where = np.arange(n), np.arange(n)   # row at each position; position of each row
    piv = np.empty(n, np.int32)
    for r in range(n):
        p = where[order[r]]
        piv[r] = p
        a, b = current[r], current[p]
        current[r], current[p] = b, a
        where[a], where[b] = p, r
    return piv


def _order(piv: np.ndarray) -> np.ndarray:
    """The row order LAPACK's interchanges ``piv`` produce (inverse of :func:`_ipiv`)."""
    order = np.arange(piv.size)
    for r, p in enumerate(piv):
        order[r], order[p] = order[p], order[r]
    return order


def _parity(order: np.ndarray) -> float:
    """+1 or -1: the sign of the permutation ``order``."""
    seen = np.zeros(order.size, bool)
    sign = 1.0
    for start in range(order.size):
        if not seen[start]:
            length, j = 0, start
            while not seen[j]:
                seen[j] = True
                j = order[j]
                length += 1
            if length % 2 == 0:
                sign = -sign
    return sign


def _warn_singular(info: int) -> None:
    if info:
        warnings.warn(f"Diagonal number {info} is exactly zero. Singular matrix.", LinAlgWarning, stacklevel=3)


def _warn_conditioning(rcond: float, dtype: np.dtype) -> None:
    """LinAlgWarning when the reciprocal condition estimate (LAPACK gecon's) is below eps, as scipy warns."""
    if rcond < np.finfo(dtype).eps:
        warnings.warn(f"An ill-conditioned matrix detected: rcond = {rcond:.6g} (LAPACK gecon's 1-norm estimate); "
                      "the result may not be accurate.", LinAlgWarning, stacklevel=3)


def _empty_result(A: BigMatrix, B, out, opts, desc: str):
    """numpy's answer for an empty system (no unknowns or no right-hand sides: an empty result, as the
    ``numpywren.empty_shapes`` plan of no task), or None for a system to solve."""
    if isinstance(B, BigMatrix):
        _check_rhs(A, B)
        if B.size:
            return None
        X = empty_shapes.matrix(out, B.shape, _dtype(A.dtype, B.dtype), A)
        return empty_shapes.answer(opts, desc, lambda: X, [jobs.Output(X, desc, (A, B))])
    b = np.asarray(B)
    if b.ndim not in (1, 2) or b.shape[0] != A.shape[0]:
        raise ValueError(f"B must be 1-D or 2-D with {A.shape[0]} rows (the order of the matrix), got shape {b.shape}")
    if b.size == 0:
        return empty_shapes.solution(b.shape, _dtype(A.dtype, b.dtype), opts, desc)
    return None


__all__ = ["solve", "lu_factor", "lu_solve", "lu", "inv", "det", "slogdet", "solve_general", "SlogdetResult",
           "LinAlgWarning"]
