"""Every parameter of the cloud simulator (numpywren.simulate), in one place, each with its source.

Four platforms:

* ``local``: this machine (2 cores, local worker processes, a LocalStore),
  from local measurements made *separately* from the runs the simulator is
  checked against (``python -m benchmarks.sim_calibrate``: tile kernel GFLOPS
  by tile size, a one-task job's fixed costs; benchmarks/README.md, "predict").
* ``lambda``: AWS Lambda + S3 today. Lambda's x86 CPUs cannot be measured
  from here: the per-core GFLOPS of this machine's kernels stand in for them
  (an Intel Xeon with AVX-512, like Lambda's x86 fleet, but the real figure may
  differ); Lambda gives a function one vCPU per 1,769 MB of memory, at most 6
  (numpywren.deploy uses the same rule for its BLAS threads), and the BLAS is
  assumed to scale linearly over those vCPUs. Platform limits are AWS's
  documented ones. No per-worker S3 bandwidth is documented for Lambda: the
  only published measurement at hand is PyWren's (2017), used here too. A
  job's fixed costs are the local driver's, with each of its counted store
  requests taking S3's latency.
* ``lambda-2017``: the platform of PyWren and numpywren in 2017. Its two
  per-worker rates (GFLOPS, S3 MB/s) come from PyWren's microbenchmarks
  (Jonas et al. 2017, Fig. 3 and 4), so those figures are *calibration* for
  this profile, not validation.
* ``numpywren-2017``: the system behind the numpywren README's table of
  December 2017 (X X^T on 3,000 cores): lambda-2017 running that time's
  binops.gemm on PyWren 2017 (serial reads with an existence check each, no
  overlap of I/O and compute, PyWren's invocation rate, runtime download on a
  new container, a new interpreter per call), each parameter sourced from the
  2017 code and PyWren's own published benchmarks, none from that table.

Nothing is tuned per case: ``numpywren.simulate.predict`` takes a platform
name and at most the explicit overrides a user passes (``memory_mb``,
``concurrency``, ...), which it reports.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from numpywren.verification import batch_size as verify_batch_size

MB = 1e6

#: GFLOPS of one core for each tile kernel, by tile size, on this machine kind (numpy 2.4.6, OpenBLAS 0.3.31
#: SkylakeX, 1 BLAS thread), one process alone: ``python -m benchmarks.sim_calibrate --repeat 3 --seconds 0.25
#: --rounds 3 --pause 60`` (benchmarks/results/sim_calibrate.csv, 2026-11-26, best of 3 rounds of best-of-3
#: timings; the machine was busy with other runs, load 3-7, so the best of many timings is the estimate).
#: Kernels: gemm = a gemm task's loop (blocks.gemm.gemm_accumulate of two pairs); the Cholesky tasks'
#: pieces from blocks.cholesky: syrk (diagonal update), gemm_update (panel update), potrf, trsm (panel
#: solve). sum and row_norms are memory-bound: ~0.5 G additions/s per core (numpy add of two 1024^2 tiles;
#: they only matter for split-k reductions).
KERNEL_GFLOPS_ALONE = {
    "gemm": {512: 62.1, 1024: 64.1, 2048: 69.8, 4096: 78.6},
    "syrk": {512: 63.5, 1024: 70.4, 2048: 72.4},
    "gemm_update": {512: 64.0, 1024: 61.4, 2048: 76.6},
    "potrf": {512: 24.7, 1024: 30.4, 2048: 39.3},
    "trsm": {512: 24.2, 1024: 35.1, 2048: 47.1},
}
#: Two local workers run kernels on both cores at once, each a little slower than alone (shared caches and
#: memory bandwidth). The same CSV's "two at once" column measures that directly, but only on a quiet
#: machine, and there was none today: those figures (18-71 GFLOPS, varying run to run) measure the other
#: runs, not the kernels. The factor used instead comes from benchmarks/results/scaling.csv (``python -m
#: benchmarks.scaling``, tile 1024, not one of the validated runs): the kernel GFLOPS per worker of a GEMM job
#: with 2 workers over the same with 1 worker, 64.0 / 66.4 (strong scaling; weak: 63.7 / 65.8).
TWO_WORKERS_FACTOR = 64.0 / 66.4
MEMORY_BOUND = {"sum": 0.5, "row_norms": 0.5}


def _kernels(rates: dict, factor: float = 1.0) -> dict:
    """Rates per tile kernel (times ``factor``); the RBF kernel tile is a GEMM plus elementwise work
    (gemm's rate)."""
    scaled = {k: {t: r * factor for t, r in by_tile.items()} for k, by_tile in rates.items()}
    return {**scaled, "kernel": scaled["gemm"], **MEMORY_BOUND}


#: the rates the ``local`` platform uses (two workers on two cores) and Lambda's stand-in (one per vCPU)
LOCAL_GFLOPS_PER_CORE = _kernels(KERNEL_GFLOPS_ALONE, TWO_WORKERS_FACTOR)
ALONE_GFLOPS_PER_CORE = _kernels(KERNEL_GFLOPS_ALONE)


def rate(rates: dict, kernel: str, tile: int | None = None) -> float:
    """GFLOPS per core of ``kernel`` at ``tile`` (the nearest measured tile size, by ratio); unknown
    kernels use gemm's rate."""
    value = rates.get(kernel, rates["gemm"])
    if not isinstance(value, dict):
        return float(value)
    if tile is None:
        return float(value[max(value)])
    nearest = min(value, key=lambda t: (abs(math.log(t / tile)), -t))
    return float(value[nearest])


@dataclass(frozen=True)
class Platform:
    """What one worker can do, what the platform lets a job do at once, what the store allows, how a task
    runs (the execution profile) and what a job costs besides its tasks."""

    name: str
    #: GFLOPS of one core for each tile kernel (a number, or {tile size: number}); unknown kernels use gemm's
    gflops_per_core: dict = field(default_factory=lambda: dict(LOCAL_GFLOPS_PER_CORE))
    #: cores of a worker: memory_mb / mb_per_vcpu, at most max_vcpus (None: ``cores_per_worker``)
    mb_per_vcpu: float | None = None
    max_vcpus: int = 1
    cores_per_worker: float = 1.0
    memory_mb: int = 3008            # default configured memory (cost, vCPUs)
    max_memory_mb: int = 10240
    runtime_mb: int = 250            # the Python runtime, numpy and the handler, before any tile
    cold_start_s: float = 0.0        # the first task of a new worker (container) waits this long
    scale_per_s: float | None = None  # new workers (containers) per second the platform starts; None: no limit
    concurrency: int | None = None   # workers running at once, whatever W is asked for; None: no limit
    invoke_s: float = 0.0            # a warm invocation: from the driver's call to the handler starting
    invoke_per_s: float | None = None  # calls the driver launches per second (the k-th at k / rate); None: no limit
    call_overhead_s: float = 0.0     # the worker's own start-up per call before the task (e.g. a new interpreter)
    read_mb_s: float = 1e9           # one worker's store read bandwidth, MB/s
    write_mb_s: float = 1e9          # one worker's store write bandwidth, MB/s
    request_s: float = 0.0           # latency of one store request (first byte), seconds
    get_per_s: float | None = None   # GET-like requests per second per key prefix; None: no limit
    put_per_s: float | None = None   # PUT-like requests per second per key prefix; None: no limit
    aggregate_mb_s: float | None = None  # all workers together, MB/s; None: no limit
    #: S3's partition ramp (None: every key prefix serves get_per_s/put_per_s from the start). A fresh bucket
    #: serves all of a job's keys from ``fresh_partitions`` partition(s) at those rates, and S3 adds one
    #: partition per ``partition_split_s`` seconds of sustained load, up to 256 per matrix (the hashed
    #: ``<hh>/`` folders of tiles, leases and results: numpywren.matrix, numpywren.protocol.spread)
    fresh_partitions: int | None = None
    partition_split_s: float = 60.0
    #: extra requests per task besides reading inputs and writing the output tile (numpywren.worker.ops and
    #: numpywren.worker): PUT the lease, PUT the result; the driver GETs the result
    extra_puts: int = 2
    extra_gets: int = 1
    #: workers renew their lease while they run (one PUT per heartbeat or progress report, the driver's GET of
    #: each report it uses: numpywren.worker.leases, numpywren.liveness); the 2017 system had no leases
    leases: bool = True
    #: GET-like requests the worker makes per call before its task, besides the input tiles (on its path)
    call_gets: int = 0
    #: execution profile. overlap_io: streaming tasks read the next input group while the kernel runs
    #: (numpywren.worker.tasks.TileReader); False: every read, then the kernel, one after the other
    overlap_io: bool = True
    requests_per_read: int = 1       # store requests per tile read (a GET; 2017: an existence check too)
    #: a job's fixed costs besides its tasks (numpywren.jobs.run): the driver's own seconds before the
    #: scheduler (outputs, job record, heartbeat), in the scheduler's start and end (lease folder, callset
    #: cleanup) and after it (records, scratch, cleanup), plus the store requests it makes there one after
    #: the other (x request_s), plus reading every output tile's header to verify it
    #: (``verify_parallel`` at a time: numpywren.matrix.IO_THREADS; above 4 x that many tiles, by the workers,
    #: in batches, ``verify_parallel`` at a time too: numpywren.verification)
    job_setup_s: float = 0.0
    run_fixed_s: float = 0.0
    job_teardown_s: float = 0.0
    job_setup_requests: int = 0
    run_fixed_requests: int = 0
    job_teardown_requests: int = 0
    #: the verification's requests (defaults: counted, VERIFY_REQUESTS): per output tile (its header read),
    #: and on the workers' path per batch on a worker (its result's write) and on the driver (its result's
    #: read and delete), plus that path's own fixed requests (the listing, the callset's cleanup)
    verify_requests_per_tile: float = 1.0
    verify_worker_requests_per_batch: float = 1.0
    verify_driver_requests_per_batch: float = 1.0
    verify_fixed_requests: float = 0.0
    verify_parallel: int = 8
    task_limit_s: float | None = None  # longest a call may run (Lambda: the function timeout's maximum)
    billed: bool = True              # Lambda pricing applies (numpywren.pricing)
    failure_rate: float = 0.0        # chance that an attempt fails (its worker dies); the scheduler retries
    straggler_rate: float = 0.0      # chance that an attempt runs straggler_factor times slower
    straggler_factor: float = 3.0
    sources: dict = field(default_factory=dict)

    def cores(self, memory_mb: int) -> float:
        """Cores a worker gets with ``memory_mb`` (Lambda: proportional to memory)."""
        if self.mb_per_vcpu is None:
            return self.cores_per_worker
        return min(float(self.max_vcpus), memory_mb / self.mb_per_vcpu)

    def gflops(self, kernel: str, memory_mb: int, tile: int | None = None) -> float:
        """GFLOPS of one worker running ``kernel`` on tiles of about ``tile`` (None: the largest measured)."""
        return rate(self.gflops_per_core, kernel, tile) * self.cores(memory_mb)

    def fixed_seconds(self, output_tiles: int, workers: int = 1) -> dict:
        """A job's fixed costs: {"setup", "run", "teardown"} seconds (see the fields above)."""
        parallel = max(1, self.verify_parallel)
        calls = 0.0  # verification on the workers: one call per batch, at once, then the driver reads results
        if workers > 1 and output_tiles > 4 * parallel and self.verify_requests_per_tile:
            batch = verify_batch_size(output_tiles, workers, parallel)
            batches = math.ceil(output_tiles / batch)
            launch = batches / self.invoke_per_s if self.invoke_per_s else 0.0
            calls = launch + self.invoke_s + self.call_overhead_s
            worker = math.ceil(batch * self.verify_requests_per_tile / parallel) + self.verify_worker_requests_per_batch
            driver = math.ceil(batches * self.verify_driver_requests_per_batch / parallel)
            verify = worker + driver + self.verify_fixed_requests
        else:
            verify = math.ceil(output_tiles * self.verify_requests_per_tile / parallel)
        return {"setup": self.job_setup_s + self.job_setup_requests * self.request_s,
                "run": self.run_fixed_s + self.run_fixed_requests * self.request_s,
                "teardown": self.job_teardown_s + calls + (self.job_teardown_requests + verify) * self.request_s}

    def with_(self, **changes) -> "Platform":
        """A copy with some parameters changed (e.g. failure_rate), named as such."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"unknown platform parameters {sorted(unknown)}")
        return dataclasses.replace(self, **changes)


S3_SOURCES = {
    "get_per_s/put_per_s": "AWS S3 User Guide, 'Best practices design patterns: optimizing Amazon S3 performance': "
                           "at least 3,500 PUT/COPY/POST/DELETE and 5,500 GET/HEAD requests per second per "
                           "partitioned prefix",
    "request_s": "same page: small-object / first-byte latencies of roughly 100-200 ms; 0.1 s used",
    "aggregate_mb_s": "S3 documents no aggregate bandwidth limit (it scales with prefixes): none",
    "fresh_partitions/partition_split_s": "same page: S3 scales a prefix's rate by partitioning it, gradually, "
                                          "answering 503 SlowDown meanwhile; a fresh bucket starts with one "
                                          "partition's rate. The split interval is not published: "
                                          "partition_split_s=60 is ASSUMED (the ramp is off unless "
                                          "fresh_partitions is set, e.g. platform.with_(fresh_partitions=1))",
    "read_mb_s/write_mb_s": "Jonas et al. 2017 ('Occupy the Cloud', SoCC), Fig. 4: ~30 MB/s per Lambda worker, "
                            "reading and writing S3 (the only per-worker measurement at hand)",
}

#: a job's fixed costs on this machine: ``python -m benchmarks.sim_calibrate --repeat 3 --seconds 0.25
#: --rounds 3 --pause 60`` ("job" rows of benchmarks/results/sim_calibrate.csv, 2026-11-26, load 3-7): a
#: one-task job (a 64 x 64 matmul) on a LocalExecutor with 2 workers, best of 5 per phase; the driver's
#: store requests per phase counted with a counting LocalStore. The scheduler phase's requests of a job of
#: 64 such tasks give 3 per task; the rest are fixed.
LOCAL_JOB = {"setup_s": 0.0008, "scheduler_s": 0.0021, "teardown_s": 0.0009,
             "setup_requests": 10, "scheduler_requests": 15, "teardown_requests": 9, "per_task_requests": 3}
LOCAL_REQUEST_S = 0.0001  # benchmarks/results/tile_io.csv (2026-11-25): a 1 MB tile get takes 0.11 ms
#: a tile task's own cost on a local worker besides its reads, compute and writes (event, lease, result,
#: process hand-off): the same calibration's "per_task" row, the slope between the one-task job and a job
#: of 64 trivial tasks (64 x 64 tiles, 16 tile reads each) x 2 workers, minus those tasks' 16 reads and
#: 3 writes at the local request latency
LOCAL_TASK = {"per_task_s": 0.00471, "tile_reads": 16, "puts": 3}
LOCAL_INVOKE_S = LOCAL_TASK["per_task_s"] - (LOCAL_TASK["tile_reads"] + LOCAL_TASK["puts"]) * LOCAL_REQUEST_S
#: the one task of that job as the model times it (invoke, 2 tile reads, output + lease + result PUTs)
_ONE_TASK_S = LOCAL_INVOKE_S + (2 + 3) * LOCAL_REQUEST_S
#: the driver's own seconds in each phase: measured minus its requests at the local request latency
#: (so that a platform with slower requests adds only its latency), at least 0 (with the figures above
#: all three come out 0: the phases took no longer than their requests); the teardown's requests include
#: the one output tile's header read (verify), modelled separately
DRIVER_FIXED = {
    "job_setup_s": max(0.0, LOCAL_JOB["setup_s"] - LOCAL_JOB["setup_requests"] * LOCAL_REQUEST_S),
    "run_fixed_s": max(0.0, LOCAL_JOB["scheduler_s"] - _ONE_TASK_S
                       - (LOCAL_JOB["scheduler_requests"] - LOCAL_JOB["per_task_requests"]) * LOCAL_REQUEST_S),
    "job_teardown_s": max(0.0, LOCAL_JOB["teardown_s"] - LOCAL_JOB["teardown_requests"] * LOCAL_REQUEST_S),
}
JOB_REQUESTS = {"job_setup_requests": LOCAL_JOB["setup_requests"],
                "run_fixed_requests": LOCAL_JOB["scheduler_requests"] - LOCAL_JOB["per_task_requests"],
                "job_teardown_requests": LOCAL_JOB["teardown_requests"] - 1}
JOB_SOURCE = ("benchmarks/results/sim_calibrate.csv ('job' rows; python -m benchmarks.sim_calibrate): a "
              "one-task job's setup / scheduler / teardown seconds and driver requests")

#: the verification's store requests, counted on a real run: ``python -m benchmarks.verify_requests --grid 4 24
#: --workers 16`` (benchmarks/results/verify_requests.csv, 2026-12-05): a matmul with a 4 x 4 tile output
#: (verified by the driver) and one with 24 x 24 (by 16 in-process workers in 16 batches), every request
#: made while numpywren.jobs._verify ran, by kind (benchmarks/verify_requests.py). The model's requests
#: below are derived from these counts, never set by hand; tests/test_predict.py counts a run again.
VERIFY_COUNTED = {
    "driver": {"tiles": 16, "batches": 0, "tile_requests": 16, "worker_batch_requests": 0,
               "driver_batch_requests": 0, "fixed_requests": 2},
    "workers": {"tiles": 576, "batches": 16, "tile_requests": 576, "worker_batch_requests": 16,
                "driver_batch_requests": 16, "fixed_requests": 4},
}


def verify_requests(counted: dict = VERIFY_COUNTED) -> dict:
    """The model's verification requests (Platform's ``verify_*`` fields) from counted runs: per tile; per
    batch on a worker and on the driver; the workers' path's fixed requests beyond the driver path's (those
    are in the job's teardown requests, LOCAL_JOB)."""
    by_driver, by_workers = counted["driver"], counted["workers"]
    return {"verify_requests_per_tile": by_workers["tile_requests"] / by_workers["tiles"],
            "verify_worker_requests_per_batch": by_workers["worker_batch_requests"] / by_workers["batches"],
            "verify_driver_requests_per_batch": by_workers["driver_batch_requests"] / by_workers["batches"],
            "verify_fixed_requests": float(by_workers["fixed_requests"] - by_driver["fixed_requests"])}


