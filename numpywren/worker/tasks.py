"""Worker-side task runners: read input tiles, call a kernel from ``blocks``, write the output tile.

Each runner returns a small stats dict (bytes and seconds of I/O and compute)
that the scheduler aggregates into the job's report.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator, Sequence

import numpy as np

from blocks import blas
from blocks.gemm import gemm_accumulate, sum_tiles
from numpywren import tile as codec
from numpywren.protocol import VALUE_PARAM, TileRef, TileTask, encode_value
from numpywren.worker import faults, progress


class TileReader:
    """Reads groups of tiles one step ahead of the kernel, on a background thread.

    Store reads and checksums release the GIL, and so does BLAS, so reading
    group k+1 overlaps multiplying group k. ``wait_seconds`` is the I/O the
    kernel could not hide. Every read counts towards the attempt's progress
    (numpywren.worker.progress), which its lease renewals report.
    """

    def __init__(self):
        self.progress = progress.current()  # captured here: reads may run on the prefetch thread
        self.bytes_read = 0
        self.tiles_read = 0
        self.read_seconds = 0.0
        self.wait_seconds = 0.0

    def read(self, ref: TileRef) -> np.ndarray:
        matrix, i, j = ref
        start = time.perf_counter()
        if self.progress is not None:
            faults.inject(self.progress.task_id, self.progress.attempt, "read")
        tile = matrix.get_block(i, j)
        self.read_seconds += time.perf_counter() - start
        self.bytes_read += tile.nbytes
        self.tiles_read += 1
        if self.progress is not None:
            self.progress.read(tile.nbytes)
        return tile

    def read_rows(self, ref: TileRef) -> Iterator[tuple[int, np.ndarray]]:
        """Tile ``ref`` as checked ``(first row, rows)`` pieces (TiledMatrix.get_block_rows: the checksum
        fails, if it does, after the last piece). Time spent reading and checking counts as
        ``read_seconds``; the consumer's time between pieces does not."""
        matrix, i, j = ref
        start = time.perf_counter()
        if self.progress is not None:
            faults.inject(self.progress.task_id, self.progress.attempt, "read")
        pieces = matrix.get_block_rows(i, j)
        for first, rows in pieces:
            self.read_seconds += time.perf_counter() - start
            self.bytes_read += rows.nbytes
            if self.progress is not None:   # the attempt's progress report counts these reads too
                self.progress.read(rows.nbytes)
            yield first, rows
            start = time.perf_counter()
        self.read_seconds += time.perf_counter() - start
        self.tiles_read += 1

    def stream(self, groups: Sequence[Sequence[TileRef]]) -> Iterator[tuple[np.ndarray, ...]]:
        if not groups:
            return
        with ThreadPoolExecutor(1, thread_name_prefix="prefetch") as pool:
            pending = pool.submit(lambda g: tuple(self.read(r) for r in g), groups[0])
            for n in range(len(groups)):
                start = time.perf_counter()
                tiles = pending.result()
                self.wait_seconds += time.perf_counter() - start
                if n + 1 < len(groups):
                    pending = pool.submit(lambda g: tuple(self.read(r) for r in g), groups[n + 1])
                yield tiles


def _write(task: TileTask, tile: np.ndarray, reader: TileReader, compute_seconds: float) -> dict:
    """Write the output tile (or, for a task whose params set protocol.VALUE_PARAM, return it as the
    result's ``"value"``: same shape and dtype checks, bound to the run and generation); the task's stats."""
    matrix, i, j = task.output
    start = time.perf_counter()
    stats = {"bytes_read": reader.bytes_read, "tiles_read": reader.tiles_read,
             "read_seconds": reader.read_seconds, "io_wait_seconds": reader.wait_seconds,
             "compute_seconds": compute_seconds, "flops": task.flops, "blas": blas.describe()}
    if task.params.get(VALUE_PARAM):
        tile = np.asarray(tile)
        if tile.shape != matrix.block_shape(i, j) or tile.dtype != matrix.dtype:
            raise ValueError(f"task {task.id!r}: its value must be a {matrix.block_shape(i, j)} {matrix.dtype} "
                             f"block, got {tile.shape} {tile.dtype}")
        stats["value"] = encode_value(tile, task.run, matrix.current_generation())
        return {**stats, "bytes_written": 0, "write_seconds": time.perf_counter() - start}
    matrix.put_block(i, j, tile, run=task.run)
    return {**stats, "bytes_written": codec.stored_nbytes(tile), "write_seconds": time.perf_counter() - start}


def write_whole(task: TileTask, arrays: Sequence[np.ndarray]) -> int:
    """Write each array, tile by tile, into the matrix its task's ``params["writes"]`` names (same order);
    the bytes written. A task writes these before its output tile, which then says they are complete."""
    targets = [ref[0] for ref in task.params.get("writes", ())]
    if len(targets) != len(arrays):
        raise ValueError(f"task {task.id!r} writes {len(targets)} matrices, its kernel gave {len(arrays)}")
    jobs = []
    for matrix, array in zip(targets, arrays):
        if array.shape != matrix.shape:
            raise ValueError(f"task {task.id!r}: {array.shape} array for the {matrix.shape} matrix {matrix.key!r}")
        for i in range(matrix.grid[0]):
            for j in range(matrix.grid[1]):
                rows, cols = matrix.block_slices(i, j)
                jobs.append((matrix, i, j, array[rows, cols]))
    with ThreadPoolExecutor(4, thread_name_prefix="write") as pool:   # overlaps S3 puts; a tile copy each
        list(pool.map(lambda job: job[0].put_block(job[1], job[2], np.ascontiguousarray(job[3], dtype=job[0].dtype),
                                                  run=task.run),
                      jobs))
    return sum(codec.stored_nbytes(job[3]) for job in jobs)


def scan_tile(task: TileTask) -> dict:
    """Validation pre-pass: read one input tile (checks checksum and binding) and count its non-finite values."""
    matrix, i, j = task.output
    tile = matrix.get_block(i, j)
    return {"nonfinite": int(tile.size - np.count_nonzero(np.isfinite(tile)))}


def gemm_tile(task: TileTask) -> dict:
    """output = sum over the task's (A tile, B tile) pairs of A @ B."""
    reader = TileReader()
    compute = 0.0
    dtype = task.output[0].dtype

    def timed_pairs():
        nonlocal compute
        for a, b in reader.stream(task.inputs):
            start = time.perf_counter()
            yield a, b
            compute += time.perf_counter() - start

    # gemm_accumulate multiplies each pair before asking for the next, so the
    # time between yield and resume is the kernel's.
    result = gemm_accumulate(timed_pairs(), dtype=dtype)
    return _write(task, result, reader, compute)


def sum_tile(task: TileTask) -> dict:
    """output = sum of the input tiles (one level of a split-k reduction tree)."""
    reader = TileReader()
    tiles = [reader.read(ref) for ref in task.inputs]
    start = time.perf_counter()
    result = sum_tiles(tiles)
    return _write(task, result, reader, time.perf_counter() - start)
