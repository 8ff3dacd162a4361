"""``numpywren calibrate``: measure the deployed Lambda function, write a platform profile predictions use.

A short, bounded set of calls on the function the executor names (nothing is created or reconfigured:
no temporary function, no memory change; the calls run at the function's own memory setting):

* invoke latency: the first call (cold, if the function was idle) and ``warm`` more, one after the other:
  from the driver's send to the worker's start (epoch clocks: NTP skew, milliseconds, is included);
* tile-kernel GFLOPS of ``blocks.blas.gemm`` on ``tiles`` (square float64), ``reps`` each, timed by the
  worker (its configured BLAS threads);
* S3 read and write MB/s of one worker (an object of ``io_mb`` MB written, read back, deleted; the
  profile's rates leave out one request's latency, as the simulator adds it per request), and in
  aggregate: ``concurrency`` workers doing the same at once (bytes over the span of their transfers);
* request latency: ``requests`` GETs of a small object, timed one by one by a worker.

Every call stops its own work after ``CALL_SECONDS``, so the cost has a hard ceiling, which is printed
before anything runs (``yes=True`` / ``--yes`` is required to spend it; ``max_cost=`` / ``--max-cost``
refuses a ceiling above it). Objects go under
``jobs/calibrate-<id>/`` of the executor's store and are deleted when calibration ends, on error and on
Ctrl-C (``numpywren store gc`` removes any a killed driver left). The profile (JSON) records the date,
function, region, memory, architecture and runtime with every measurement; ``numpywren predict
--platform FILE`` and ``numpywren.simulate.predict(..., platform=FILE)`` use it
(numpywren.sim_params.load_profile), as does ``max_cost`` when ``executor.platform = FILE``.
"""
from __future__ import annotations

import argparse
import datetime
import json
import logging
import statistics
import time
import uuid
from pathlib import Path

from numpywren import pricing, protocol
from numpywren.budget import BudgetExceededError, add_max_cost

log = logging.getLogger(__name__)

#: the longest any calibration call works (the cost ceiling is calls x this x the function's GB-second price)
CALL_SECONDS = 20.0
TILES = (256, 512, 1024)

#: The clock the worker-side measurements time their work with (seconds, monotonic). On Lambda the
#: sandbox's own; a test's fake sandbox (tests/test_calibrate.py) sets a virtual clock its throttled
#: kernels advance, so what calibration recovers is checked exactly, whatever the machine's load.
clock = time.perf_counter


# -- what the workers run (module-level: cloudpickle sends them by reference) --------------------------
#: The clock of the invoke-latency measurement: epoch seconds, read by the driver at the send and by the
#: worker at its start (the difference is the latency). A test's fake endpoint sets a virtual one that its
#: injected queue delay advances, so the check does not depend on the machine's load.
wall = time.time


def worker_start() -> float:
    """The worker's clock when the call began (the driver subtracts its send time)."""
    return wall()


def kernel_gflops(tile: int, reps: int, limit: float = CALL_SECONDS) -> list[float]:
    """GFLOPS of ``reps`` float64 GEMMs of ``tile`` x ``tile`` through the tile kernels' BLAS."""
    import numpy as np

    from blocks import blas

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((tile, tile)), rng.standard_normal((tile, tile))
    blas.gemm(a, b)  # warm-up: first-touch, thread pool
    out, began = [], clock()
    for _ in range(reps):
        t0 = clock()
        blas.gemm(a, b)
        out.append(2.0 * tile ** 3 / (clock() - t0) / 1e9)
        if clock() - began > limit:
            break
    return out


def store_io(store_url: str, key: str, mb: float) -> dict:
    """Write, read back and delete ``mb`` MB at ``key``: seconds of each, and the epoch span of both."""
    from numpywren.storage import open_store

    store = open_store(store_url)
    if int(mb * 1e6) < 1:
        raise ValueError(f"io_mb={mb} is less than a byte")
    data = bytes(int(mb * 1e6))
    start = time.time()
    t0 = clock()
    store.put(key, data)
    t1 = clock()
    back = store.get(key)
    t2 = clock()
    store.delete(key)
    if len(back) != len(data):
        raise RuntimeError(f"calibration object {key} read back {len(back)} bytes of {len(data)}")
    return {"bytes": len(data), "write_s": t1 - t0, "read_s": t2 - t1, "start": start, "end": time.time()}


