"""Worker-side runners of LU jobs (see numpywren.decomp_lu for the algorithm and the matrices they read and write).

Rows keep their original positions in the scratch tiles (C, E, the
multipliers Lt); which rows are factored so far, in which order, is in the
panel records (``blocks.lu.pack_record``), one small tile per panel. Each
runner reads its tiles (at most one tile column plus the pairs it streams),
calls a kernel from ``blocks.lu`` and writes one tile; the panel task also writes
its multipliers, one tile per tile row, and its pivot order (a 1 x (n + 1) tile, all that
most tasks need of a record) before its record (the tile that marks it done).
"""
from __future__ import annotations

import time

import numpy as np

from blocks.lu import (copy_into, inverse_norm1_estimate, pack_order, pack_record, panel_factor, substitute, subtract_products,
                      unpack_order, unpack_record)
from blocks import blas
from numpywren import tile as codec
from numpywren.protocol import TileTask
from numpywren.worker.tasks import TileReader, _write


def _stream(reader: TileReader, groups, spent: list):
    """Tiles of ``groups`` read one step ahead; the consumer's time is added to ``spent[0]``."""
    for tiles in reader.stream(groups):
        start = time.perf_counter()
        yield tiles
        spent[0] += time.perf_counter() - start


def _read_input(reader: TileReader, ref, params: dict, dtype) -> np.ndarray:
    """A writable copy of an input tile; a diagonal tile of a symmetric input (``params["sym"]`` names the
    triangle it is given by, as scipy's ``lower=``) is completed from that triangle."""
    tile = reader.read(ref)
    if params.get("sym") and ref[1] == ref[2]:
        return _read_input_array(tile, params, dtype)
    return np.array(tile, dtype=dtype, order="C", copy=True)


def _record(reader: TileReader, ref, params: dict, w: int):
    return unpack_record(reader.read(ref), int(params["n"]), int(params["t"]), w)


def _pivot_order(reader: TileReader, ref, params: dict) -> tuple[np.ndarray, int]:
    """(order so far, info) from a panel's pivot order tile (``blocks.lu.pack_order``: 1 x (n + 1))."""
    return unpack_order(reader.read(ref), int(params["n"]))


def _factored(order: np.ndarray, n: int) -> np.ndarray:
    done = np.zeros(n, bool)
    done[order[order >= 0]] = True
    return done


def lu_update_tile(task: TileTask) -> dict:
    """out = base - sum_m Lt[i, m] @ U[m, j]: a tile's updates from earlier panels (its original rows).
    ``inputs = (base ref, ((Lt[i, m], U[m, j]) refs...))``; ``params["skip"]``, a pivot order ref: rows it
    lists as factored are left as they are (no later panel reads them)."""
    base_ref, pair_refs = task.inputs
    params, (out_matrix, i, _) = task.params or {}, task.output
    dtype = out_matrix.dtype
    reader, spent = TileReader(), [0.0]
    c = _read_input(reader, base_ref, params, dtype)
    rows = None
    if params.get("skip") is not None:
        order, _ = _pivot_order(reader, params["skip"], params)
        t = int(params["t"])
        rows = ~_factored(order, int(params["n"]))[i * t:i * t + c.shape[0]]
    subtract_products(c, _stream(reader, pair_refs, spent), rows)
    return _write(task, c, reader, spent[0])


