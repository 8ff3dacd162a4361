"""The array-library surface of BigMatrix: element-wise jobs, reductions, slicing, and the numpy protocol.

**Element-wise operations** (``A + B``, ``A * 2``, ``-A``, ``abs(A)``, ``A.real``, ``A.imag``,
``np.angle(A)``, ``A.astype``, ``A.copy``) are tile DAGs with one task per output tile (op
``"elementwise"``); both operands must have the same shape and tile shape
(a clear error otherwise: re-tile with ``BigMatrix.from_numpy`` or ``copy``). Result dtypes are
numpy's (``np.result_type``: real and complex operands give complex; ``abs``, ``real``, ``imag`` and
``angle`` of a complex matrix are real). ``A.conj()`` and ``np.conjugate(A)`` are views (no job).
A numpy operand (``A + x``, ``A @ x``, ``x @ A``) is stored for the user,
tiled to match, and deleted when the job ends.

**Unnamed results are temporaries.** An operator's result (``A + B``, ``A @ B``,
``-A``) gets a key under ``matrices/`` and is deleted from the store when its
last handle goes away (``weakref.finalize`` on an owner token shared by the
handle and its views such as ``.T``), so the ``A + B`` inside ``(A + B) * 2``
does not stay in the store. ``C.keep()`` makes a result permanent; a result
given ``out=`` (``numpywren.elementwise.binary(..., out="C")``,
``numpywren.matmul(A, B, out="C")``) is never a temporary. We chose eager
evaluation with temporaries over lazy expressions: every operator is a job of
its own (one more read and write of the intermediate than a fused plan), but
results behave like numpy arrays, errors arrive at the line that caused them,
and nothing else in the library has to know about expressions. Compose plans
(``numpywren.compose``) when the extra pass matters.

**Reductions** (``sum``, ``mean``, ``max``, ``min``, Frobenius ``norm``; total
or per axis) reduce the tiles of a row block along their rows (op ``"reduce"``:
one task reads a run of a row block's tiles, one after the other), combine a
row block's partial columns into one (op ``"combine"``, only when a row block
is split over several tasks to keep every worker busy), and the driver gets
that column (the length of one side of the matrix) and finishes: the final
tasks return their parts of it in their JSON results (protocol.VALUE_PARAM;
a part above protocol.VALUE_MAX_BYTES is written as a tile and read back). ``axis=0``
reduces the transpose view. For a complex matrix ``norm`` is real (sums of
``|x|^2``) and ``max``/``min`` order lexicographically, as numpy.

**Slicing** (``A[r0:r1, c0:c1]``, ``A[i]``, ``A[i, j]``, steps and negative
indices) returns numpy, reading only the tiles it covers, in parallel threads.
``diagonal`` and ``trace`` read only the tiles the diagonal crosses.
"""
from __future__ import annotations

import logging
import numbers
import operator
import sys

import numpy as np

from blocks.elementwise import BINARY, REAL_OF_COMPLEX, REDUCTIONS, UNARY
from numpywren import empty_shapes, jobs, protocol
from numpywren.temporaries import keep, temporary
from numpywren.dag import DAG, Task
from numpywren.matrix import SUPPORTED_DTYPES, BigMatrix, _in_threads, _normalize_dtype, install_array_api

log = logging.getLogger(__name__)

#: ``np.asarray(A)`` refuses a matrix larger than this (bytes); raise it, or call ``A.to_numpy()``.
MAX_ARRAY_BYTES = 2 * 2**30


# -- operands ---------------------------------------------------------------------------------------
def _stored_operand(x, like: BigMatrix, tile_shape, what: str) -> BigMatrix:
    """Store the in-memory array ``x`` for a job (a temporary, deleted when the job ends)."""
    arr = np.asarray(x)
    if arr.dtype.kind in "biu":  # as numpy promotes: float32 with int8/int16/bool stays float32
        arr = arr.astype(np.result_type(arr.dtype, like.dtype, np.float32))
    if arr.dtype.name not in SUPPORTED_DTYPES:
        raise TypeError(f"{what}: the numpy operand has dtype {arr.dtype}; use one of {', '.join(SUPPORTED_DTYPES)}")
    key = protocol.scratch_key(protocol.new_id("operand"), "x")
    return temporary(BigMatrix.from_numpy(arr, tile_shape, like.store, key))


