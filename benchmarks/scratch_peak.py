"""Peak scratch of a run in the local store: what the plan writes, what it says it holds at once, what it held.

For each operation (singular values, LU, QR with Q) of a random N x N matrix: the plan's scratch written
(``scratch_bytes_written``) and planned peak (``scratch_peak_bytes``: each tile freed after its last
reader, numpywren.scratch), the run's own count (``Report.scratch_peak_bytes``: accepted tiles not yet
freed) and the bytes measured on disk under ``jobs/<run>/scratch/`` every ``--every`` seconds (the files,
headers included). Runs on any tree (a tree without the plan's peak prints "-" for it), so
``git archive main`` gives the before: there the measured peak is the scratch written.

    python -m benchmarks.scratch_peak [--n 8192] [--tile 1024] [--ops svdvals,lu,qr]
"""
from __future__ import annotations

import argparse
import os
import threading
import time

import numpy as np

from benchmarks import common
from benchmarks.machine_load import LoadSampler

NAME = "scratch_peak"
OPS = ("svdvals", "lu", "qr")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=int, default=8192, help="matrix size N (default 8192)")
    parser.add_argument("--tile", type=int, default=1024, help="tile size (default 1024)")
    parser.add_argument("--ops", default=",".join(OPS), help=f"comma-separated, of {', '.join(OPS)}")
    parser.add_argument("--workers", type=int, default=2, help="local workers, 1 BLAS thread each (default 2)")
    parser.add_argument("--every", type=float, default=0.2, help="seconds between two disk measurements")
    common.add_common_arguments(parser)


class DiskSampler:
    """The most bytes of files under ``<root>/jobs/*/scratch/`` seen at once, sampled every ``every`` s."""

    def __init__(self, root, every: float):
        self.root, self.every, self.peak = os.path.join(str(root), "jobs"), every, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="scratch-disk", daemon=True)

    def _size(self) -> int:
        total = 0
        stack = [os.path.join(self.root, run, "scratch") for run in _listdir(self.root)]
        while stack:
            folder = stack.pop()
            for entry in _scandir(folder):
                try:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    else:
                        total += entry.stat(follow_symlinks=False).st_size
                except OSError:   # deleted while we looked
                    pass
        return total

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self.peak = max(self.peak, self._size())

    def __enter__(self) -> "DiskSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _listdir(folder) -> list[str]:
    try:
        return os.listdir(folder)
    except OSError:
        return []


def _scandir(folder):
    try:
        return list(os.scandir(folder))
    except OSError:
        return []


def build(op: str, A, workers: int):
    import numpywren

    if op == "svdvals":
        return numpywren.svd(A, compute_uv=False, compute=False, workers=workers)
    if op == "lu":
        return numpywren.lu_factor(A, compute=False, workers=workers)
    return numpywren.qr(A, compute=False, workers=workers)


def measure(op: str, n: int, tile: int, workers: int, every: float) -> dict:
    import numpywren
    from numpywren import BigMatrix, LocalExecutor

    with common.scratch_store(None, NAME) as store, LocalExecutor(workers, store) as ex, numpywren.using(ex):
        common.warm_up(ex)
        a = np.random.default_rng(0).standard_normal((n, n))
        A = BigMatrix.from_numpy(a, tile, store, "A")
        plan = build(op, A, workers)
        stats = plan.stats()
        with DiskSampler(store.root, every) as disk:
            began = time.perf_counter()
            report = numpywren.run(plan, ex, progress=False)
            seconds = time.perf_counter() - began
        if op == "svdvals":   # the check: the values against numpy's
            s = np.asarray(plan.value)
            error = float(np.max(np.abs(s - np.linalg.svd(a, compute_uv=False))) / s[0]) if n <= 2048 else None
        else:
            error = None
    planned = stats.get("scratch_peak_bytes")
    held = getattr(report, "scratch_peak_bytes", None)
    return {"op": op, "n": n, "tile": tile, "tasks": stats["tasks"], "seconds": seconds,
            "scratch_written_mb": stats["scratch_bytes_written"] / 1e6,
            "planned_peak_mb": planned / 1e6 if planned is not None else None,
            "report_peak_mb": held / 1e6 if held is not None else None,
            "disk_peak_mb": disk.peak / 1e6, "svdvals_error": error}


def main(argv: list[str] | None = None) -> int:
    args = common.parse_args(NAME, __doc__, add_arguments, argv)
    if args.tiny:
        args.n, args.tile = 256, 64
    ops = [op.strip() for op in args.ops.split(",") if op.strip()]
    bad = [op for op in ops if op not in OPS]
    if bad:
        raise SystemExit(f"scratch_peak: unknown ops {bad} (use {', '.join(OPS)})")
    rows = []
    with LoadSampler(10) as load:
        for op in ops:
            rows.append(measure(op, args.n, args.tile, args.workers, args.every))
            print(f"  {op}: {rows[-1]} ({load.describe()})", flush=True)
    info = common.machine_info()
    info["load_average"] = load.describe()
    columns = [("op", "op", "s"), ("tasks", "tasks", "d"), ("seconds", "s", ".1f"),
               ("scratch_written_mb", "written MB", ".1f"), ("planned_peak_mb", "planned peak MB", ".1f"),
               ("report_peak_mb", "run's peak MB", ".1f"), ("disk_peak_mb", "disk peak MB", ".1f")]
    common.print_table(rows, columns,
                       title=f"scratch, N={args.n} tile {args.tile}, {args.workers} workers ({load.describe()})")
    common.report_paths([common.write_csv(NAME, rows, info, args.out)])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
