"""What a to_zarr task pays per chunk: the steps of the direct path, and the ones the fenced path added.

``python -m benchmarks.zarr_steps [--n 2048] [--tile 512] [--repeat 15]``

One process, no workers: a matrix is written with ``to_zarr`` once (raw chunks, LocalStore), then each step
of a task's chunk write (numpywren.zarr_tiles.ZarrTiles.put_block) is timed alone on chunk (0, 0), in CPU
and wall milliseconds (medians of ``--repeat``): the steps of the direct path (zarr's codecs on an in-memory
array, the chunk put) and those issue 26 added (the fence's job-record read, the BLAKE2b-128 digest of the
chunk, the digest marker put), beside a native tile write of the same block and the hashes hashlib offers.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import tempfile
import time

import numpy as np


def _timed(fn, repeat: int) -> tuple[float, float]:
    cpu, wall = [], []
    for _ in range(repeat):
        c, w = time.process_time(), time.perf_counter()
        fn()
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - w)
    return statistics.median(cpu) * 1e3, statistics.median(wall) * 1e3


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.zarr_steps", description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2048)
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args(argv)
    import numpywren
    from numpywren import zarr_tiles
    from numpywren.tile import crc32

    with tempfile.TemporaryDirectory() as root:
        store = numpywren.open_store(root)
        M = numpywren.BigMatrix.from_numpy(np.random.default_rng(0).standard_normal((args.n, args.n)),
                                           args.tile, store, "M")
        with numpywren.LocalExecutor(2, store, blas_threads=1) as executor:
            Z = M.to_zarr(f"{root}/z.zarr", executor=executor, compressors=None, progress=False)
        block = np.array(M.get_block(0, 0))
        key, region = Z.chunk_key(0, 0), Z.block_slices_stored(0, 0)
        chunk = key.rpartition(Z.key + "/")[2]
        data = zarr_tiles._encode(Z.zarr_meta, region, chunk, block)
        owner = json.loads(store.get(f"{Z.key}/job.json"))["run"]
        count = iter(range(10 ** 9))
        steps = [
            ("direct", "zarr codecs (in-memory array)", lambda: zarr_tiles._encode(Z.zarr_meta, region, chunk, block)),
            ("direct", "chunk put", lambda: store.put("steps/chunk", data)),
            ("added", "fence: job record read", lambda: Z._check_fence(owner, key)),
            ("added", "BLAKE2b-128 of the chunk", lambda: zarr_tiles._content_digest(data)),
            ("added", "digest marker put", lambda: store.put(f"steps/markers/{next(count)}/{'0' * 32}", b"")),
            ("peer", "native tile write (encode + put)", lambda: M.put_block(0, 0, block, run="steps")),
            ("peer", "sha256 of the chunk", lambda: hashlib.sha256(data).digest()),
            ("peer", "CRC32 of the chunk (isal)", lambda: crc32(data)),
        ]
        print(f"to_zarr, one chunk of {block.shape[0]}x{block.shape[1]} float64 ({block.nbytes >> 20} MB, raw); "
              f"medians of {args.repeat}; load average {os.getloadavg()[0]:.1f}")
        print(f"  {'path':<8}{'step':<36}{'CPU ms':>8}{'wall ms':>9}")
        for path, name, fn in steps:
            cpu, wall = _timed(fn, args.repeat)
            print(f"  {path:<8}{name:<36}{cpu:8.2f}{wall:9.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
