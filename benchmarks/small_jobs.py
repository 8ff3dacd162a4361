"""Small and medium jobs side by side with numpy: GEMM N=2048 / 4096 and the reductions sum, mean, max, norm.

``python -m benchmarks.small_jobs [--cases gemm2048,gemm4096,sum,mean,max,norm] [--rounds 5] [--workers 2]``

One warm ``LocalExecutor`` (``--workers`` x 1 BLAS thread, a LocalStore in a temporary folder) serves every job,
as in a session that runs several; the inputs are written before any clock starts. Each round times numpy
(``threadpool_limits(workers)`` BLAS threads, in memory) and then numpywren on the same case, so both see the
same load; the table shows medians over the rounds and ``x numpy`` = numpy's median seconds / numpywren's.
Every numpywren result is checked against numpy's (relative error). The CPU columns (Linux) are the mean CPU
milliseconds per job of numpy's process, and of numpywren's driver and worker processes together: the work
done, which a loaded machine inflates far less than the wall time; ``driver CPU`` is the part of it spent in this
process (the driver: planning, job record, dispatch, verification), the rest is the workers'.

After each numpy call the benchmark waits until numpy's BLAS threads are parked (``--settle``, on by default):
OpenBLAS keeps its idle threads spinning for a while after a call (``OPENBLAS_THREAD_TIMEOUT``; 50-100 ms of
CPU here after a 2-thread dot or GEMM), which otherwise takes a core from numpywren's workers during the next
job and counts in numpywren's CPU column (benchmarks/README.md "Small jobs, part 3").
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np

#: case -> (N, tile); GEMM with the tile of the issue's table, reductions of a 16-tile matrix
CASES = {"gemm2048": (2048, 1024), "gemm4096": (4096, 2048), "sum": (8192, 2048), "mean": (8192, 2048),
         "max": (8192, 2048), "norm": (8192, 2048)}


def _case(name: str, store, executor, workers: int, rng):
    """(numpy function, numpywren function, error function, what) for one case; inputs stored already."""
    import numpywren
    from threadpoolctl import threadpool_limits

    n, tile = CASES[name]
    a = rng.standard_normal((n, n))
    A = numpywren.BigMatrix.from_numpy(a, tile, store, f"{name}/A", overwrite=True)
    if name.startswith("gemm"):
        b = rng.standard_normal((n, n))
        B = numpywren.BigMatrix.from_numpy(b, tile, store, f"{name}/B", overwrite=True)

        def peer():
            with threadpool_limits(workers):
                return a @ b

        def ours():
            return numpywren.matmul(A, B, out=f"{name}/C", executor=executor, progress=False)

        def error(c, ref):
            return float(np.linalg.norm(c.to_numpy() - ref) / np.linalg.norm(ref))
        return peer, ours, error, f"N={n} tile {tile}"

    def peer():
        return np.linalg.norm(a) if name == "norm" else getattr(a, name)()

    def ours():
        return getattr(A, name)(executor=executor, progress=False)

    def error(value, ref):
        return abs(float(value) - float(ref)) / max(abs(float(ref)), np.finfo(float).tiny)
    return peer, ours, error, f"N={n} tile {tile}, {A.grid[0] * A.grid[1]} tiles"


def tree_cpu_seconds() -> float:
    """CPU seconds used so far by this process and its live child processes (the local workers), from /proc;
    0.0 where there is no /proc."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    total, me = 0.0, os.getpid()
    try:
        names = os.listdir("/proc")
    except OSError:
        return 0.0
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            continue
        if int(name) == me or int(fields[1]) == me:   # fields[1]: the parent's pid
            total += (int(fields[11]) + int(fields[12])) / tick   # utime + stime
    return total


def settle(limit: float = 2.0, quiet_ms: float = 1.0) -> float:
    """Wait until this process stops using CPU (its BLAS threads parked), at most ``limit`` seconds; the
    seconds waited. A 50 ms window with under ``quiet_ms`` of this process's CPU counts as parked."""
    start = time.perf_counter()
    while time.perf_counter() - start < limit:
        cpu = time.process_time()
        time.sleep(0.05)
        if (time.process_time() - cpu) * 1e3 < quiet_ms:
            break
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.small_jobs", description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-settle", dest="settle", action="store_false",
                        help="start numpywren's job right after numpy's call (its BLAS threads still spinning)")
    args = parser.parse_args(argv)
    import numpywren
    from numpywren.storage import open_store

    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = set(cases) - set(CASES)
    if unknown:
        parser.error(f"unknown cases {sorted(unknown)} (known: {', '.join(CASES)})")
    rng = np.random.default_rng(0)
    print(f"numpywren {numpywren.__file__}; load average at start {os.getloadavg()[0]:.2f}; "
          f"{args.workers} workers x 1 BLAS thread vs numpy in memory; median of {args.rounds} rounds; "
          f"settle {'on' if args.settle else 'off'}")
    print(f"{'case':<10}{'size':<30}{'numpy ms':>10}{'numpywren ms':>14}{'x numpy':>9}{'rel err':>10}"
          f"{'numpy CPU':>11}{'numpywren CPU':>15}{'driver CPU':>12}")
    with tempfile.TemporaryDirectory() as root:
        store = open_store(root)
        with numpywren.LocalExecutor(args.workers, store, blas_threads=1) as executor:
            for name in cases:
                peer, ours, error, what = _case(name, store, executor, args.workers, rng)
                ref = peer()
                err = error(ours(), ref)  # warm-up round, checked
                peer_s, ours_s, peer_cpu, ours_cpu, driver_cpu = [], [], 0.0, 0.0, 0.0
                for _ in range(args.rounds):
                    cpu, start = time.process_time(), time.perf_counter()
                    peer()
                    peer_s.append(time.perf_counter() - start)
                    peer_cpu += time.process_time() - cpu
                    if args.settle:
                        settle()
                    cpu, own, start = tree_cpu_seconds(), time.process_time(), time.perf_counter()
                    ours()
                    ours_s.append(time.perf_counter() - start)
                    driver_cpu += time.process_time() - own
                    ours_cpu += tree_cpu_seconds() - cpu
                p, o = statistics.median(peer_s), statistics.median(ours_s)
                print(f"{name:<10}{what:<30}{p * 1e3:10.1f}{o * 1e3:14.1f}{p / o:9.2f}{err:10.1e}"
                      f"{peer_cpu / args.rounds * 1e3:11.0f}{ours_cpu / args.rounds * 1e3:15.0f}"
                      f"{driver_cpu / args.rounds * 1e3:12.0f}", flush=True)
    print(f"load average at end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