def lu_panel_tile(task: TileTask) -> dict:
    """Panel k: gather the rows not factored yet from the panel's tiles, apply panel k-1's update to them,
    pick the pivots by partial pivoting over all of them (getrf), write the multipliers
    (``params["multipliers"]``), L[k, k-1] and U[k-1, k] (``params["panel_blocks"]``), the pivot order
    (``params["pivot_order"]``) and the record.
    ``inputs = (record k-1 ref or None, ((panel tile, Lt[i, k-1]) refs, or (panel tile,) for k = 0, for
    each tile row...))``, streamed one tile row ahead; ``params``: n, t, k, dtype, raise_singular, of.

    Panel k-1's update is Lt[:, k-1] U[k-1, k] on the unfactored rows, with U[k-1, k] = L_{k-1}^-1 times
    the rows panel k-1 factored (record k-1), which the panel's tiles hold: the task computes U[k-1, k]
    itself and applies the update as one product, so one panel follows another with no task between
    them; it has L[k, k-1] too (the multipliers it gathered, of the rows it picks), so both blocks are
    written beside the record and copied into the factor, not recomputed or gathered from g tiles."""
    prev_ref, groups = task.inputs
    p = task.params
    n, t, k, dtype = int(p["n"]), int(p["t"]), int(p["k"]), np.dtype(p["dtype"])
    w = min(t, n - k * t)
    reader, spent = TileReader(), [0.0]
    if prev_ref is None:
        order, info, l_prev = np.full(n, -1, np.int64), 0, None
    else:
        order, info, l_prev = _record(reader, prev_ref, p, t)
    done = _factored(order, n)
    panel = np.empty((n - k * t, w), dtype, order="F")
    rows = np.empty(n - k * t, np.int64)
    if l_prev is not None:   # the multipliers of panel k-1 for the rows gathered, and its pivot rows here
        multipliers = np.empty((n - k * t, t), dtype)
        pivots = order[(k - 1) * t:k * t]
        upper = np.empty((t, w), dtype)
    filled, rows_buffer = 0, np.empty((t, w), dtype)   # a tile row's live rows, before their copy into the panel
    for i, tiles in enumerate(_stream(reader, groups, spent)):
        live = np.flatnonzero(~done[i * t:i * t + tiles[0].shape[0]])
        copy_into(panel[filled:filled + live.size],
                  _read_rows(tiles[0], live, p, groups[i][0], dtype, rows_buffer[:live.size]))
        if l_prev is not None:
            _take_rows(tiles[1], live, multipliers[filled:filled + live.size])
            here = pivots // t == i
            upper[here] = _read_rows(tiles[0], pivots[here] - i * t, p, groups[i][0], dtype)
        rows[filled:filled + live.size] = i * t + live
        filled += live.size
    if filled != panel.shape[0]:
        raise RuntimeError(f"panel {k}: found {filled} unfactored rows, expected {panel.shape[0]} "
                           "(records inconsistent)")
    start = time.perf_counter()
    if l_prev is not None:   # U[k-1, k] as lu_upper computes it, then the update of every gathered row at once
        substitute(upper, (), l_prev.astype(dtype), lower=True, unit=True)
        blas.gemm(multipliers, upper, panel, alpha=-1.0, beta=1.0)
    perm, factored, local_info = panel_factor(panel)
    del panel
    below = None
    if l_prev is not None:   # L[k, k-1]: panel k-1's multipliers of the rows this panel picked, in pivot order
        lower_block = multipliers[perm[:w]]
        if w == t:   # its buffer takes getrf's multipliers, row-major for the scatter into Lt's tiles
            below = multipliers[:factored.shape[0] - w]
        del multipliers
    if p.get("multipliers") is not None:
        below = copy_into(np.empty((factored.shape[0] - w, w), dtype) if below is None else below, factored[w:])
    local, lu = perm[:w], copy_into(np.empty((w, w), dtype), factored[:w])
    del factored
    order[k * t:k * t + w] = rows[local]
    if local_info and not info:
        info = k * t + local_info
        if p.get("raise_singular"):
            raise np.linalg.LinAlgError(
                f"{p.get('of', '')}: Singular matrix: exactly zero pivot in diagonal block ({k}, {k}) "
                f"(U[{info - 1}, {info - 1}] = 0): the matrix is singular")
    record = pack_record(order, info, lu, n, t)
    compute = spent[0] + time.perf_counter() - start
    written = 0
    if p.get("multipliers") is not None:   # written before the record: the record's presence means they exist
        written, seconds = _write_multipliers(task, p["multipliers"], rows[perm[w:]], below, t)
        del below
        compute += seconds
    if l_prev is not None:   # L[k, k-1] and U[k-1, k], copied into the factor by their tasks
        for (matrix, bi, bj), block in zip(p["panel_blocks"], (lower_block, upper)):
            matrix.put_block(bi, bj, block, run=task.run)
            written += codec.stored_nbytes(block)
    orders, oi, _ = p["pivot_order"]
    small = pack_order(order, info)
    orders.put_block(oi, 0, small, run=task.run)
    stats = _write(task, record, reader, compute)
    stats["bytes_written"] += written + codec.stored_nbytes(small)
    return stats


def _write_multipliers(task: TileTask, ref, rows: np.ndarray, values: np.ndarray, t: int) -> tuple[int, float]:
    """Lt[i, k] for every tile row i: the panel's multipliers (getrf's L below its pivots) of the rows of
    tile row i not factored yet, zero elsewhere (rows factored by this or an earlier panel). ``ref``
    (Lt, 0, k) names the tile column; ``rows`` are the global rows of ``values``'s rows. Returns (bytes
    written, seconds spent scattering)."""
    matrix, _, k = ref
    written, seconds = 0, 0.0
    blocks = rows // t
    for i in range(matrix.grid[0]):
        start = time.perf_counter()
        out = np.zeros(matrix.block_shape(i, k), matrix.dtype)
        sel = blocks == i
        out[rows[sel] - i * t] = values[sel]
        seconds += time.perf_counter() - start
        matrix.put_block(i, k, out, run=task.run)
        written += codec.stored_nbytes(out)
    return written, seconds


