"""Calibration for the cloud simulator (numpywren/sim_params.py): tile kernel rates and a job's fixed costs.

Nothing here is one of the runs the simulator is validated against
(benchmarks.gemm, benchmarks.linalg at N=8192): these are the separate,
small measurements its ``local`` parameters come from.

* **kernels**: GFLOPS per core of each tile kernel numpywren's workers call
  (blocks.gemm / blocks.cholesky, 1 BLAS thread) at tile sizes 512 ... 4096,
  alone and with two processes running it at once (what two local workers
  do); best of ``--repeat`` timings, each about ``--seconds`` long, in
  each of ``--rounds`` passes (the best pass is kept: load from other
  processes only ever slows a kernel down).
* **job**: a one-tile job (a 64 x 64 matmul: one task) and a job of many
  trivial tasks on a LocalExecutor with 2 workers, best of ``--repeat``:
  the job's wall time, split into the scheduler's part (what the benchmarks
  report as ``seconds``) and the jobs layer's setup and teardown around it;
  the per-task cost is the slope between the two jobs. The driver's store
  requests of each phase are counted too (a counting LocalStore): on S3 each
  is a round trip, so the simulator prices the fixed cost of a Lambda job
  as these counts x the request latency.
* **interpreter**: a new Python process importing numpy, scipy.linalg and
  boto3, the per-call start-up of PyWren 2017's jobrunner (the
  ``numpywren-2017`` profile; a stand-in measured on this machine).

    python -m benchmarks.sim_calibrate [--repeat 3] [--seconds 0.3] [--rounds 1] [--tiny]
"""
from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from benchmarks import common

KERNEL_TILES = (512, 1024, 2048, 4096)
CHOL_TILES = (512, 1024, 2048)   # the Cholesky kernels: the tiles benchmarks.linalg runs, and one more


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repeat", type=int, default=3, help="timings per case; the best is kept")
    parser.add_argument("--seconds", type=float, default=0.3, help="about how long one timing runs")
    parser.add_argument("--rounds", type=int, default=1,
                        help="passes over all kernel cases, --pause seconds apart; the best of all is kept "
                             "(on a shared machine, a pass can catch a busy moment)")
    parser.add_argument("--pause", type=float, default=30.0, help="seconds between rounds")
    parser.add_argument("--no-kernels", action="store_true", help="skip the kernel rates")
    parser.add_argument("--no-job", action="store_true", help="skip the job fixed costs")
    common.add_common_arguments(parser)


# -- kernels ---------------------------------------------------------------------------------------
def _kernel_case(name: str, t: int, rng):
    """(flops, a function running the kernel once on fresh inputs) for tile kernel ``name`` at tile t."""
    from blocks import cholesky as chol
    from blocks.gemm import gemm_accumulate

    a, b = rng.standard_normal((t, t)), rng.standard_normal((t, t))
    spd = a @ a.T / t + np.eye(t) * 2
    low = np.linalg.cholesky(spd)
    if name == "gemm":     # a gemm task's inner loop: 2 products accumulated (numpywren.worker.tasks.gemm_tile)
        return 4.0 * t ** 3, lambda: gemm_accumulate([(a, b), (b, a)], dtype=a.dtype)
    if name == "syrk":     # Cholesky's update of a diagonal tile: c -= p p^T
        return float(t) ** 3, lambda: chol.syrk_update(spd.copy(), a)
    if name == "gemm_update":  # Cholesky's update of a panel tile: c -= a b^T
        return 2.0 * t ** 3, lambda: chol.gemm_update(a.copy(), a, b)
    if name == "potrf":
        return t ** 3 / 3.0, lambda: chol.potrf_lower(spd.copy())
    if name == "trsm":     # the panel solve: c <- c L^-T
        return float(t) ** 3, lambda: chol.trsm_right_lower_t(a.copy(), low)
    raise ValueError(name)