def _result_dtype(*operands) -> np.dtype:
    dtype = np.result_type(*operands)
    try:
        return _normalize_dtype(dtype)
    except TypeError:
        raise TypeError(f"the result would have dtype {dtype}; BigMatrix holds "
                        f"{', '.join(SUPPORTED_DTYPES)} only") from None


# -- element-wise jobs --------------------------------------------------------------------------------
def binary(op: str, A: BigMatrix, other, *, swap: bool = False, out=None, executor=None, compute: bool = True,
           check_finite: bool = False, **options):
    """``op(A, other)`` (``op(other, A)`` if ``swap``) for a BigMatrix, numpy array of A's shape, or number.

    The result's dtype is numpy's (``np.result_type``): a real matrix and a complex operand give a complex one."""
    if op not in BINARY:
        raise ValueError(f"unknown element-wise operation {op!r} (known: {', '.join(BINARY)})")
    if not isinstance(A, BigMatrix):
        raise TypeError(f"element-wise {op}: expected a BigMatrix, got {type(A).__name__}")
    scalar = None if isinstance(other, BigMatrix) else _number(other)
    if scalar is not None:
        dtype = _result_dtype(A.dtype, scalar)
        return _run(op, A, None, scalar, swap, dtype, out, executor, compute, check_finite, options)
    if isinstance(other, BigMatrix):
        _check_same(op, A, other)
        dtype = _result_dtype(A.dtype, other.dtype)
        return _run(op, A, other, None, swap, dtype, out, executor, compute, check_finite, options)
    arr = _as_array(other, op)
    if arr.shape != A.shape:
        raise ValueError(f"element-wise {op}: shapes {A.shape} (BigMatrix) and {arr.shape} (numpy) differ; "
                         "both operands must have the same shape (numpywren does not broadcast)")
    B = _stored_operand(arr, A, A.tile_shape, f"element-wise {op}")
    try:
        return _run(op, A, B, None, swap, _result_dtype(A.dtype, B.dtype), out, executor, compute,
                    check_finite, options)
    finally:
        if compute:
            keep(B).delete()


def unary(op: str, A: BigMatrix, *, dtype=None, out=None, executor=None, compute: bool = True,
          check_finite: bool = False, **options):
    """``op(A)`` tile by tile (``copy`` with ``dtype`` is ``astype``)."""
    if op not in UNARY:
        raise ValueError(f"unknown element-wise operation {op!r} (known: {', '.join(UNARY)})")
    if not isinstance(A, BigMatrix):
        raise TypeError(f"element-wise {op}: expected a BigMatrix, got {type(A).__name__}")
    if dtype is None:   # |z|, Re z, Im z and arg z of a complex matrix are real, as in numpy
        dtype = real_dtype(A.dtype) if op in REAL_OF_COMPLEX else A.dtype
    dtype = _normalize_dtype(dtype)
    if A.dtype.kind == "c" and dtype.kind != "c" and op not in REAL_OF_COMPLEX:
        raise TypeError(f"element-wise {op}: a {A.dtype} matrix into {dtype} would drop the imaginary part; "
                        "take A.real (or A.imag, abs(A)) for the real numbers you want")
    return _run(op, A, None, None, False, dtype, out, executor, compute, check_finite, options)


def real_dtype(dtype) -> np.dtype:
    """The real dtype of a complex one's parts (complex128 -> float64); a real dtype itself."""
    dtype = np.dtype(dtype)
    return np.empty(0, dtype).real.dtype


def _run(op, A, B, scalar, swap, dtype, out, executor, compute, check_finite, options):
    opts = jobs.run_options(executor, compute=compute, check_finite=check_finite, **options)
    inputs = (A,) if B is None else (A, B)
    C = jobs.output_matrix(out, A.shape, A.tile_shape, dtype, A.store, inputs=inputs)
    params = {"op": op, "swap": bool(swap)}
    if scalar is not None:  # exact, and JSON-safe for inf and NaN: a float in hex, [real, imag] for a complex
        params["scalar"] = ([float(scalar.real).hex(), float(scalar.imag).hex()] if np.iscomplexobj(scalar)
                            else float(scalar).hex())
    dag = DAG()
    for i, j in C.block_indices():
        refs = tuple((M, i, j) for M in inputs)
        rows, cols = C.block_shape(i, j)
        dag.add(Task(f"{C.key}/e{i}_{j}", "elementwise", (C, i, j), refs, params, flops=float(rows * cols)))
    what = op if scalar is None else f"{op} {scalar!r}"
    plan = jobs.Plan(dag, [jobs.Output(C, "elementwise", inputs, params)], {}, f"{what} {A.shape}", opts.workers)
    if out is None:
        temporary(C)
    return opts.submit(plan, list(inputs))