VERIFY_REQUESTS = verify_requests()
VERIFY_SOURCE = ("benchmarks/results/verify_requests.csv (python -m benchmarks.verify_requests): the final "
                 "check's store requests of a real job, counted by kind")

LOCAL = Platform(
    name="local",
    cores_per_worker=1.0, memory_mb=11_750, max_memory_mb=23_500, runtime_mb=100,  # 23.5 GB, 2 workers
    invoke_s=LOCAL_INVOKE_S,  # per task: the calibrated tile-task overhead (LOCAL_TASK)
    read_mb_s=16_600.0,  # benchmarks/results/tile_io.csv (2026-11-25): tile get of 256 MB, mmap + checksum
    write_mb_s=3_200.0,  # same file: tile put of 256 MB (encode + checksum + atomic write)
    request_s=LOCAL_REQUEST_S,
    extra_puts=2, extra_gets=1, billed=False, **DRIVER_FIXED, **JOB_REQUESTS, **VERIFY_REQUESTS,
    sources={"gflops_per_core": "KERNEL_GFLOPS_ALONE (benchmarks/results/sim_calibrate.csv, 1 BLAS thread) x "
                                "TWO_WORKERS_FACTOR (benchmarks/results/scaling.csv)",
             "store": "benchmarks/results/tile_io.csv (LocalStore on ext4, page cache)",
             "invoke_s": "benchmarks/results/sim_calibrate.csv, 'per_task' row (LOCAL_TASK)",
             "job fixed costs": JOB_SOURCE, "verification requests": VERIFY_SOURCE},
)

