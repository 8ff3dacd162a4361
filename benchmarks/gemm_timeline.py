"""A small GEMM's time, task by task, and its tile: numpy vs numpywren per tile, then each task's timeline.

``python -m benchmarks.gemm_timeline [--n 2048] [--tiles 512,1024] [--rounds 7] [--jobs 5] [--workers 2]``

One warm ``LocalExecutor`` (``--workers`` x 1 BLAS thread, a LocalStore in a temporary folder). First, rounds
alternating numpy (``--workers`` BLAS threads, in memory) and numpywren with each tile of ``--tiles``: medians,
``x numpy`` and numpywren's CPU ms per job (driver and workers, benchmarks.small_jobs.tree_cpu_seconds). Then
``--jobs`` jobs with the tile ``numpywren.tiling.choose_tile`` picks, each as one line: when the first task
started and the last ended (ms from the job's start, so the driver's part before and after is the rest), and
per task its worker (pid), start-end, read, kernel and write ms (``Report.timeline()``).
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gemm_timeline", description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2048)
    parser.add_argument("--tiles", default="512,1024")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--jobs", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    import numpywren
    from threadpoolctl import threadpool_limits

    from benchmarks.small_jobs import settle, tree_cpu_seconds
    from numpywren import jobs, tiling
    from numpywren.storage import open_store

    n, workers = args.n, args.workers
    chosen = tiling.choose_tile((n, n), workers=workers)[0]
    tiles = sorted({int(t) for t in args.tiles.split(",") if t.strip()} | {chosen})
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n)), rng.standard_normal((n, n))
    ref = a @ b
    print(f"GEMM N={n}; {workers} workers x 1 BLAS thread vs numpy with {workers}; choose_tile: {chosen}; "
          f"load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as root:
        store = open_store(root)
        pairs = {t: (numpywren.BigMatrix.from_numpy(a, t, store, f"A{t}"),
                     numpywren.BigMatrix.from_numpy(b, t, store, f"B{t}")) for t in tiles}
        with numpywren.LocalExecutor(workers, store, blas_threads=1) as ex:
            def job(t):
                return numpywren.matmul(*pairs[t], out=f"C{t}", executor=ex, progress=False)

            for t in tiles:   # warm, and checked
                err = np.linalg.norm(job(t).to_numpy() - ref) / np.linalg.norm(ref)
                assert err < 1e-13, f"tile {t}: relative error {err:.1e}"
            peer, ours, cpu = [], {t: [] for t in tiles}, {t: 0.0 for t in tiles}
            for _ in range(args.rounds):
                with threadpool_limits(workers):
                    start = time.perf_counter()
                    a @ b
                    peer.append(time.perf_counter() - start)
                settle()
                for t in tiles:
                    c, start = tree_cpu_seconds(), time.perf_counter()
                    job(t)
                    ours[t].append(time.perf_counter() - start)
                    cpu[t] += tree_cpu_seconds() - c
            p = statistics.median(peer)
            for t in tiles:
                o = statistics.median(ours[t])
                print(f"  tile {t:>5}: numpy {p * 1e3:7.1f} ms, numpywren {o * 1e3:7.1f} ms, {p / o:5.2f}x numpy, "
                      f"CPU per job {cpu[t] / args.rounds * 1e3:5.0f} ms")

            reports, real_run = [], jobs.run

            def capture(plan, *a, **k):
                report = real_run(plan, *a, **k)
                reports.append(report)
                return report
            jobs.run = capture
            try:
                print(f"timelines, tile {chosen} (ms from the job's start; per task: worker start-end, read, "
                      f"kernel, write)")
                for _ in range(args.jobs):
                    t0 = time.time()
                    job(chosen)
                    t1 = time.time()
                    records = reports[-1].timeline()
                    first, last = min(r.start for r in records), max(r.end for r in records)
                    line = (f"  job {(t1 - t0) * 1e3:6.1f}: first start +{(first - t0) * 1e3:5.1f}, last end "
                            f"+{(last - t0) * 1e3:6.1f}, then {(t1 - last) * 1e3:5.1f} |")
                    for r in records:
                        where = r.worker.rpartition(":")[2]
                        line += (f" [{where} {(r.start - t0) * 1e3:5.1f}-{(r.end - t0) * 1e3:5.1f}"
                                 f" r {r.read_seconds * 1e3:4.1f} k {r.compute_seconds * 1e3:5.1f}"
                                 f" w {r.write_seconds * 1e3:4.1f}]")
                    print(line, flush=True)
            finally:
                jobs.run = real_run
    print(f"load average at end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
