"""Worker-side runners of factor-and-solve jobs: Cholesky diagonal and panel tiles, triangular-solve tiles,
zero tiles.

Each reads its input tiles (streaming the update pairs through a prefetching
:class:`~numpywren.worker.tasks.TileReader`), calls a kernel from ``blocks.cholesky``
and writes exactly one output tile. A diagonal tile that is not positive
definite (or a singular triangular diagonal) raises numpy.linalg.LinAlgError
naming the block; the scheduler treats it as permanent (never retried).
"""
from __future__ import annotations

import time

import numpy as np

from blocks.cholesky import cholesky_diagonal, cholesky_panel, cholesky_update, triangular_block
from numpywren.protocol import TileTask
from numpywren.worker.tasks import TileReader, _write


def _timed(reader: TileReader, groups):
    """Stream ``groups`` and count the time the consumer spends between reads as compute."""
    spent = [0.0]

    def gen():
        for tiles in reader.stream(groups):
            start = time.perf_counter()
            yield tiles
            spent[0] += time.perf_counter() - start
    return gen(), spent


def cholesky_diagonal_tile(task: TileTask) -> dict:
    """L[j, j] from A[j, j] and the row's panel tiles L[j, k], k < j. ``inputs = (A ref, (L refs...))``;
    ``params["shift"]`` is added to the diagonal first (kernel ridge's alpha, without rewriting A);
    ``params["of"]`` names the matrix being factored (A may be a scratch tile of early updates)."""
    a_ref, panel_refs = task.inputs
    matrix, j, _ = a_ref
    reader = TileReader()
    a = reader.read(a_ref)
    shift = float((task.params or {}).get("shift", 0.0))
    panels, spent = _timed(reader, [(ref,) for ref in panel_refs])
    start = time.perf_counter()
    if shift:
        a = np.array(a, dtype=task.output[0].dtype)
        a[np.diag_indices_from(a)] += shift
    try:
        tile = cholesky_diagonal(a, (p for (p,) in panels), task.output[0].dtype)
    except np.linalg.LinAlgError as e:
        first = j * matrix.tile_shape[0]
        raise np.linalg.LinAlgError(f"{(task.params or {}).get('of', matrix.key)}: matrix is not positive definite: diagonal block ({j}, {j}) "
                                    f"(rows {first}..{first + a.shape[0] - 1}) failed to factor; the leading "
                                    f"minor of order {first + getattr(e, 'order', 0)} is not positive") from None
    compute = time.perf_counter() - start - reader.wait_seconds
    return _write(task, tile, reader, compute)


def cholesky_update_tile(task: TileTask) -> dict:
    """The early part of a tile's update (see numpywren.factor, "lookahead"), into a scratch tile.
    ``inputs = (A ref, (L refs...) if params["diagonal"] else ((L[i, k], L[j, k]) refs...))``."""
    a_ref, update_refs = task.inputs
    params = task.params or {}
    diagonal = bool(params.get("diagonal"))
    reader = TileReader()
    a = reader.read(a_ref)
    dtype = task.output[0].dtype
    if params.get("shift"):
        a = np.array(a, dtype=dtype)
        a[np.diag_indices_from(a)] += float(params["shift"])
    groups, _ = _timed(reader, [(ref,) for ref in update_refs] if diagonal else update_refs)
    start = time.perf_counter()
    tile = cholesky_update(a, (p for (p,) in groups) if diagonal else groups, diagonal, dtype)
    return _write(task, tile, reader, time.perf_counter() - start - reader.wait_seconds)


def cholesky_panel_tile(task: TileTask) -> dict:
    """L[i, j], i > j, from A[i, j], L[j, j] and the pairs (L[i, k], L[j, k]), k < j.
    ``inputs = (A ref, L[j, j] ref, ((L[i, k], L[j, k]) refs...))``."""
    a_ref, diag_ref, pair_refs = task.inputs
    reader = TileReader()
    a, l_diag = reader.read(a_ref), reader.read(diag_ref)
    pairs, _ = _timed(reader, pair_refs)
    start = time.perf_counter()
    tile = cholesky_panel(a, pairs, l_diag, task.output[0].dtype)
    return _write(task, tile, reader, time.perf_counter() - start - reader.wait_seconds)


def triangular_solve_tile(task: TileTask) -> dict:
    """X[i, c] = inv(T[i, i]) (B[i, c] - sum_k T[i, k] X[k, c]). ``inputs = (B ref, T[i, i] ref,
    ((T[i, k], X[k, c]) refs...))``, ``params["lower"]`` says which triangle of op(T[i, i]) to use and
    ``params["trans"]`` that the T refs are stored tiles of T^T (op(T) = T^T, read transposed), and with
    ``params["conj"]`` of T^H (complex: read conjugate transposed)."""
    b_ref, diag_ref, pair_refs = task.inputs
    trans, conj = bool(task.params.get("trans", False)), bool(task.params.get("conj", False))
    reader = TileReader()
    b, t_diag = reader.read(b_ref), reader.read(diag_ref)
    pairs, _ = _timed(reader, pair_refs)
    if trans:   # T's tiles are read as stored; op(T) = T^T, or T^H
        op = (lambda t: t.conj().T) if conj else (lambda t: t.T)
        t_diag = op(t_diag)
        pairs = ((op(t), x) for t, x in pairs)
    start = time.perf_counter()
    try:
        tile = triangular_block(b, pairs, t_diag, bool(task.params["lower"]), task.output[0].dtype)
    except np.linalg.LinAlgError as e:
        matrix, i, _ = diag_ref
        raise np.linalg.LinAlgError(f"{matrix.key}: singular triangular matrix: diagonal block ({i}, {i}) "
                                    f"({e})") from None
    return _write(task, tile, reader, time.perf_counter() - start - reader.wait_seconds)


def zeros_tile(task: TileTask) -> dict:
    """A tile of zeros (the other triangle of a Cholesky factor), stored as a constant tile (numpywren.tile):
    a few hundred bytes, not a tile's worth of zeros."""
    matrix, i, j = task.output
    return _write(task, np.broadcast_to(np.zeros((), matrix.dtype), matrix.block_shape(i, j)), TileReader(), 0.0)