def matmul(A, B):
    """``A @ B`` where either side may be a numpy array (stored for the job, tiled to match, then deleted)."""
    if isinstance(A, BigMatrix) and isinstance(B, BigMatrix):
        return _temporary_product(A, B)
    if isinstance(A, BigMatrix):
        arr = _as_array(B, "matmul")
        if arr.ndim == 1:  # numpy: a vector on the right is a column, and the result a vector
            return matmul(A, arr[:, None]).to_numpy()[:, 0]
        _check_2d(arr, "matmul")
        if arr.shape[0] != A.shape[1]:
            raise ValueError(f"matmul: shapes {A.shape} (BigMatrix) and {arr.shape} (numpy) are not aligned")
        other = _stored_operand(arr, A, (A.tile_shape[1], A.tile_shape[1]), "matmul")
        pair = (A, other)
    else:
        arr = _as_array(A, "matmul")
        if arr.ndim == 1:
            return matmul(arr[None, :], B).to_numpy()[0]
        _check_2d(arr, "matmul")
        if arr.shape[1] != B.shape[0]:
            raise ValueError(f"matmul: shapes {arr.shape} (numpy) and {B.shape} (BigMatrix) are not aligned")
        other = _stored_operand(arr, B, (B.tile_shape[0], B.tile_shape[0]), "matmul")
        pair = (other, B)
    try:
        return _temporary_product(*pair)
    finally:
        keep(other).delete()


def _temporary_product(A: BigMatrix, B: BigMatrix) -> BigMatrix:
    """``A @ B`` into a temporary (numpywren.gemm.matmul without ``out=``)."""
    from numpywren.gemm import matmul as big_matmul

    return big_matmul(A, B)