LAMBDA = Platform(
    name="lambda",
    gflops_per_core=dict(ALONE_GFLOPS_PER_CORE),
    mb_per_vcpu=1769, max_vcpus=6, memory_mb=3008, max_memory_mb=10240, runtime_mb=250,
    cold_start_s=1.0,      # ASSUMED: AWS documents none; its guidance quotes under 100 ms to over 1 s
    scale_per_s=100.0,     # Lambda docs, 'Lambda scaling behavior': +1,000 concurrent executions per 10 s per function
    concurrency=1000,      # Lambda docs, 'Lambda quotas': default concurrent executions per account and Region
    invoke_s=0.03,         # ASSUMED: an asynchronous Invoke reaching a warm sandbox, tens of ms
    read_mb_s=30.0, write_mb_s=30.0, request_s=0.1,
    get_per_s=5500.0, put_per_s=3500.0, aggregate_mb_s=None,
    extra_puts=3,          # the lease, the result and the done-marker (numpywren.worker; Lambda asks for markers)
    task_limit_s=900.0,    # Lambda docs, 'Lambda quotas': function timeout at most 900 s (15 minutes)
    **DRIVER_FIXED, **JOB_REQUESTS, **VERIFY_REQUESTS,  # the same driver code: its requests now each wait request_s
    sources={"gflops_per_core": "this machine's kernels, one process alone, stand in for Lambda's x86 cores "
                                "(KERNEL_GFLOPS_ALONE)",
             "mb_per_vcpu": "Lambda docs, 'Configuring Lambda function memory': 1,769 MB = 1 vCPU, up to 6 "
                            "vCPUs at 10,240 MB",
             "job fixed costs": JOB_SOURCE + "; each request then takes request_s",
             "verification requests": VERIFY_SOURCE, **S3_SOURCES},
)