def _read_rows(tile: np.ndarray, rows: np.ndarray, params: dict, ref, dtype, out: np.ndarray | None = None):
    """Rows ``rows`` of an input tile (a diagonal tile of a symmetric input completed first), into ``out``
    if given (then returned; a tile whose rows are all wanted is returned as it is, to be copied once)."""
    if params.get("sym") and ref[1] == ref[2]:
        return _read_input_array(tile, params, dtype)[rows]
    if out is None:
        return tile[rows]
    if rows.size == tile.shape[0]:
        return tile
    return _take_rows(tile, rows, out)


def _take_rows(tile: np.ndarray, rows: np.ndarray, out: np.ndarray) -> np.ndarray:
    """out[:] = tile[rows] without a temporary (np.take's default mode buffers its output)."""
    if tile.dtype == out.dtype and out.flags.c_contiguous:
        return np.take(tile, rows, axis=0, out=out, mode="clip")
    out[...] = tile[rows]
    return out


def _read_input_array(tile: np.ndarray, params: dict, dtype) -> np.ndarray:
    """A diagonal tile completed from its ``params["sym"]`` triangle: symmetric, or Hermitian (the mirror
    conjugated, the diagonal's imaginary part ignored, as LAPACK's hetrf) with ``params["hermitian"]``."""
    tile = np.asarray(tile, dtype)
    part, strict = (np.tril(tile), np.tril(tile, -1)) if params["sym"] == "lower" else (np.triu(tile),
                                                                                       np.triu(tile, 1))
    if params.get("hermitian"):
        part = np.array(part)
        part[np.diag_indices_from(part)] = part.diagonal().real
        return part + strict.conj().T
    return part + strict.T


def _gather(reader: TileReader, refs, rows: np.ndarray, t: int, out: np.ndarray, params: dict | None = None):
    """out[r] = row ``rows[r]`` of the tile column ``refs`` (one ref per tile row); reads only the tiles
    holding those rows, one at a time."""
    blocks = rows // t
    for i in np.unique(blocks):
        tile = reader.read(refs[i])
        if params and params.get("sym") and refs[i][1] == refs[i][2]:
            tile = _read_input_array(tile, params, out.dtype)
        sel = blocks == i
        out[sel] = tile[rows[sel] - i * t]
    return out


def lu_gather_lower_tile(task: TileTask) -> dict:
    """L[k, m] (k > m) of the factor: the multipliers of panel m for the rows panel k factored, in their
    pivot order. ``inputs = (pivot order k ref, (Lt[i, m] ref for each tile row...))``."""
    record_ref, lt_refs = task.inputs
    p, (out_matrix, oi, oj) = task.params, task.output
    n, t, k = int(p["n"]), int(p["t"]), int(p["k"])
    reader = TileReader()
    order, _ = _pivot_order(reader, record_ref, p)
    rows, cols = out_matrix.block_shape(oi, oj)
    out = _gather(reader, lt_refs, order[k * t:k * t + rows], t, np.empty((rows, cols), out_matrix.dtype))
    return _write(task, out, reader, 0.0)


def lu_diagonal_tile(task: TileTask) -> dict:
    """LU[k, k]: the packed diagonal block from panel k's record. ``inputs = (record k ref,)``."""
    (record_ref,) = task.inputs
    p, (out_matrix, k, _) = task.params, task.output
    reader = TileReader()
    w = out_matrix.block_shape(k, k)[0]
    _, _, lu = _record(reader, record_ref, p, w)
    return _write(task, lu.astype(out_matrix.dtype), reader, 0.0)


def lu_upper_tile(task: TileTask) -> dict:
    """U[k, j] (j > k) = L_kk^-1 (A[rows of panel k, j] - sum_m L[k, m] U[m, j]).
    ``inputs = (record k ref, (A[i, j] ref for each tile row...), ((L[k, m], U[m, j]) refs...))``."""
    record_ref, a_refs, pair_refs = task.inputs
    p, (out_matrix, k, j) = task.params, task.output
    n, t, dtype = int(p["n"]), int(p["t"]), out_matrix.dtype
    rows, cols = out_matrix.block_shape(k, j)
    reader, spent = TileReader(), [0.0]
    order, _, lu = _record(reader, record_ref, p, rows)
    c = _gather(reader, a_refs, order[k * t:k * t + rows], t, np.empty((rows, cols), dtype), p)
    # every row of c is live (L's gathered rows are dense): in place, without scanning for zero rows
    subtract_products(c, _stream(reader, pair_refs, spent), np.ones(rows, bool))
    start = time.perf_counter()
    substitute(c, (), lu.astype(dtype), lower=True, unit=True)
    return _write(task, c, reader, spent[0] + time.perf_counter() - start)


