"""Element-wise tile kernels and per-tile reductions: pure numpy (numexpr where it measured faster).

Operations are named by string from fixed sets (:data:`BINARY`, :data:`UNARY`,
:data:`REDUCTIONS`): a task names one, never carries code. A scalar operand
comes as a float; ``swap`` puts it on the left (``2 - A``).

numexpr: ``benchmarks/elementwise.py`` times both on tiles in memory. For one
operation per tile (all we ever evaluate, eagerly) numpy and numexpr are both
memory-bound; numexpr is used only where it measured faster (see the README's
element-wise section for the numbers), behind ``USE_NUMEXPR``.
"""
from __future__ import annotations

import numpy as np

#: binary operation -> numpy ufunc (the same ufunc numpy applies to in-memory arrays)
BINARY = {"add": np.add, "subtract": np.subtract, "multiply": np.multiply, "divide": np.true_divide,
          "power": np.power, "maximum": np.maximum, "minimum": np.minimum}
#: unary operation -> numpy ufunc (``copy`` and ``astype`` are the identity, cast to the output dtype)
UNARY = {"negative": np.negative, "absolute": np.absolute, "positive": np.positive, "sqrt": np.sqrt,
         "exp": np.exp, "log": np.log, "square": np.square, "copy": None,
         "real": np.real, "imag": np.imag, "angle": np.angle}
#: unary operations whose result is real for a complex operand (numpy's rule: abs, real, imag, angle)
REAL_OF_COMPLEX = frozenset({"absolute", "real", "imag", "angle"})
#: reduction -> (per-tile reduction along axis 1, combination of partials along axis 1). The ufuncs' own
#: ``reduce`` (what ``np.sum``/``np.max`` call, same results and NaN rules) skips ``np.sum``'s Python
#: wrapper: 8-15 us of a 16-row piece's 15-40 us, and a 16-tile sum reduces 2,048 pieces.
REDUCTIONS = {"sum": (np.add.reduce, np.add.reduce),
              "sumsq": (lambda x, axis, out=None: _sum_squares(x, out), np.add.reduce),
              "max": (np.maximum.reduce, np.maximum.reduce), "min": (np.minimum.reduce, np.minimum.reduce)}
#: numexpr expressions of the binary operations it evaluates (see the module docstring)
NUMEXPR = {"add": "a + b", "subtract": "a - b", "multiply": "a * b", "divide": "a / b"}
#: numexpr wins only on large tiles (thread start-up costs more than it saves on small ones)
NUMEXPR_MIN_ELEMENTS = 1 << 20
USE_NUMEXPR = False  # benchmarks/README.md "elementwise": no consistent win, and workers have one core each