LAMBDA_2017 = LAMBDA.with_(
    name="lambda-2017",
    gflops_per_core={op: 14.0 for op in LOCAL_GFLOPS_PER_CORE} | dict(MEMORY_BOUND),
    mb_per_vcpu=None, cores_per_worker=1.0, memory_mb=1536, max_memory_mb=1536,
    read_mb_s=30.0, write_mb_s=30.0, concurrency=3000, task_limit_s=300.0,
    sources={"gflops_per_core": "Jonas et al. 2017, Fig. 3: ~40 TFLOPS at 2,800 workers, ~14 GFLOPS per worker "
                                "(4096^2 float64 matmuls in each worker) -- CALIBRATION for this profile",
             "memory_mb": "Lambda's maximum in 2017: 1,536 MB (pywren 2017 default_config.yaml: memory 1536)",
             "task_limit_s": "Lambda's limit in 2017: 300 s (pywren 2017 default_config.yaml: timeout 300)",
             "concurrency": "3,000: PyWren's raised account limit (pywren/examples benchmark_flops/"
                            "flops_benchmark.ipynb, 2017: 'My account has a lambda limit of 3000 simultaneous "
                            "lambdas')",
             "job fixed costs": JOB_SOURCE, **S3_SOURCES},
)

#: The system of the numpywren README's table (commit f492742 of github.com/Vaishaal/numpywren, 2017-12-11:
#: X X^T, X 1.2M x 4096 / 18,432, 3,000 cores): numpywren's binops.gemm of that time on PyWren 2017
#: (github.com/pywren/pywren at f8df9f8, 2017-12-08) on the lambda-2017 platform. One pywren map call per
#: output block of the symmetric result (BigSymmetricMatrix.block_idxs: one triangle); each call reads its
#: X blocks one after the other (BigMatrix.get_block: key_exists HEAD, then GET), multiplies, accumulates,
#: put_block; no overlap of I/O and compute. Nothing here is taken from that table.
NUMPYWREN_2017 = LAMBDA_2017.with_(
    name="numpywren-2017",
    overlap_io=False, requests_per_read=2,
    # pywren.executor.map invokes every call from 64 threads: 2,800 invocations took 27.3 s (pywren/examples,
    # benchmark_flops/flops_benchmark.ipynb, 2017: "invocation done, dur= 27.32")
    invoke_per_s=2800 / 27.324,
    # a new container downloads and unpacks the Anaconda runtime before the call (wrenhandler
    # download_runtime_if_necessary); pywren/examples 'examples/old/timeline vis.ipynb' (300 cold workers):
    # 'setup done' ~15 s after 'job start'
    cold_start_s=15.0,
    # each call: wrenhandler HEADs the runtime, the jobrunner GETs the function and the data; it writes the
    # output pickle and the status (put_block's PUT is the output tile); the driver's wait GETs status + output
    call_gets=3, extra_puts=2, extra_gets=2, leases=False,
    # the jobrunner is a new Python process per call that imports numpy, scipy.linalg and boto3 (unpickling
    # numpywren.binops): measured here as a stand-in (benchmarks/results/sim_calibrate.csv, 'interpreter' row:
    # 0.60 s, best of 5 on a busy machine; Lambda's 2017 CPUs were slower, its disk a network one)
    call_overhead_s=0.601,
    # the driver: one agg-data and one function upload before the map; pywren.wait polls every 5 s
    # (WAIT_DUR_SEC), so the last completion is seen 2.5 s later on average; no job record, no verify
    job_setup_s=0.0, run_fixed_s=0.0, job_teardown_s=2.5, job_setup_requests=2, run_fixed_requests=0,
    job_teardown_requests=0, verify_requests_per_tile=0,
    sources={**LAMBDA_2017.sources,
             "profile": "numpywren binops.gemm at 135c5e3/f492742 (2017): one call per output block, serial "
                        "get_block (HEAD + GET) and compute, put_block",
             "invoke_per_s": "pywren/examples benchmark_flops/flops_benchmark.ipynb: 2,800 invocations in 27.3 s",
             "cold_start_s": "pywren/examples examples/old/timeline vis.ipynb: runtime setup ~15 s on a new "
                             "container",
             "call_overhead_s": "a new interpreter importing numpy, scipy.linalg, boto3 on this machine "
                                "(stand-in; Lambda's 2017 CPU was slower)",
             "job fixed costs": "pywren 2017 executor.map (2 uploads) and wait (5 s polls)"},
)