def lu_permute_tile(task: TileTask) -> dict:
    """Rows of B in the factor's pivot order (P^T B), or of the identity if there is no B (for ``inv``);
    ``params["inverse"]`` applies the inverse order (P B, for the transposed solve).
    ``inputs = (order ref, (B[i, c] ref for each tile row...) or ())``."""
    order_ref, b_refs = task.inputs
    p, (out_matrix, i, c) = task.params, task.output
    n, t = int(p["n"]), int(p["t"])
    reader = TileReader()
    order = np.asarray(reader.read(order_ref)).ravel()[:n].real.astype(np.int64)   # a record: complex for complex LU
    if p.get("inverse"):
        order = np.argsort(order)
    rows, cols = out_matrix.block_shape(i, c)
    source = order[i * t:i * t + rows]
    if b_refs:
        out = _gather(reader, b_refs, source, t, np.empty((rows, cols), out_matrix.dtype))
    else:
        col0 = c * out_matrix.tile_shape[1]
        out = (source[:, None] == np.arange(col0, col0 + cols)[None, :]).astype(out_matrix.dtype)
    return _write(task, out, reader, 0.0)


def lu_solve_tile(task: TileTask) -> dict:
    """X[i, c] = op(T[i, i])^-1 (B[i, c] - sum_k op(T)[i, k] X[k, c]) with the unit lower (L) or upper (U)
    part of a packed LU diagonal tile. ``inputs = (B ref, T[i, i] ref, ((T tile, X[k, c]) refs...))``;
    params: lower, unit, trans (T's tiles are read as stored and transposed; also conjugated with
    ``conjugate``, scipy's trans=2), of."""
    b_ref, diag_ref, pair_refs = task.inputs
    p, dtype = task.params, task.output[0].dtype
    trans = bool(p.get("trans"))
    reader, spent = TileReader(), [0.0]
    b = np.array(reader.read(b_ref), dtype=dtype, order="C", copy=True)
    t_diag = reader.read(diag_ref)
    pairs = _stream(reader, pair_refs, spent)
    if trans and p.get("conjugate"):
        t_diag, pairs = t_diag.conj().T, ((a.conj().T, x) for a, x in pairs)
    elif trans:
        t_diag, pairs = t_diag.T, ((a.T, x) for a, x in pairs)
    try:
        substitute(b, pairs, np.asarray(t_diag, dtype), lower=bool(p["lower"]), unit=bool(p["unit"]))
    except np.linalg.LinAlgError as e:
        matrix, i, _ = diag_ref
        first = i * matrix.tile_shape[0]
        raise np.linalg.LinAlgError(f"{p.get('of', matrix.key)}: Singular matrix: exactly zero pivot in diagonal "
                                    f"block ({i}, {i}) (U[{first + e.row}, {first + e.row}] = 0)") from None
    return _write(task, b, reader, spent[0])


def lu_split_tile(task: TileTask) -> dict:
    """A tile of scipy's L or U from a tile of the packed LU: ``params["part"]`` is "L" (unit lower of a
    diagonal tile), "U" (upper of a diagonal tile) or "copy". ``inputs = (LU ref,)``."""
    (ref,) = task.inputs
    part, dtype = task.params["part"], task.output[0].dtype
    reader = TileReader()
    tile = np.asarray(reader.read(ref), dtype)
    if part == "L":
        tile = np.tril(tile, -1) + np.eye(*tile.shape, dtype=dtype)
    elif part == "U":
        tile = np.triu(tile)
    return _write(task, tile, reader, 0.0)


def lu_permutation_tile(task: TileTask) -> dict:
    """A tile of scipy's P (A = P L U): P[order[c], c] = 1. ``inputs = (order ref,)``."""
    (order_ref,) = task.inputs
    p, (out_matrix, i, j) = task.params, task.output
    n = int(p["n"])
    reader = TileReader()
    order = np.asarray(reader.read(order_ref)).ravel()[:n].real.astype(np.int64)   # a record: complex for complex LU
    (r0, c0), (rows, cols) = (i * out_matrix.tile_shape[0], j * out_matrix.tile_shape[1]), out_matrix.block_shape(i, j)
    source = order[c0:c0 + cols]
    return _write(task, (np.arange(r0, r0 + rows)[:, None] == source[None, :]).astype(out_matrix.dtype), reader, 0.0)