def request_latency(store_url: str, key: str, n: int, limit: float = CALL_SECONDS) -> list[float]:
    """Seconds of each of ``n`` GETs of a small object (one after the other)."""
    from numpywren.storage import open_store

    store = open_store(store_url)
    store.put(key, b"x" * 1024)
    out, began = [], clock()
    try:
        for _ in range(n):
            t0 = clock()
            store.get(key)
            out.append(clock() - t0)
            if clock() - began > limit:
                break
    finally:
        store.delete(key)
    return out


# -- the driver ------------------------------------------------------------------------------------------
def plan_calls(tiles=TILES, warm: int = 5, concurrency: int = 4) -> int:
    """Calls a calibration makes: cold + warm invokes, one per tile size, one + ``concurrency`` I/O, one GET run."""
    return 1 + warm + len(tiles) + 1 + concurrency + 1


def cost_ceiling(calls: int, memory_mb: int, arch: str) -> float:
    """The most a calibration can cost: every call billed CALL_SECONDS (plus S3 requests, a few per call)."""
    return pricing.estimate(calls * CALL_SECONDS, calls, puts=2 * calls, gets=100 + 2 * calls,
                            memory_mb=memory_mb, arch=arch).total


def calibrate(executor, *, tiles=TILES, reps: int = 3, warm: int = 5, io_mb: float = 8.0, concurrency: int = 4,
              requests: int = 20, yes: bool = False, out: str | Path | None = None, max_cost: float | None = None,
              log=log.info) -> dict:
    """Measure the executor's Lambda function and return (and write to ``out``) its platform profile.

    Refuses (ValueError) without ``yes=True``, after saying what it would cost at most; refuses
    (numpywren.budget.BudgetExceededError) a ceiling above ``max_cost`` (USD), before anything runs.
    """
    if not tiles or any(t < 1 for t in tiles) or reps < 1 or warm < 1 or io_mb <= 0 or concurrency < 1 or requests < 1:
        raise ValueError("tiles, reps, warm, io_mb, concurrency and requests must be positive")
    price = executor.price_model()
    calls = plan_calls(tiles, warm, concurrency)
    ceiling = cost_ceiling(calls, price.memory_mb, price.arch)
    log(f"calibrate: {calls} calls of Lambda function {executor.function_name!r} ({price.memory_mb} MB "
        f"{price.arch}), each stopping its work after {CALL_SECONDS:g} s: at most ${ceiling:.4f} "
        f"({pricing.REGION} list prices of {pricing.RECORDED}); no function is created or reconfigured")
    if max_cost is not None and ceiling > max_cost:
        raise BudgetExceededError(f"calibration would cost up to ${ceiling:.4f} ({calls} calls), above "
                                  f"max_cost=${max_cost:.4f}: nothing was started (fewer --tiles, --concurrency)")
    if not yes:
        raise ValueError(f"calibration would cost up to ${ceiling:.4f}: pass yes=True (--yes) to run it")
    folder = f"{protocol.JOBS}/calibrate-{uuid.uuid4().hex[:12]}"
    store = executor.store
    try:
        latency = _invoke_latency(executor, warm)
        log(f"invoke: cold {latency['cold_s']:.3f} s, warm median {latency['warm_s']:.3f} s")
        kernels = {t: statistics.median(executor.call_async(kernel_gflops, t, reps).result()) for t in tiles}
        log("kernel GFLOPS: " + ", ".join(f"tile {t}: {g:.2f}" for t, g in kernels.items()))
        one = executor.call_async(store_io, store.url, f"{folder}/io-one", io_mb).result()
        many = [f.result() for f in [executor.call_async(store_io, store.url, f"{folder}/io-{i}", io_mb)
                                     for i in range(concurrency)]]
        span = max(r["end"] for r in many) - min(r["start"] for r in many)
        gets = executor.call_async(request_latency, store.url, f"{folder}/request", requests).result()
    finally:
        try:
            store.delete_prefix(folder + "/")
        except Exception:  # noqa: BLE001 - store gc removes what is left; the original error matters more
            log_warning = logging.getLogger(__name__).warning
            log_warning("could not delete calibration objects under %s/", folder, exc_info=True)
    profile = _profile(executor, price, latency, kernels, one, many, span, gets)
    if out is not None:
        Path(out).write_text(json.dumps(profile, indent=2, sort_keys=True) + "\n")
        log(f"wrote {out}: numpywren predict ... --platform {out}")
    return profile


