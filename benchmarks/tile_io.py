"""Tile put/get on a LocalStore vs plain ``np.save``/``np.load`` of the same array on the same filesystem.

For each tile size (``--sizes-mb``, default 1,16,64,256 MB of float64) one
thread, side by side in one run:

* tile put: ``BigMatrix.put_block`` (CRC32 over header and bytes, temp file, atomic rename;
  "CRC share" is the part of it spent in ``tile.encode``, i.e. checksumming);
* np.save: ``np.save`` to a ``.npy`` file in the same folder (both write a new file each time,
  deleted untimed afterwards, as tiles are written once under a fresh key);
* tile get: ``BigMatrix.get_block`` (maps the file, verifies the CRC32, so every byte is read);
* np.load: ``np.load`` (reads the file into a new array).

Each operation runs ``--repeat`` times per size (more for small tiles), taking
turns with its numpy counterpart, and keeps its best time: on a shared machine
noise only slows runs down. The
files were just written, so reads come from the page cache: this measures the
codec, copies and system calls, not a disk. A last line multiplies two
decoded tiles (1 BLAS thread) against two ``np.load`` arrays: a misaligned
tile body would make BLAS slower there. Run with ``python -m benchmarks.tile_io``
or ``numpywren bench tile_io``.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import common

NAME = "tile_io"
MB = 1 << 20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes-mb", type=common.int_list, default=[1, 16, 64, 256],
                        help="tile sizes in MB (MiB of float64), default 1,16,64,256")
    parser.add_argument("--repeat", type=int, default=3,
                        help="timed runs per operation and size, at least; small tiles run until "
                             "256 MB have moved (default 3)")
    parser.add_argument("--matmul-n", type=int, default=2048,
                        help="size of the tile product checked at the end (default 2048; 0 skips it)")
    parser.add_argument("--dir", default=None,
                        help="folder on the filesystem to measure (default: a temporary folder, removed)")
    common.add_common_arguments(parser)


def main(argv: list[str] | None = None) -> int:
    return run(common.parse_args("tile_io", __doc__, add_arguments, argv))


def run(args: argparse.Namespace) -> int:
    if args.tiny:
        args.sizes_mb, args.repeat, args.matmul_n = [1, 2], 2, 256
    if args.repeat < 1:
        raise SystemExit("--repeat must be at least 1")
    info = common.machine_info()
    folder = Path(tempfile.mkdtemp(prefix="numpywren-tile-io-", dir=args.dir))
    info["folder"], info["filesystem"] = str(folder), _filesystem(folder)
    print(f"Tile I/O benchmark on {common.describe_machine(info)}")
    print(f"folder {folder} ({info['filesystem']}), best of >= {args.repeat} runs per operation")
    try:
        rows = [_measure(folder, size_mb, args.repeat) for size_mb in args.sizes_mb]
        if args.matmul_n:
            info.update(_matmul(folder, args.matmul_n))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print()
    common.print_table(rows, COLUMNS, title="Tile put/get (LocalStore, codec + CRC32) vs np.save/np.load, "
                                            "same bytes, same folder, 1 thread, MB/s")
    if args.matmul_n:
        print(f"\n{args.matmul_n}x{args.matmul_n} @ {args.matmul_n}x{args.matmul_n}, 1 BLAS thread: "
              f"{info['matmul_gflops_tiles']} GFLOPS on decoded tiles, "
              f"{info['matmul_gflops_np_load']} on np.load arrays (tile body 64-byte aligned: "
              f"{info['tile_body_aligned_64']})")
    paths = [common.write_csv(NAME, rows, info, args.out)]
    if not args.no_plot:
        paths.append(_plot(rows, args))
    common.report_paths(paths)
    return 0


COLUMNS = [("size_mb", "MB", ""), ("tile_put_mb_s", "tile put", ".0f"), ("np_save_mb_s", "np.save", ".0f"),
           ("put_ratio", "put/save", ".2f"), ("encode_share", "CRC share", ".0%"), ("tile_get_mb_s", "tile get", ".0f"),
           ("np_load_mb_s", "np.load", ".0f"), ("get_ratio", "get/load", ".2f"), ("runs", "runs", "")]


def _measure(folder: Path, size_mb: int, repeat: int) -> dict:
    from numpywren import BigMatrix
    from numpywren import tile as codec

    x = np.random.default_rng(size_mb).standard_normal((size_mb * MB // 8 // 1024, 1024))
    A = BigMatrix.create(x.shape, x.shape, x.dtype, str(folder / "store"), key=f"t{size_mb}")
    npy = folder / f"t{size_mb}.npy"
    runs = max(repeat, 256 // size_mb)
    # Every write makes a new file, removed untimed afterwards: tiles are written once under a
    # fresh key. (Replacing a file that is still being written back makes ext4 wait for the disk.)
    put, save, encode = _best(runs, (lambda: A.put_block(0, 0, x), lambda: A.store.delete(A.tile_key(0, 0))),
                              (lambda: np.save(npy, x), npy.unlink), (lambda: codec.encode(x), None))
    A.put_block(0, 0, x)
    np.save(npy, x)
    get, load = _best(runs, (lambda: A.get_block(0, 0), None), (lambda: np.load(npy), None))
    if not (np.array_equal(A.get_block(0, 0), x) and np.array_equal(np.load(npy), x)):
        raise AssertionError(f"{size_mb} MB: a round trip changed the data")
    A.delete()
    npy.unlink()
    row = {"size_mb": size_mb, "runs": runs,
           "tile_put_mb_s": size_mb / put, "np_save_mb_s": size_mb / save, "put_ratio": save / put,
           "encode_share": encode / put,
           "tile_get_mb_s": size_mb / get, "np_load_mb_s": size_mb / load, "get_ratio": load / get,
           "tile_put_ms": put * 1e3, "encode_ms": encode * 1e3, "np_save_ms": save * 1e3, "tile_get_ms": get * 1e3, "np_load_ms": load * 1e3}
    print(f"  {size_mb} MB: put {row['tile_put_mb_s']:.0f} vs save {row['np_save_mb_s']:.0f} MB/s, "
          f"get {row['tile_get_mb_s']:.0f} vs load {row['np_load_mb_s']:.0f} MB/s", flush=True)
    return row


def _best(runs: int, *contenders) -> list[float]:
    """Best time of each ``(fn, after)`` contender over ``runs`` rounds, taking turns.

    Taking turns spreads any change in the machine's load evenly over the
    contenders; ``after()`` (if any) runs untimed after each call.
    """
    best = [float("inf")] * len(contenders)
    for _ in range(runs):
        for n, (fn, after) in enumerate(contenders):
            start = time.perf_counter()
            result = fn()
            best[n] = min(best[n], time.perf_counter() - start)
            del result  # a mapped tile is unmapped before the next call
            if after is not None:
                after()
    return best


def _matmul(folder: Path, n: int) -> dict:
    """GFLOPS of one tile product, on decoded tiles and on np.load arrays (1 BLAS thread)."""
    from threadpoolctl import threadpool_limits

    from numpywren import BigMatrix

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n)), rng.standard_normal((n, n))
    A = BigMatrix.from_numpy(a, n, str(folder / "store"), key="mm/A")
    B = BigMatrix.from_numpy(b, n, str(folder / "store"), key="mm/B")
    np.save(folder / "a.npy", a)
    np.save(folder / "b.npy", b)
    tiles = A.get_block(0, 0), B.get_block(0, 0)
    loaded = np.load(folder / "a.npy"), np.load(folder / "b.npy")
    with threadpool_limits(1, "blas"):
        np.matmul(*loaded)  # warm-up: BLAS allocates its buffers on the first call
        on_tiles, on_loaded = _best(3, (lambda: np.matmul(*tiles), None), (lambda: np.matmul(*loaded), None))
    return {"matmul_n": str(n),
            "matmul_gflops_tiles": f"{2 * n ** 3 / on_tiles / 1e9:.1f}",
            "matmul_gflops_np_load": f"{2 * n ** 3 / on_loaded / 1e9:.1f}",
            "tile_body_aligned_64": str(tiles[0].ctypes.data % 64 == 0)}


def _filesystem(path: Path) -> str:
    """The type of the filesystem holding ``path`` (longest mount point that contains it)."""
    try:
        with open("/proc/mounts") as f:
            mounts = [line.split()[1:3] for line in f]
    except OSError:
        return "unknown"
    real = os.path.realpath(path)
    best = max((m for m in mounts if real == m[0] or real.startswith(m[0].rstrip("/") + "/")),
               key=lambda m: len(m[0]), default=None)
    return best[1] if best else "unknown"


def _plot(rows: list[dict], args):
    plt = common.pyplot()
    if plt is None:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8), sharey=False)
    sizes = [r["size_mb"] for r in rows]
    x = np.arange(len(sizes))
    for ax, (op, tile_key, np_key, np_label) in zip(axes, (("write", "tile_put_mb_s", "np_save_mb_s", "np.save"),
                                                             ("read", "tile_get_mb_s", "np_load_mb_s", "np.load"))):
        ax.bar(x - 0.2, [r[tile_key] for r in rows], 0.4, label=f"tile {'put' if op == 'write' else 'get'}")
        ax.bar(x + 0.2, [r[np_key] for r in rows], 0.4, label=np_label)
        ax.set_xticks(x, [str(s) for s in sizes])
        ax.set_xlabel("tile size (MB)")
        ax.set_ylabel("MB/s")
        ax.set_title(f"{op} (LocalStore vs {np_label})")
        ax.legend(fontsize=8)
    return common.save_figure(fig, NAME, args.out)


if __name__ == "__main__":
    sys.exit(main())