#: Lithops' published raw measurements of AWS Lambda, eu-west-1, June 2022 (github.com/lithops-cloud/applications,
#: benchmarks/; read with a restricted unpickler that refuses every global: dicts, lists and numbers only):
#: 1,000 functions of 1,024 MB, each 5 float64 GEMMs of 4096^2 (flops/aws_lambda/1000_flops.pickle, commit
#: 826d482, 2022-06-11): median 19.566 GFLOPS per function (16.53 TFLOPS effective over the whole 41.6 s job);
#: invoke (worker start - host submit) median 0.334 s for the 993 warm workers, 2.419 s for the 7 cold ones;
#: S3 (object_storage/aws_s3/1000_{read,write}.pickle, commit 0ee402d, 2022-06-10), 512 MiB objects, 1,000
#: functions of 1,024 MB: median 99.8 MB/s read, 94.1 MB/s write per function (MB = 1e6 bytes).
LITHOPS_2022 = {"gflops_4096": 19.566, "memory_mb": 1024, "invoke_warm_s": 0.334, "invoke_cold_s": 2.419,
                "read_mb_s": 99.8, "write_mb_s": 94.1, "effective_tflops_1000": 16.53}
_LITHOPS_SOURCE = "Lithops benchmarks (lithops-cloud/applications, eu-west-1, June 2022)"
LAMBDA_2022 = LAMBDA.with_(
    name="lambda-2022",
    # per vCPU: the 1,024 MB function's share of a vCPU (1,024 / 1,769); other kernels use gemm's rate
    gflops_per_core=_kernels({"gemm": {4096: LITHOPS_2022["gflops_4096"] / (LITHOPS_2022["memory_mb"] / 1769)}}),
    memory_mb=LITHOPS_2022["memory_mb"],
    invoke_s=LITHOPS_2022["invoke_warm_s"],
    cold_start_s=LITHOPS_2022["invoke_cold_s"] - LITHOPS_2022["invoke_warm_s"],
    read_mb_s=LITHOPS_2022["read_mb_s"], write_mb_s=LITHOPS_2022["write_mb_s"],
    sources={**LAMBDA.sources,
             "gflops_per_core": f"{_LITHOPS_SOURCE}, flops/aws_lambda/1000_flops.pickle: median 19.566 GFLOPS "
                                f"per 1,024 MB function, 4096^2 float64 GEMM (numpy's BLAS of its runtime)",
             "invoke_s/cold_start_s": f"{_LITHOPS_SOURCE}, same file, worker_start_tstamp - host_submit_tstamp: "
                                      f"median 0.334 s warm (993), 2.419 s cold (7); Lithops' invoker, not ours",
             "read_mb_s/write_mb_s": f"{_LITHOPS_SOURCE}, object_storage/aws_s3/1000_read.pickle and "
                                     f"1000_write.pickle: median 99.8 / 94.1 MB/s per function, 512 MiB objects",
             "memory_mb": "the Lithops runs' 1,024 MB",
             "region": "measured in eu-west-1; costs use numpywren.pricing's us-east-1 list prices (eu-west-1's "
                       "Lambda GB-second and S3 request prices were not re-checked here)",
             "validation": "the same campaign's 100-function runs (100_flops.pickle, 100_{read,write}.pickle), "
                           "which no parameter came from: benchmarks/lithops_2022.py, table in benchmarks/README "
                           "(per-function medians within 0-11%, median function ends within 1-9%; the last "
                           "function's end 7-50% later than predicted: stragglers the profile does not model). "
                           "No numpywren job was measured on Lambda in 2022"},
)

