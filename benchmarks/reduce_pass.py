"""What one reduce task pays per tile: map, CRC and row reduction, before and after the one-pass read.

``python -m benchmarks.reduce_pass [--n 8192] [--tile 2048] [--rounds 9]``

One process, no workers: the tiles of an ``--n`` x ``--n`` float64 matrix (LocalStore, page cache) are
reduced row by row as a reduce task does, in three variants alternating round by round, timed in CPU
seconds of this process (less sensitive than wall time to other processes on a shared machine):

* ``two passes``: the tile mapped with page faults on first touch, checked whole (``get_block``), then reduced
  (the code before issue 31 item 3);
* ``two passes, populated``: the same with the mapping populated up front (MAP_POPULATE, LocalStore now);
* ``one pass``: ``get_block_rows``: each 256 KB row piece checksummed, then reduced while it is in cache.

Then the parts, on one tile: a CRC pass over the mapped tile, two of them, the CRC and the row sums of an
in-memory copy of it (read again and again: as warm as the caches keep it), and numpy's own ``sum()`` of a
fresh in-memory array of the same size.
"""
from __future__ import annotations

import argparse
import mmap
import os
import statistics
import tempfile
import time

import numpy as np


def _cpu_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return statistics.median(times) * 1e3


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reduce_pass", description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=8192)
    parser.add_argument("--tile", type=int, default=2048)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args(argv)
    import numpywren
    from blocks.elementwise import reduce_rows
    from numpywren.storage import local, open_store
    from numpywren.tile import crc32

    populated, faulted = dict(local._MMAP_KWARGS), {"access": mmap.ACCESS_READ}
    with tempfile.TemporaryDirectory() as root:
        A = numpywren.BigMatrix.from_numpy(np.random.default_rng(0).standard_normal((args.n, args.n)),
                                           args.tile, open_store(root), "A")
        blocks = list(A.block_indices())

        def whole(kind):
            for i, j in blocks:
                reduce_rows(kind, A.get_block(i, j), A.dtype)

        def pieces(kind):
            for i, j in blocks:
                column = np.empty((A.block_shape(i, j)[0], 1), A.dtype)
                for first, rows in A.get_block_rows(i, j):
                    column[first:first + rows.shape[0]] = reduce_rows(kind, rows, A.dtype)

        variants = [("two passes", faulted, whole), ("two passes, populated", populated, whole),
                    ("one pass", populated, pieces)]
        mb = A.tile_shape[0] * A.tile_shape[1] * 8 >> 20
        print(f"{len(blocks)} tiles of {A.tile_shape[0]}x{A.tile_shape[1]} float64 ({mb} MB); CPU ms per tile, "
              f"median of {args.rounds} rounds; load average {os.getloadavg()[0]:.1f}")
        print(f"{'kind':<8}" + "".join(f"{name:>24}" for name, _, _ in variants))
        try:
            for kind in ("sum", "sumsq", "max"):
                seconds = {name: [] for name, _, _ in variants}
                for _ in range(args.rounds):
                    for name, mapping, fn in variants:
                        local._MMAP_KWARGS.clear()
                        local._MMAP_KWARGS.update(mapping)
                        start = time.process_time()
                        fn(kind)
                        seconds[name].append(time.process_time() - start)
                print(f"{kind:<8}" + "".join(f"{statistics.median(s) * 1e3 / len(blocks):24.2f}"
                                             for s in seconds.values()))
        finally:
            local._MMAP_KWARGS.clear()
            local._MMAP_KWARGS.update(populated)
        path = A.store._path(A.tile_key(0, 0))

        def mapped():
            with open(path, "rb") as f:
                return mmap.mmap(f.fileno(), 0, **populated)
        hot = np.array(A.get_block(0, 0))
        parts = [("CRC pass over the mapped tile", lambda: crc32(mapped())),
                 ("two CRC passes over it", lambda: (lambda m: (crc32(m), crc32(m)))(mapped())),
                 ("CRC of an in-memory copy", lambda: crc32(hot)),
                 ("row sums of an in-memory copy", lambda: hot.sum(axis=1)),
                 ("numpy sum() of an in-memory tile", None)]
        crc32(hot)
        for name, fn in parts:
            if fn is None:  # a fresh array each time (not left in cache by the previous round)
                arrays = [np.random.default_rng(k).standard_normal(hot.shape) for k in range(args.rounds)]
                ms = statistics.median(_cpu_ms(a.sum, 1) for a in arrays)
            else:
                ms = _cpu_ms(fn, args.rounds)
            print(f"  {name:<36}{ms:8.2f} CPU ms")
    print(f"load average at end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