def _number(value):
    """A scalar operand (Python or numpy number, or 0-d array) as a numpy scalar; None if not a scalar."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, np.generic) or (isinstance(value, numbers.Number) and not isinstance(value, bool)):
        if np.asarray(value).dtype.kind not in "iufc":
            raise TypeError(f"BigMatrix element-wise operations take real or complex numbers, got {value!r}")
        return value
    if isinstance(value, bool):
        return int(value)
    return None


def _as_array(value, what: str) -> np.ndarray:
    if isinstance(value, (np.ndarray, list, tuple)):
        return np.asarray(value)
    raise TypeError(f"{what}: unsupported operand type {type(value).__name__} (use a BigMatrix, a numpy array "
                    "or a number)")


def _check_2d(arr: np.ndarray, what: str) -> None:
    if arr.ndim != 2:
        raise ValueError(f"{what}: the numpy operand must be 1-D or 2-D, got {arr.ndim}-D")


def _check_same(op: str, A: BigMatrix, B: BigMatrix) -> None:
    if A.shape != B.shape:
        raise ValueError(f"element-wise {op}: shapes {A.shape} and {B.shape} differ (numpywren does not broadcast)")
    if A.tile_shape != B.tile_shape:
        raise ValueError(f"element-wise {op}: tile shapes {A.tile_shape} and {B.tile_shape} differ; re-tile one "
                         "(BigMatrix.from_numpy with the other's tile_shape) so that both match")


# -- reductions -------------------------------------------------------------------------------------------
def reduce(A: BigMatrix, kind: str, axis=None, executor=None, **options):
    """The reduction ``kind`` (sum, sumsq, max, min) of A, in A's dtype: a numpy scalar (``axis=None``) or
    a 1-D array (``axis`` 0 or 1), as numpy returns. ``compute=False`` returns the plan; running it
    (``numpywren.run``) gives the value as ``plan.value``."""
    opts = jobs.run_options(executor, **options)
    return _submit_reduction(opts, _reduce_plan(A, kind, axis, opts.workers), A)


def _reduce_plan(A: BigMatrix, kind: str, axis, workers: int) -> jobs.Plan:
    """Partial columns per tile, combined per row block (or band of row blocks, _row_band) into R; the
    finishing step reads R and finishes."""
    if kind not in REDUCTIONS:
        raise ValueError(f"unknown reduction {kind!r} (known: {', '.join(REDUCTIONS)})")
    if not isinstance(A, BigMatrix):
        raise TypeError(f"reduction {kind}: expected a BigMatrix, got {type(A).__name__}")
    axis = _axis(axis)
    M = A.T if axis == 0 else A
    dtype = real_dtype(A.dtype) if kind == "sumsq" else A.dtype   # sums of |x|^2 are real
    gi, gj = M.grid
    runs = _column_runs(gi, gj, workers)
    band = _row_band(gi, gj, workers) if len(runs) == 1 else 1
    R = jobs.output_matrix(None, (M.shape[0], 1), (min(M.tile_shape[0] * band, M.shape[0]), 1), dtype, A.store,
                           inputs=(A,))
    # the column comes back in the tasks' results (no tile of R is written, verified or read back) when each
    # block of it is small enough to be a value (protocol.VALUE_MAX_BYTES); else R's tiles hold it
    as_values = R.tile_shape[0] * dtype.itemsize <= protocol.VALUE_MAX_BYTES
    final = {"kind": kind, protocol.VALUE_PARAM: True} if as_values else {"kind": kind}
    dag, scratch = DAG(), {}
    partial = (R if len(runs) == 1 else
               jobs.scratch_matrix(scratch, "partials", A, (M.shape[0], len(runs)), (M.tile_shape[0], 1), dtype))
    for b in range(R.grid[0]):
        rows = range(b * band, min(gi, (b + 1) * band))
        ids = []
        for k, columns in enumerate(runs):
            elements = sum(M.block_shape(i, j)[0] * M.block_shape(i, j)[1] for i in rows for j in columns)
            ids.append(dag.add(Task(f"{R.key}/r{b}_{k}", "reduce", (partial, b, k),
                                    tuple(((M, i, j),) for i in rows for j in columns),
                                    final if len(runs) == 1 else {"kind": kind}, flops=float(elements))).id)
        if len(runs) > 1:
            dag.add(Task(f"{R.key}/c{b}", "combine", (R, b, 0), tuple((partial, b, k) for k in range(len(runs))),
                         final, deps=tuple(ids), flops=float(M.block_shape(b, 0)[0] * len(runs))))
    temporary(R)
    output = jobs.Output(R, "reduce", (A,), {"kind": kind, "axis": axis}, values={} if as_values else None)

    def finish():
        try:
            if as_values:
                column = np.concatenate([output.values[(b, 0)] for b in range(R.grid[0])])[:, 0]
            else:
                column = R.to_numpy()[:, 0]
        finally:
            keep(R).delete()
        return column if axis is not None else dtype.type(REDUCTIONS[kind][1](column, axis=0))
    return jobs.Plan(dag, [output], scratch, f"{kind} {A.shape} axis={axis}", workers, finish)


def _column_runs(gi: int, gj: int, workers: int) -> list[range]:
    """The tile columns each reduce task of a row block reads (consecutive runs, as even as can be).

    As few tasks as keep every worker busy (about two per worker, with ``gi`` row blocks): a task costs
    a dispatch, a lease and a result, and a reduction reads at the page cache's speed, so per-tile tasks
    spent most of a small job on bookkeeping (benchmarks/README.md "Small jobs"). One run per row block
    (``gi >= 2 * workers``) needs no combine step and no scratch matrix.
    """
    count = min(gj, max(1, -(-2 * workers // gi)))
    bounds = [round(k * gj / count) for k in range(count + 1)]
    return [range(lo, hi) for lo, hi in zip(bounds, bounds[1:])]


#: At most this many tiles per reduce task when a task takes several row blocks (_row_band)
BAND_MAX_TILES = 16


def _row_band(gi: int, gj: int, workers: int) -> int:
    """How many row blocks one reduce task takes when every worker has two or more: enough for one task per
    worker (each task hand-over costs a result, a dispatch and a lease, and on a busy machine a wait for
    a core; benchmarks/README.md "Reductions: one pass over each tile"), at most BAND_MAX_TILES tiles
    (a long task is a coarse unit to retry or back up). The task's output tile spans its rows."""
    if gi < 2 * workers:
        return 1
    return max(1, min(-(-gi // workers), BAND_MAX_TILES // gj))


def _submit_reduction(opts: jobs.RunOptions, plan: jobs.Plan, A: BigMatrix):
    try:
        return opts.submit(plan, [A])
    except BaseException:
        keep(plan.result).delete()  # a failed run's partial column (the finishing step deletes it otherwise)
        raise


def _axis(axis):
    if axis is None:
        return None
    try:
        a = operator.index(axis)
    except TypeError:
        raise TypeError(f"axis must be None, 0 or 1 for a BigMatrix, got {axis!r}") from None
    if a not in (-2, -1, 0, 1):
        raise np.exceptions.AxisError(a, 2)
    return a % 2


def total(A, kind, axis=None, executor=None, **options):
    """sum / mean / max / min / norm as numpy names and returns them (``compute=False``: the plan)."""
    opts = jobs.run_options(executor, **options)
    if A.size == 0:   # no tile to read: numpy's answer for the empty shape (0.0, nan, or its ValueError, now)
        empty = np.empty(A.shape, A.dtype)
        value = real_dtype(A.dtype).type(np.linalg.norm(empty)) if kind == "norm" else getattr(empty, kind)(axis=axis)
        return empty_shapes.answer(opts, f"{kind} {A.shape}", lambda: value)
    base = {"mean": "sum", "norm": "sumsq"}.get(kind, kind)
    plan = _reduce_plan(A, base, None if kind == "norm" else axis, opts.workers)
    if kind in ("mean", "norm"):
        reduced = plan.finish

        def finish():
            s = reduced()
            if kind == "norm":
                return real_dtype(A.dtype).type(np.sqrt(s))
            count = A.size if axis is None else A.shape[_axis(axis)]
            return (s / A.dtype.type(count)).astype(A.dtype)[()] if axis is None else (s / count).astype(A.dtype)
        plan.finish = finish
        plan.desc = f"{kind} {A.shape} axis={axis}"
    return _submit_reduction(opts, plan, A)


# -- reading parts --------------------------------------------------------------------------------------------
def getitem(A: BigMatrix, key) -> np.ndarray:
    """``A[key]`` for ints and slices (numpy semantics), reading only the tiles the selection covers."""
    if not isinstance(key, tuple):
        key = (key,)
    if any(k is Ellipsis for k in key):
        at = next(n for n, k in enumerate(key) if k is Ellipsis)
        key = key[:at] + (slice(None),) * (2 - len(key) + 1) + key[at + 1:]
    if len(key) > 2:
        raise IndexError(f"too many indices for a 2-D BigMatrix: {len(key)} were given")
    key = key + (slice(None),) * (2 - len(key))
    ranges, drop = [], []
    for dim, (k, n) in enumerate(zip(key, A.shape)):
        if isinstance(k, slice):
            ranges.append(range(*k.indices(n)))
            continue
        if isinstance(k, (bool, np.bool_)) or not isinstance(k, (numbers.Integral, np.integer)):
            raise TypeError(f"BigMatrix indices must be ints or slices (A[r0:r1, c0:c1], A[i, j]); got "
                            f"{type(k).__name__}. For fancy indexing, slice the rows you need first and index "
                            "the numpy result")
        i = int(k)
        if not -n <= i < n:
            raise IndexError(f"index {i} is out of bounds for axis {dim} with size {n}")
        ranges.append(range(i % n, i % n + 1))
        drop.append(dim)
    out = read_box(A, ranges[0], ranges[1])
    return out[(0 if 0 in drop else slice(None), 0 if 1 in drop else slice(None))]


def read_box(A: BigMatrix, rows: range, cols: range) -> np.ndarray:
    """``A[rows][:, cols]`` as a new numpy array, reading the covering tiles in parallel threads."""
    if not len(rows) or not len(cols):
        return np.empty((len(rows), len(cols)), A.dtype)
    (r0, r1), (c0, c1) = (_cover(rows), _cover(cols))
    box = np.empty((r1 - r0, c1 - c0), A.dtype)
    (tr, tc) = A.tile_shape
    blocks = [(i, j) for i in range(r0 // tr, (r1 - 1) // tr + 1) for j in range(c0 // tc, (c1 - 1) // tc + 1)]

    def fetch(ij):
        rs, cs = A.block_slices(*ij)
        lo_r, hi_r, lo_c, hi_c = max(rs.start, r0), min(rs.stop, r1), max(cs.start, c0), min(cs.stop, c1)
        tile = A.get_block(*ij)
        box[lo_r - r0:hi_r - r0, lo_c - c0:hi_c - c0] = tile[lo_r - rs.start:hi_r - rs.start,
                                                             lo_c - cs.start:hi_c - cs.start]

    if len(blocks) == 1:
        fetch(blocks[0])
    else:
        _in_threads(fetch, blocks)
    return box[_local(rows, r0), _local(cols, c0)]


def _cover(r: range) -> tuple[int, int]:
    return (r.start, r[-1] + 1) if r.step > 0 else (r[-1], r.start + 1)


def _local(r: range, lo: int) -> slice:
    stop = r[-1] - lo + (1 if r.step > 0 else -1)
    return slice(r.start - lo, stop if stop >= 0 else None, r.step)


def diagonal(A: BigMatrix, offset: int = 0) -> np.ndarray:
    """The diagonal ``offset`` of A, reading only the tiles it crosses."""
    offset = operator.index(offset)
    m, n = A.shape
    start_row, start_col = max(0, -offset), max(0, offset)
    length = max(0, min(m - start_row, n - start_col))
    pieces, tr = [], A.tile_shape[0]
    k = 0
    while k < length:
        r = start_row + k
        step = min(length - k, tr - r % tr)  # up to the end of this row block
        c = start_col + k
        pieces.append(np.diagonal(read_box(A, range(r, r + step), range(c, c + step))))
        k += step
    return np.concatenate(pieces) if pieces else np.empty(0, A.dtype)


# -- the numpy protocol --------------------------------------------------------------------------------------------
UFUNC_BINARY = {np.add: "add", np.subtract: "subtract", np.multiply: "multiply", np.true_divide: "divide",
                np.power: "power", np.maximum: "maximum", np.minimum: "minimum"}
UFUNC_UNARY = {np.negative: "negative", np.absolute: "absolute", np.positive: "positive", np.sqrt: "sqrt",
               np.exp: "exp", np.log: "log", np.square: "square"}
#: ufuncs that are views of a BigMatrix (no job): the conjugate reads the tiles conjugated
UFUNC_VIEWS = {np.conjugate: lambda A: A.conj()}


def array_ufunc(A: BigMatrix, ufunc, method: str, inputs, kwargs):
    """Element-wise ufuncs and ``np.matmul`` as tile jobs; anything else is a clear TypeError."""
    supported = sorted(u.__name__ for u in (*UFUNC_BINARY, *UFUNC_UNARY, *UFUNC_VIEWS, np.matmul))
    if method != "__call__" or kwargs or (ufunc not in UFUNC_BINARY and ufunc not in UFUNC_UNARY
                                          and ufunc not in UFUNC_VIEWS and ufunc is not np.matmul):
        what = f"np.{ufunc.__name__}" + (f".{method}" if method != "__call__" else "")
        extra = f" with {sorted(kwargs)}" if kwargs else ""
        raise TypeError(f"{what}{extra} is not supported on a BigMatrix (supported ufuncs, called plainly: "
                        f"{', '.join(supported)}; reductions as A.sum(), np.sum(A), ...). For other numpy "
                        "functions read it into memory with A.to_numpy()")
    if ufunc is np.matmul:
        return matmul(*inputs)
    if ufunc in UFUNC_VIEWS:
        return UFUNC_VIEWS[ufunc](inputs[0])
    if ufunc in UFUNC_UNARY:
        return unary(UFUNC_UNARY[ufunc], inputs[0])
    a, b = inputs
    if isinstance(a, BigMatrix):
        return binary(UFUNC_BINARY[ufunc], a, b)
    return binary(UFUNC_BINARY[ufunc], b, a, swap=True)


def _reduction(kind):
    def handler(a, axis=None, dtype=None, out=None, keepdims=False, **rest):
        _plain(kind, dtype=dtype, out=out, keepdims=keepdims, **rest)
        return total(a, kind, axis)
    return handler


def _plain(name: str, **kwargs) -> None:
    """Refuse numpy options we do not implement, rather than ignore them."""
    given = [k for k, v in kwargs.items() if v is not None and v is not False and v is not np._NoValue]
    if given:
        raise TypeError(f"np.{name} on a BigMatrix supports only axis=; got {', '.join(given)}")


def _norm(x, ord=None, axis=None, keepdims=False):
    if ord not in (None, "fro") or axis is not None or keepdims:
        raise TypeError("np.linalg.norm on a BigMatrix computes only the Frobenius norm (ord=None or 'fro', "
                        "axis=None)")
    return total(x, "norm")


def _trace(a, offset=0, axis1=0, axis2=1, dtype=None, out=None):
    _plain("trace", dtype=dtype, out=out)
    if (axis1, axis2) != (0, 1):
        raise TypeError("np.trace on a BigMatrix supports only axis1=0, axis2=1")
    return a.dtype.type(diagonal(a, offset).sum(dtype=a.dtype))


def _diagonal(a, offset=0, axis1=0, axis2=1):
    if (axis1, axis2) != (0, 1):
        raise TypeError("np.diagonal on a BigMatrix supports only axis1=0, axis2=1")
    return diagonal(a, offset)


def _transpose(a, axes=None):
    if axes is not None and tuple(axes) != (1, 0):
        raise TypeError(f"np.transpose on a BigMatrix takes axes=None or (1, 0), got {axes!r}")
    return a.T


def _angle(z, deg=False):
    if deg:
        raise TypeError("np.angle on a BigMatrix supports only deg=False (radians); multiply by 180/pi after")
    return unary("angle", z)


def _dot(a, b, out=None):
    _plain("dot", out=out)
    return matmul(a, b)


FUNCTIONS = {np.sum: _reduction("sum"), np.mean: _reduction("mean"), np.max: _reduction("max"),
             np.min: _reduction("min"), np.amax: _reduction("max"), np.amin: _reduction("min"),
             np.linalg.norm: _norm, np.trace: _trace, np.diagonal: _diagonal, np.transpose: _transpose,
             np.dot: _dot, np.real: lambda a: a.real, np.imag: lambda a: a.imag, np.angle: _angle,
             np.shape: lambda a: a.shape, np.ndim: lambda a: 2, np.size: lambda a, axis=None:
             a.size if axis is None else a.shape[axis], np.copy: lambda a, order="K", subok=False: a.copy()}


def array_function(func, args, kwargs):
    """numpy functions with an honest tile-job (or metadata) meaning; anything else is a clear TypeError."""
    handler = FUNCTIONS.get(func)
    if handler is None:
        name = getattr(func, "__module__", "numpy").replace("numpy.", "np.").replace("numpy", "np")
        raise TypeError(f"{name}.{func.__name__} is not supported on a BigMatrix (supported: "
                        f"{', '.join(sorted({_name(f) for f in FUNCTIONS}))}); read it into memory with "
                        "A.to_numpy() if it fits")
    return handler(*args, **kwargs)


def _name(f) -> str:
    return "np.linalg.norm" if f is np.linalg.norm else f"np.{f.__name__}"


def to_array(A: BigMatrix, dtype=None, copy=None) -> np.ndarray:
    if copy is False:
        raise ValueError("a BigMatrix lives in a store: np.asarray(A, copy=False) cannot avoid a copy")
    if A.nbytes > MAX_ARRAY_BYTES:
        raise ValueError(f"np.asarray would read {A.nbytes / 1e9:.3g} GB of {A!r} into memory, above "
                         f"numpywren.elementwise.MAX_ARRAY_BYTES ({MAX_ARRAY_BYTES / 1e9:.3g} GB); raise that "
                         "limit, call A.to_numpy(), or read a slice (A[r0:r1, c0:c1])")
    arr = A.to_numpy()
    return arr if dtype is None else arr.astype(dtype, copy=False)


install_array_api(sys.modules[__name__])  # BigMatrix's operators, reductions and slicing are this module's