# -- conditioning (solve's LinAlgWarning, as LAPACK gecon) ----------------------------------------------------
def lu_colsums_tile(task: TileTask) -> dict:
    """Column sums of |A| over one tile column (a 1 x cols tile), for ||A||_1. ``inputs``: one group per
    tile row, ``((A[i, j] ref,), ...)``, read one ahead; ``params["sym"]`` completes a diagonal tile."""
    params, dtype = task.params or {}, task.output[0].dtype
    reader, spent = TileReader(), [0.0]
    total = None
    for (ref,) in task.inputs:
        tile = _read_input(reader, ref, params, np.result_type(ref[0].dtype, np.float32))
        start = time.perf_counter()
        sums = np.abs(tile).sum(axis=0, dtype=np.float64)
        total = sums if total is None else total + sums
        spent[0] += time.perf_counter() - start
    return _write(task, total[None, :].astype(dtype), reader, spent[0])


def lu_rcond_tile(task: TileTask) -> dict:
    """1 / (||A||_1 est(||A^-1||_1)) in a 1 x 1 tile: LAPACK gecon's reciprocal condition estimate, from the
    packed LU (streamed one tile at a time, a few passes) and A's column sums. ``inputs = ((last pivot order,),
    (colsums[0, j],)..., (LU[i, j],)... row by row)``; ``params``: n, t."""
    p = task.params
    n, t = int(p["n"]), int(p["t"])
    (record_ref,), rest = task.inputs[0], task.inputs[1:]
    LU = rest[-1][0][0]
    g = LU.grid[0]
    sums_refs, lu_refs = rest[:-g * g], rest[-g * g:]
    reader = TileReader()
    order = _pivot_order(reader, record_ref, p)[0]
    anorm = max(float(np.max(reader.read(ref), initial=0.0)) for (ref,) in sums_refs)
    start, waiting = time.perf_counter(), reader.wait_seconds
    estimate = inverse_norm1_estimate(lambda v, adjoint: _lu_apply_inverse(reader, lu_refs, g, t, order, v, adjoint),
                                      n, LU.dtype)
    with np.errstate(divide="ignore", over="ignore"):   # NaN input gives NaN (no warning, as scipy); inf gives 0
        rcond = np.float64(1.0) / (np.float64(anorm) * np.float64(estimate))
    compute = time.perf_counter() - start - (reader.wait_seconds - waiting)   # reads not hidden
    return _write(task, np.array([[rcond]], task.output[0].dtype), reader, compute)


def _lu_apply_inverse(reader: TileReader, lu_refs, g: int, t: int, order: np.ndarray, v: np.ndarray,
                      adjoint: bool) -> np.ndarray:
    """A^-1 v (A = P L U), or A^-H v with ``adjoint``, reading the LU tiles one at a time, one ahead of the
    products (``lu_refs``: one group per tile, row by row)."""
    dtype = lu_refs[0][0][0].dtype

    def sweep(b, lower, unit, forward):
        """b = T^-1 b tile row by tile row, T the ``lower`` (unit) or upper triangle of the packed LU's tiles
        (conjugate-transposed if ``adjoint``: then U^H is the lower one, L^H the upper one)."""
        rows = [(i, range(i) if forward else range(i + 1, g)) for i in (range(g) if forward else range(g - 1, -1, -1))]
        # per tile row: its diagonal tile, then the tiles of its products (tile (k, i) of LU for the adjoint)
        tiles = reader.stream([lu_refs[(k * g + i) if adjoint else (i * g + k)] for i, ks in rows for k in (i, *ks)])

        def take():
            (a,) = next(tiles)
            return a.conj().T if adjoint else a
        x = [None] * g
        for i, ks in rows:
            diagonal = take()
            x[i] = substitute(np.array(b[i * t:(i + 1) * t], dtype), ((take(), x[k]) for k in ks), diagonal,
                              lower=lower, unit=unit)
        return np.concatenate(x)
    if not adjoint:   # L U x = P^T v
        return sweep(sweep(np.asarray(v, dtype)[order], True, True, True), False, False, False)
    w = sweep(sweep(np.asarray(v, dtype), True, False, True), False, True, False)   # U^H z = v, L^H w = z
    x = np.empty_like(w)
    x[order] = w
    return x