def _time_kernel(args) -> float:
    """Best GFLOPS of ``repeat`` timings of a kernel (in a worker process limited to 1 BLAS thread);
    the copy of an input a kernel overwrites is timed separately and subtracted."""
    name, t, repeat, seconds = args
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        flops, run = _kernel_case(name, t, np.random.default_rng(t))
        run()  # warm up
        start = time.perf_counter()
        run()
        once = max(time.perf_counter() - start, 1e-6)
        calls = max(1, int(seconds / once))
        src = np.ones((t, t))
        best = float("inf")
        for _ in range(repeat):
            start = time.perf_counter()
            for _ in range(calls):
                run()
            took = (time.perf_counter() - start) / calls
            if name not in ("gemm",):   # every other case copies one t x t input first
                start = time.perf_counter()
                for _ in range(calls):
                    src.copy()
                took -= (time.perf_counter() - start) / calls
            best = min(best, took)
    return flops / best / 1e9


def kernel_rows(tiles_gemm, tiles_chol, repeat: int, seconds: float, rounds: int = 1,
                pause: float = 0.0) -> list[dict]:
    cases = [("gemm", t) for t in tiles_gemm] + [(k, t) for t in tiles_chol
                                                 for k in ("syrk", "gemm_update", "potrf", "trsm")]
    best: dict = {}
    ctx = multiprocessing.get_context("spawn")
    env = {v: "1" for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    with _environ(env), ctx.Pool(2) as pool:
        for r in range(rounds):
            if r:
                time.sleep(pause)
            for name, t in cases:
                alone = pool.apply(_time_kernel, ((name, t, repeat, seconds),))
                both = min(pool.map(_time_kernel, [(name, t, repeat, seconds)] * 2))  # two at once, as two workers
                print(f"  round {r + 1}: {name:12s} tile {t:5d}: {alone:6.1f} GFLOPS alone, {both:6.1f} each of "
                      "two at once", flush=True)
                old = best.get((name, t), (0.0, 0.0))
                best[(name, t)] = (max(old[0], alone), max(old[1], both))
    return [{"kind": "kernel", "case": name, "tile": t, "gflops_per_core_alone": best[name, t][0],
             "gflops_per_core_two_at_once": best[name, t][1], "rounds": rounds, "repeat": repeat}
            for name, t in cases]


@contextlib.contextmanager
def _environ(env: dict):
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# -- job fixed costs -------------------------------------------------------------------------------
def counting_store(root: str):
    """A LocalStore that counts the driver's requests (each call is one request on S3; delete_prefix two)."""
    from numpywren.storage import LocalStore

    class Counting(LocalStore):
        count = 0

    for method in ("get", "get_buffer", "get_head", "put", "put_if_absent", "exists", "delete", "list",
                   "list_after", "list_info", "delete_many", "delete_prefix"):
        def counted(self, *a, _name=method, **k):
            type(self).count += 2 if _name == "delete_prefix" else 1  # on S3: a LIST, then a batch DELETE
            return getattr(LocalStore, _name)(self, *a, **k)
        setattr(Counting, method, counted)
    return Counting(root)


def _one_job(store, ex, n: int, tile: int) -> dict:
    """Run one matmul job: its wall time split into the jobs layer's setup (before the scheduler), the
    scheduler's run and the teardown after it, with the driver's store requests in each phase."""
    import numpywren
    from numpywren import jobs

    A = numpywren.BigMatrix.from_numpy(np.ones((n, n)), tile, store, f"cal-{n}-{tile}/A")
    real_run = jobs.scheduler.run
    marks = {}

    def scheduler_run(*args, **kwargs):
        marks["began"], marks["before"] = time.perf_counter(), type(store).count
        try:
            return real_run(*args, **kwargs)
        finally:
            marks["ended"], marks["after"] = time.perf_counter(), type(store).count
    jobs.scheduler.run = scheduler_run
    try:
        start_count = type(store).count
        start = time.perf_counter()
        C = numpywren.matmul(A, A, out=f"cal-{n}-{tile}/C", executor=ex, progress=False)
        end = time.perf_counter()
        end_count = type(store).count
    finally:
        jobs.scheduler.run = real_run
    if not np.array_equal(C.to_numpy(), np.full((n, n), float(n))):
        raise AssertionError("the calibration job computed a wrong product")
    row = {"tasks": C.report.tasks, "job_s": end - start, "setup_s": marks["began"] - start,
           "scheduler_s": C.report.wall_seconds, "teardown_s": end - marks["ended"],
           "setup_requests": marks["before"] - start_count,
           "scheduler_requests": marks["after"] - marks["before"],
           "teardown_requests": end_count - marks["after"], "output_tiles": len(C.stored_blocks())}
    C.delete()
    A.delete()
    return row


def job_rows(repeat: int, tiny: bool) -> list[dict]:
    """A one-task job and a job of g^2 trivial tasks (64 x 64 tiles), best of ``repeat`` each."""
    from numpywren import LocalExecutor

    grid = 4 if tiny else 8
    rows = []
    with tempfile.TemporaryDirectory(prefix="numpywren-cal-") as root:
        store = counting_store(root)
        ex = LocalExecutor(2, store)
        try:
            common.warm_up(ex)
            for n, tile in ((64, 64), (64 * grid, 64)):
                runs = [_one_job(store, ex, n, tile) for _ in range(repeat + 1)][1:]  # the first one warms up
                best = {**runs[0], **{k: min(r[k] for r in runs)
                                      for k in ("job_s", "setup_s", "scheduler_s", "teardown_s")}}
                rows.append({"kind": "job", "case": f"matmul {n}^2, tile {tile}", "tile": tile, **best})
                print(f"  job of {best['tasks']} tasks: {best['job_s'] * 1e3:.1f} ms = setup "
                      f"{best['setup_s'] * 1e3:.1f} + scheduler {best['scheduler_s'] * 1e3:.1f} + teardown "
                      f"{best['teardown_s'] * 1e3:.1f} ms (best of {repeat} each); driver requests "
                      f"{best['setup_requests']} + {best['scheduler_requests']} + {best['teardown_requests']}",
                      flush=True)
        finally:
            ex.shutdown()
    one, many = rows
    per_task = (many["scheduler_s"] - one["scheduler_s"]) * 2 / (many["tasks"] - one["tasks"])
    rows.append({"kind": "per_task", "case": "scheduler seconds per extra task x 2 workers", "tile": 64,
                 "tasks": many["tasks"], "per_task_s": per_task, "tile_reads_per_task": 2 * grid,
                 "driver_requests_per_task": (many["scheduler_requests"] - one["scheduler_requests"])
                 / (many["tasks"] - one["tasks"])})
    print(f"  per task (slope x 2 workers): {per_task * 1e3:.2f} ms", flush=True)
    return rows


def interpreter_row(repeat: int) -> dict:
    """A new Python process importing what a 2017 PyWren jobrunner imported to run numpywren's gemm
    (numpy, scipy.linalg, boto3): the per-call start-up of that system, measured here as a stand-in."""
    code = "import numpy, scipy.linalg, boto3"
    best = float("inf")
    for _ in range(repeat + 1):  # the first run fills the page cache
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        best = min(best, time.perf_counter() - start)
    print(f"  new interpreter + {code!r}: {best * 1e3:.0f} ms (best of {repeat})", flush=True)
    return {"kind": "interpreter", "case": code, "seconds": best}


def main(argv=None) -> int:
    args = common.parse_args("sim_calibrate", __doc__, add_arguments, argv)
    info = common.machine_info()
    print(common.describe_machine(info))
    rows = []
    if not args.no_kernels:
        gemm_tiles, chol_tiles = ((128, 256), (128,)) if args.tiny else (KERNEL_TILES, CHOL_TILES)
        rows += kernel_rows(gemm_tiles, chol_tiles, 1 if args.tiny else args.repeat,
                            0.02 if args.tiny else args.seconds, 1 if args.tiny else args.rounds, args.pause)
    if not args.no_job:
        rows += job_rows(1 if args.tiny else max(args.repeat, 5), args.tiny)
        rows.append(interpreter_row(1 if args.tiny else max(args.repeat, 5)))
    common.report_paths([common.write_csv("sim_calibrate", rows, info, args.out)])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