def _sum_squares(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Each row's sum of |x|^2 (real; for a complex tile the squares of both parts, never x^2).

    ``np.vecdot`` (numpy >= 2.0) runs the BLAS dot of each row: 2.2x faster than ``einsum`` per 256 KB piece
    (1.27 vs 2.71 ms per 32 MB tile, one thread). A complex tile whose rows are contiguous is read as
    its real view (re, im interleaved), whose squares sum to |x|^2 in one pass."""
    if x.dtype.kind == "c":
        if x.ndim != 2 or x.strides[-1] != x.itemsize:
            return np.add(_row_dots(x.real), _row_dots(x.imag), out=out)
        x = x.view(x.real.dtype)
    return _row_dots(x, out)


def _row_dots(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Each row's dot product with itself (real x), into ``out`` if given."""
    if _VECDOT is None:   # numpy < 2.0
        return np.einsum("ij,ij->i", x, x, out=out)
    return _VECDOT(x, x, out=out)


_VECDOT = getattr(np, "vecdot", None)


def apply(op: str, a: np.ndarray, b, dtype, swap: bool = False, use_numexpr: bool | None = None) -> np.ndarray:
    """``op(a, b)`` (``op(b, a)`` if ``swap``) or ``op(a)`` (``b is None``) as a new array of ``dtype``.

    ``b`` is a tile of ``a``'s shape, a real or complex scalar, or None for a unary op.
    """
    dtype = np.dtype(dtype)
    if b is None:
        if op not in UNARY:
            raise ValueError(f"unknown unary element-wise operation {op!r} (known: {sorted(UNARY)})")
        ufunc = UNARY[op]
        if op in REAL_OF_COMPLEX or (a.dtype.kind == "c" and dtype.kind != "c"):
            if op not in REAL_OF_COMPLEX:   # |z|, Re z, Im z, arg z are real; a cast would drop Im z first
                raise TypeError(f"{op} of a {a.dtype} tile into {dtype} would drop the imaginary part")
            return np.asarray(ufunc(a)).astype(dtype, copy=False)
        if ufunc is None:
            return np.array(a, dtype=dtype)
        return ufunc(a, dtype=dtype) if a.dtype == dtype else ufunc(a.astype(dtype))
    if op not in BINARY:
        raise ValueError(f"unknown binary element-wise operation {op!r} (known: {sorted(BINARY)})")
    if not isinstance(b, np.ndarray):
        b = dtype.type(b)  # a Python float next to a float32 tile stays float32 (numpy's rule for scalars)
    left, right = (b, a) if swap else (a, b)
    if use_numexpr is None:  # automatic: the measured choice, and only on large tiles
        use_numexpr = USE_NUMEXPR and a.size >= NUMEXPR_MIN_ELEMENTS
    if use_numexpr and op in NUMEXPR:
        import numexpr

        result = numexpr.evaluate(NUMEXPR[op], local_dict={"a": left, "b": right})
        return result if result.dtype == dtype else result.astype(dtype)
    with np.errstate(all="ignore"):  # inf and NaN propagate as in numpy (which only warns)
        return BINARY[op](left, right, dtype=dtype)


def reduce_rows(kind: str, tile: np.ndarray, dtype, out: np.ndarray | None = None) -> np.ndarray:
    """The reduction ``kind`` of each row of ``tile``, as a column (rows x 1) of ``dtype``.

    With ``out`` (a 1-D array of ``dtype``, one element per row) the rows' results are written there and
    ``out`` is returned, with no temporary column (see :func:`row_reducer`, what a reduce task uses)."""
    if kind not in REDUCTIONS:
        raise ValueError(f"unknown reduction {kind!r} (known: {sorted(REDUCTIONS)})")
    # in the tile's precision if wider (a complex tile's sum of |x|^2 goes to a real column)
    wide = np.result_type(tile.dtype, dtype)
    if out is not None and out.dtype == (np.empty(0, wide).real.dtype if kind == "sumsq" else wide):   # no temporary
        return REDUCTIONS[kind][0](tile.astype(wide, copy=False), axis=1, out=out)
    part = REDUCTIONS[kind][0](tile.astype(wide, copy=False), axis=1)
    if out is not None:
        out[...] = part
        return out
    return np.asarray(part, dtype=dtype).reshape(-1, 1)


def row_reducer(kind: str, tile_dtype, dtype):
    """``f(rows, out)``: :func:`reduce_rows` with ``out``, for the pieces of tiles of ``tile_dtype``, its checks
    done once. A reduce task reduces a 32 MB tile in 128 pieces of 256 KB; a temporary column per piece, its
    copy, and the checks and casts per call were 12% of the CPU of reading and reducing a 16-tile matrix
    (79.8 -> 70.1 ms, benchmarks/README.md "Small jobs, part 4")."""
    if kind not in REDUCTIONS:
        raise ValueError(f"unknown reduction {kind!r} (known: {sorted(REDUCTIONS)})")
    wide = np.result_type(tile_dtype, dtype)
    column = np.empty(0, wide).real.dtype if kind == "sumsq" else wide
    if np.dtype(tile_dtype) != wide or column != np.dtype(dtype):
        return lambda rows, out: reduce_rows(kind, rows, dtype, out=out)
    reduce = REDUCTIONS[kind][0]
    return lambda rows, out: reduce(rows, axis=1, out=out)


def combine_rows(kind: str, columns: list[np.ndarray], dtype) -> np.ndarray:
    """Combine per-tile partial columns (each rows x 1) of one row block into one column."""
    if kind not in REDUCTIONS:
        raise ValueError(f"unknown reduction {kind!r} (known: {sorted(REDUCTIONS)})")
    stacked = np.concatenate(columns, axis=1)
    return np.asarray(REDUCTIONS[kind][1](stacked, axis=1), dtype=dtype).reshape(-1, 1)