PLATFORMS = {p.name: p for p in (LOCAL, LAMBDA, LAMBDA_2017, NUMPYWREN_2017, LAMBDA_2022)}


def load_profile(path) -> Platform:
    """The Lambda platform with a calibrated profile's measurements (``numpywren calibrate --out FILE``)."""
    import json
    from pathlib import Path

    try:
        profile = json.loads(Path(path).read_text())
        measured = profile["platform"]
        gemm = {int(t): float(r) for t, r in measured["gflops_per_core"]["gemm"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path} is not a numpywren calibration profile: {exc}") from None
    where = (f"numpywren calibrate, {profile.get('date')}, function {profile.get('function')} in "
             f"{profile.get('region')} ({profile.get('memory_mb')} MB {profile.get('arch')} "
             f"{profile.get('runtime')}): {path}")
    return LAMBDA.with_(
        name=str(profile.get("name", Path(path).stem)), gflops_per_core=_kernels({"gemm": gemm}),
        memory_mb=int(measured["memory_mb"]), invoke_s=float(measured["invoke_s"]),
        cold_start_s=float(measured["cold_start_s"]), read_mb_s=float(measured["read_mb_s"]),
        write_mb_s=float(measured["write_mb_s"]), request_s=float(measured["request_s"]),
        aggregate_mb_s=measured.get("aggregate_mb_s"),
        sources={**LAMBDA.sources, **{k: where for k in ("gflops_per_core", "invoke_s", "cold_start_s",
                                                         "read_mb_s/write_mb_s", "request_s", "aggregate_mb_s")}})


def platform(name: "str | Platform") -> Platform:
    """A platform by name, a calibration profile file (``*.json``), or the given Platform."""
    if isinstance(name, Platform):
        return name
    if str(name).endswith(".json"):
        return load_profile(name)
    try:
        return PLATFORMS[name]
    except KeyError:
        raise ValueError(f"unknown platform {name!r}; choose one of {sorted(PLATFORMS)} or a profile "
                         f"file written by numpywren calibrate (*.json)") from None
