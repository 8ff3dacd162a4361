"""How a reduce task should read its tiles: ways of mapping or reading them, and the kernel per piece.

``python -m benchmarks.reduce_read [--n 8192] [--tile 2048] [--rounds 9]``

One process, no workers: the tiles of an ``--n`` x ``--n`` float64 matrix (LocalStore, in the page cache) are
checksummed and reduced (row sums) in 256 KB pieces, in these variants alternating round by round, timed in
CPU milliseconds of this process for the whole matrix (medians):

* ``mmap, MAP_POPULATE`` (LocalStore.get_buffer), ``mmap, faults on touch``, ``mmap + MADV_WILLNEED``,
  ``pread into a reused 256 KB buffer`` (stays in cache), ``read each tile into a reused buffer``: the same
  loop (CRC of a piece, then its row sums written in place) over each way of getting the bytes;
* ``read path, a column per piece``: ``TiledMatrix.get_block_rows`` through ``TileReader.read_rows`` with
  ``reduce_rows`` returning each piece's column (what main's reduce task did), and ``read path, in place``:
  the same with ``row_reducer`` writing into the tile's column (the reduce task now);
* ``numpy sum in memory``: ``ndarray.sum()`` of an in-memory array of the same bytes (the peer's work).
"""
from __future__ import annotations

import argparse
import mmap
import os
import statistics
import tempfile
import time

import numpy as np

PIECE = 256 << 10


def _checked_row_sums(buffer, rows: int, cols: int, offset: int, column: np.ndarray, crc32) -> int:
    """CRC and row sums of one tile's body in 256 KB pieces (the body starts at ``offset`` of ``buffer``)."""
    view = memoryview(buffer)
    array = np.frombuffer(buffer, np.float64, rows * cols, offset).reshape(rows, cols)
    step = max(1, PIECE // (cols * 8))
    crc = 0
    for r in range(0, rows, step):
        crc = crc32(view[offset + r * cols * 8:offset + (r + step) * cols * 8], crc)
        np.add.reduce(array[r:r + step], axis=1, out=column[r:r + step])
    del array
    view.release()
    return crc


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reduce_read", description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=8192)
    parser.add_argument("--tile", type=int, default=2048)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args(argv)
    import numpywren
    from blocks.elementwise import reduce_rows, row_reducer
    from numpywren.storage import open_store
    from numpywren.tile import crc32
    from numpywren.worker.tasks import TileReader

    n, t = args.n, args.tile
    with tempfile.TemporaryDirectory() as root:
        store = open_store(root)
        a = np.random.default_rng(0).standard_normal((n, n))
        A = numpywren.BigMatrix.from_numpy(a, t, store, "A")
        refs = [(A, i, j) for i in range(A.grid[0]) for j in range(A.grid[1])]
        paths = [os.path.join(root, A.tile_key(i, j)) for _, i, j in refs]
        body = [os.path.getsize(p) - A.block_shape(i, j)[0] * A.block_shape(i, j)[1] * 8
                for p, (_, i, j) in zip(paths, refs)]
        shapes = [A.block_shape(i, j) for _, i, j in refs]
        for p in paths:   # into the page cache
            with open(p, "rb") as f:
                f.read()
        column = np.empty(t)
        piece = bytearray(PIECE)
        whole = bytearray(max(os.path.getsize(p) for p in paths))

        def mapped(flags: int = 0, advice: int | None = None):
            def run():
                for p, offset, (r, c) in zip(paths, body, shapes):
                    with open(p, "rb") as f:
                        m = mmap.mmap(f.fileno(), 0, flags=mmap.MAP_SHARED | flags, prot=mmap.PROT_READ)
                    if advice is not None:
                        m.madvise(advice)
                    _checked_row_sums(m, r, c, offset, column, crc32)
                    m.close()
            return run

        def pread_pieces():
            values = np.frombuffer(piece, np.float64)
            for p, offset, (r, c) in zip(paths, body, shapes):
                fd = os.open(p, os.O_RDONLY)
                try:
                    step, crc, at = max(1, PIECE // (c * 8)), 0, offset
                    for first in range(0, r, step):
                        size = os.preadv(fd, [memoryview(piece)[:min(step, r - first) * c * 8]], at)
                        at += size
                        crc = crc32(memoryview(piece)[:size], crc)
                        rows = size // (c * 8)
                        np.add.reduce(values[:rows * c].reshape(rows, c), axis=1, out=column[first:first + rows])
                finally:
                    os.close(fd)

        def read_whole():
            for p, offset, (r, c) in zip(paths, body, shapes):
                with open(p, "rb") as f:
                    f.readinto(whole)
                _checked_row_sums(whole, r, c, offset, column, crc32)

        def read_path(in_place: bool):
            def run():
                reader = TileReader()
                for ref in refs:
                    out = np.empty((ref[0].block_shape(ref[1], ref[2])[0], 1))
                    reduce = row_reducer("sum", A.dtype, A.dtype) if in_place else None
                    for first, rows in reader.read_rows(ref):
                        if in_place:
                            reduce(rows, out[first:first + rows.shape[0], 0])
                        else:
                            out[first:first + rows.shape[0]] = reduce_rows("sum", rows, A.dtype)
            return run

        copy = a.copy()
        variants = {"mmap, MAP_POPULATE": mapped(mmap.MAP_POPULATE), "mmap, faults on touch": mapped(),
                    "mmap + MADV_WILLNEED": mapped(0, mmap.MADV_WILLNEED),
                    "pread into a reused 256 KB buffer": pread_pieces,
                    "read each tile into a reused buffer": read_whole,
                    "read path, a column per piece": read_path(False), "read path, in place": read_path(True),
                    "numpy sum in memory": lambda: copy.sum()}
        cpu = {name: [] for name in variants}
        load = os.getloadavg()[0]
        for _ in range(args.rounds):
            for name, run in variants.items():
                start = time.process_time()
                run()
                cpu[name].append(time.process_time() - start)
        print(f"{len(refs)} tiles of {t}x{t} float64; CPU ms for all of them, median of {args.rounds} rounds; "
              f"load average {load:.2f} -> {os.getloadavg()[0]:.2f}")
        for name, times in cpu.items():
            print(f"  {name:<38}{statistics.median(times) * 1e3:8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
