"""Store throughput seen by workers: per-worker and aggregate write and read MB/s by object size.

Each of ``--workers`` workers (one ``executor.map`` call each, all running at
once) writes ``--mb-per-worker`` of objects of one size with ``store.put``,
then, in a second map, reads them back with ``store.get``. Raw store objects,
no tile codec: this is the store's speed, not numpywren's tile format.

* per worker MB/s: bytes a worker moved / the seconds its own loop took (mean over workers);
* aggregate MB/s: all bytes / (last worker's end - first worker's start) on the wall clock.

Workers prepare their buffer before a common start time so that they really
overlap. With a LocalStore the reads are page-cache hits (the objects were
just written), so they measure memory copies and the filesystem, not a disk.
``--store s3://bucket/prefix?endpoint=http://host:port`` measures an S3
endpoint instead (results in ``io_s3.csv``/``.png``). Run with ``python -m benchmarks.io`` or ``numpywren bench io``.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
import uuid

from benchmarks import common

START_DELAY = 0.5  # seconds between dispatch and the common start time


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes-mb", type=common.int_list, default=[1, 4, 16, 64, 256],
                        help="object sizes in MB (default 1,4,16,64,256)")
    parser.add_argument("--workers", type=int, default=2, help="concurrent workers (default 2)")
    parser.add_argument("--mb-per-worker", type=int, default=512,
                        help="MB each worker writes (and reads) per object size, at least one object "
                             "(default 512)")
    parser.add_argument("--store", default=None,
                        help="store URL, e.g. s3://bucket/prefix?endpoint=http://127.0.0.1:9000 "
                             "(default: a temporary local folder)")
    common.add_common_arguments(parser)


def main(argv: list[str] | None = None) -> int:
    return run(common.parse_args("io", __doc__, add_arguments, argv))


def run(args: argparse.Namespace) -> int:
    from numpywren import LocalExecutor

    if args.tiny:
        args.sizes_mb, args.mb_per_worker = [1, 2], 4
    if args.workers < 1 or args.mb_per_worker < 1:
        raise SystemExit("--workers and --mb-per-worker must be at least 1")
    info = common.machine_info()
    rows = []
    with common.scratch_store(args.store, "io") as store, LocalExecutor(args.workers, store) as ex:
        print(f"Store I/O benchmark on {common.describe_machine(info)}")
        print(f"store {store.url}, {args.workers} workers, {args.mb_per_worker} MB per worker per size")
        info["store"] = store.url
        common.warm_up(ex)
        for size_mb in args.sizes_mb:
            rows.append(_measure(ex, store, size_mb, args))
            r = rows[-1]
            print(f"  {size_mb} MB objects: write {r['write_mb_s_aggregate']:.0f} MB/s, "
                  f"read {r['read_mb_s_aggregate']:.0f} MB/s (aggregate)", flush=True)
    print()
    common.print_table(rows, COLUMNS, title=f"Store throughput, {args.workers} workers "
                                            "(per worker: mean of each worker's own rate; "
                                            "aggregate: all bytes / wall time of the overlap)")
    info["workers"] = str(args.workers)
    name = result_name(info["store"])
    paths = [common.write_csv(name, rows, info, args.out)]
    if not args.no_plot:
        paths.append(_plot(rows, args, name, store_label=info["store"]))
    common.report_paths(paths)
    return 0


def result_name(store_url: str) -> str:
    """io.csv for a LocalStore, io_s3.csv for an S3 endpoint (so one run does not replace the other)."""
    scheme = store_url.split(":", 1)[0]
    return "io" if scheme == "file" else f"io_{scheme}"


def _measure(ex, store, size_mb: int, args) -> dict:
    size = size_mb * 1_000_000
    count = max(1, math.ceil(args.mb_per_worker / size_mb))
    prefix = f"bench-io-{uuid.uuid4().hex[:8]}"
    try:
        row = {"size_mb": size_mb, "workers": args.workers, "objects_per_worker": count}
        for op in ("write", "read"):
            items = [(store.url, f"{prefix}/w{w}") for w in range(args.workers)]
            start_at = time.time() + START_DELAY
            stats = ex.get_all_results(ex.map(_transfer, items, extra_args=(op, size, count, start_at)))
            ex.cleanup()
            moved = sum(s["bytes"] for s in stats)
            window = max(s["end"] for s in stats) - min(s["start"] for s in stats)
            rates = [s["bytes"] / s["seconds"] / 1e6 for s in stats]
            row.update({f"{op}_mb_s_per_worker": sum(rates) / len(rates), f"{op}_mb_s_min_worker": min(rates),
                        f"{op}_mb_s_aggregate": moved / window / 1e6, f"{op}_mb": moved / 1e6})
        return row
    finally:
        store.delete_prefix(f"{prefix}/")


def _transfer(item, op: str, size: int, count: int, start_at: float) -> dict:
    """Worker side: write or read ``count`` objects of ``size`` bytes under the item's prefix."""
    import numpy as np

    from numpywren.storage import open_store

    store_url, prefix = item
    store = open_store(store_url)
    keys = [f"{prefix}/{i:05d}" for i in range(count)]
    payload = None
    if op == "write":  # a non-constant pattern, made before the clock starts
        payload = memoryview((np.arange(size // 8 + 1, dtype=np.uint64) * 0x9E3779B97F4A7C15)).cast("B")[:size]
    time.sleep(max(0.0, start_at - time.time()))
    start, moved = time.time(), 0
    for key in keys:
        if op == "write":
            store.put(key, payload)
            moved += size
        else:
            moved += len(store.get(key))
    end = time.time()
    return {"bytes": moved, "start": start, "end": end, "seconds": end - start}


COLUMNS = [("size_mb", "object MB", ""), ("objects_per_worker", "objects/worker", ""),
           ("write_mb_s_per_worker", "write MB/s/worker", ".0f"), ("write_mb_s_aggregate", "write MB/s total", ".0f"),
           ("read_mb_s_per_worker", "read MB/s/worker", ".0f"), ("read_mb_s_aggregate", "read MB/s total", ".0f")]


def _plot(rows: list[dict], args, name: str, store_label: str):
    plt = common.pyplot()
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.2))
    sizes = [r["size_mb"] for r in rows]
    for op, color in (("write", "tab:red"), ("read", "tab:blue")):
        ax.plot(sizes, [r[f"{op}_mb_s_aggregate"] for r in rows], "-o", color=color,
                label=f"{op}, aggregate ({args.workers} workers)")
        ax.plot(sizes, [r[f"{op}_mb_s_per_worker"] for r in rows], "--s", color=color, label=f"{op}, per worker")
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes, [str(s) for s in sizes])
    ax.set_ylim(bottom=0)
    ax.set_xlabel("object size (MB)")
    ax.set_ylabel("MB/s")
    scheme = store_label.split(":", 1)[0]
    ax.set_title(f"store throughput ({'S3 endpoint' if scheme == 's3' else 'LocalStore'})")
    ax.legend(fontsize=8)
    return common.save_figure(fig, name, args.out)


if __name__ == "__main__":
    sys.exit(main())