def _invoke_latency(executor, warm: int) -> dict:
    samples = []
    for _ in range(1 + warm):
        sent = wall()
        samples.append(executor.call_async(worker_start).result() - sent)
    return {"cold_s": max(0.0, samples[0]), "warm_s": max(0.0, statistics.median(samples[1:])),
            "samples_s": samples}


def _bandwidth(size: int, seconds: float, request_s: float) -> float:
    """MB/s of a transfer of ``size`` bytes that took ``seconds``, less one request's latency: the simulator
    charges a read or write ``request_s`` plus its bytes at this rate (numpywren.simulate)."""
    if seconds <= request_s:  # the object was too small to tell the two apart: all of it as bandwidth
        log.warning("a %d-byte transfer took %.4f s, no longer than a request (%.4f s): its MB/s include the "
                    "latency (calibrate with a larger io_mb)", size, seconds, request_s)
        return size / seconds / 1e6
    return size / (seconds - request_s) / 1e6


def _profile(executor, price, latency, kernels, one, many, span, gets) -> dict:
    from numpywren.deploy import MB_PER_VCPU

    cores = min(6.0, price.memory_mb / MB_PER_VCPU)
    moved = sum(r["bytes"] for r in many) * 2
    request_s = statistics.median(gets)
    conf = getattr(executor, "_function_configuration", {}) or {}
    return {
        "name": f"calibrated-{executor.function_name}",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "function": executor.function_name, "region": executor.client.meta.region_name,
        "memory_mb": price.memory_mb, "arch": price.arch, "runtime": conf.get("Runtime"),
        "timeout_s": price.max_call_seconds,
        "measured": {"invoke": latency, "kernel_gflops": {str(t): g for t, g in kernels.items()},
                     "io_one": one, "io_aggregate": {"workers": len(many), "bytes": moved, "span_s": span},
                     "request_s": gets},
        "platform": {
            "invoke_s": latency["warm_s"], "cold_start_s": max(0.0, latency["cold_s"] - latency["warm_s"]),
            "gflops_per_core": {"gemm": {str(t): g / cores for t, g in kernels.items()}},
            "read_mb_s": _bandwidth(one["bytes"], one["read_s"], request_s),
            "write_mb_s": _bandwidth(one["bytes"], one["write_s"], request_s),
            "aggregate_mb_s": moved / span / 1e6 if span > 0 else None,
            "request_s": request_s, "memory_mb": price.memory_mb,
        },
    }


# -- CLI (routed by numpywren.cli) -------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:

    p.add_argument("--function-name", default="numpywren", help="the deployed Lambda function (default numpywren)")
    p.add_argument("--store", required=True, help="its store, s3://bucket/prefix (as deployed)")
    p.add_argument("--region", help="AWS region (default: the store's, $AWS_DEFAULT_REGION)")
    p.add_argument("--out", required=True, help="the profile file to write (JSON)")
    p.add_argument("--tiles", default=",".join(map(str, TILES)), help="tile sizes of the GEMM kernel runs")
    p.add_argument("--concurrency", type=int, default=4, help="workers of the aggregate S3 measurement")
    p.add_argument("--io-mb", type=float, default=8.0, help="MB each worker writes and reads")
    p.add_argument("--yes", action="store_true", help="run it (it prints its cost ceiling first)")
    p.add_argument("--endpoint-url", help=argparse.SUPPRESS)  # the Lambda endpoint (tests: a fake)
    add_max_cost(p)


def run(args) -> int:
    from numpywren.executors.aws_lambda import LambdaExecutor

    tiles = tuple(int(t) for t in args.tiles.split(","))
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with LambdaExecutor(args.function_name, store=args.store, region=args.region,
                        endpoint_url=args.endpoint_url) as ex:
        calibrate(ex, tiles=tiles, concurrency=args.concurrency, io_mb=args.io_mb, yes=args.yes, out=args.out,
                  max_cost=args.max_cost, log=print)
    return 0
