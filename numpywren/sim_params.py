"""Every parameter of the cloud simulator (numpywren.simulate), in one place, each with its source.

Three platforms:

* ``local``: this machine (2 cores, local worker processes, a LocalStore),
  from local measurements made *separately* from the runs the simulator is
  checked against (benchmarks/README.md, "Predicted vs measured").
* ``lambda``: AWS Lambda + S3 today. Lambda's x86 CPUs cannot be measured
  from here: the per-core GFLOPS of this machine's kernels stand in for them
  (an Intel Xeon with AVX-512, like Lambda's x86 fleet, but the real figure may
  differ); Lambda gives a function one vCPU per 1,769 MB of memory, at most 6
  (numpywren.deploy uses the same rule for its BLAS threads), and the BLAS is
  assumed to scale linearly over those vCPUs. Platform limits are AWS's
  documented ones. No per-worker S3 bandwidth is documented for Lambda: the
  only published measurement at hand is PyWren's (2017), used here too.
* ``lambda-2017``: the platform of the PyWren and numpywren papers. Its two
  per-worker rates (GFLOPS, S3 MB/s) come from PyWren's microbenchmarks
  (Jonas et al. 2017, Fig. 3 and 4), so those figures are *calibration* for
  this profile, not validation; the numpywren papers' end-to-end runs are
  what it is checked against.

Nothing is tuned per case: ``numpywren.simulate.predict`` takes a platform
name and at most the explicit overrides a user passes (``memory_mb``,
``concurrency``, ...), which it reports.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

MB = 1e6

#: measured on this machine kind (numpy 2.4.6, OpenBLAS 0.3.31 SkylakeX, 1 BLAS thread), GFLOPS per core.
#: gemm: 77 (/work/shared/FACTS.md, 2026-11-26: DGEMM on 1 thread; tile_io.csv's 2048 matmul gave 74.5).
#: potrf: 28 (FACTS.md: scipy.linalg.cholesky N=8192 at ~56 GFLOPS on 2 threads, halved).
#: trsm/update (Cholesky's SYRK/GEMM of a trailing tile): BLAS-3 like gemm; assumed at gemm's rate (not measured separately).
#: sum and row_norms are memory-bound: ~0.5 G additions/s per core (numpy add of two 1024^2 tiles, measured
#: 0.46 on a loaded machine, 2026-11-26; it only matters for split-k reductions).
LOCAL_GFLOPS_PER_CORE = {"gemm": 77.0, "kernel": 77.0, "update": 77.0, "trsm": 77.0, "chol": 28.0,
                         "sum": 0.5, "row_norms": 0.5}


@dataclass(frozen=True)
class Platform:
    """What one worker can do, what the platform lets a job do at once, and what the store allows."""

    name: str
    #: GFLOPS of one core for each tile operation (``op`` of a task); unknown ops use "gemm"'s
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
    read_mb_s: float = 1e9           # one worker's store read bandwidth, MB/s
    write_mb_s: float = 1e9          # one worker's store write bandwidth, MB/s
    request_s: float = 0.0           # latency of one store request (first byte), seconds
    get_per_s: float | None = None   # GET-like requests per second per key prefix; None: no limit
    put_per_s: float | None = None   # PUT-like requests per second per key prefix; None: no limit
    aggregate_mb_s: float | None = None  # all workers together, MB/s; None: no limit
    #: extra requests per task besides reading inputs and writing the output tile (numpywren.ops and
    #: numpywren.worker): PUT the lease, PUT the result; the driver GETs the result
    extra_puts: int = 2
    extra_gets: int = 1
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

    def gflops(self, op: str, memory_mb: int) -> float:
        rate = self.gflops_per_core.get(op, self.gflops_per_core["gemm"])
        return rate * self.cores(memory_mb)

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
    "read_mb_s/write_mb_s": "Jonas et al. 2017 ('Occupy the Cloud', SoCC), Fig. 4: ~30 MB/s per Lambda worker, "
                            "reading and writing S3 (the only per-worker measurement at hand)",
}

LOCAL = Platform(
    name="local",
    cores_per_worker=1.0, memory_mb=11_750, max_memory_mb=23_500, runtime_mb=100,  # 23.5 GB, 2 workers
    invoke_s=1 / 806,   # FACTS.md: LocalExecutor ~806 no-op calls/s (2,000 calls)
    read_mb_s=16_600.0,  # benchmarks/results/tile_io.csv (2026-11-25): tile get of 256 MB, mmap + checksum
    write_mb_s=3_200.0,  # same file: tile put of 256 MB (encode + checksum + atomic write)
    request_s=0.0001,    # same file: a 1 MB tile get takes 0.11 ms
    extra_puts=2, extra_gets=1, billed=False,
    sources={"gflops_per_core": "LOCAL_GFLOPS_PER_CORE (FACTS.md, measured 1 BLAS thread)",
             "store": "benchmarks/results/tile_io.csv (LocalStore on ext4, page cache)",
             "invoke_s": "FACTS.md: LocalExecutor ~806 no-op calls/s"},
)

LAMBDA = Platform(
    name="lambda",
    mb_per_vcpu=1769, max_vcpus=6, memory_mb=3008, max_memory_mb=10240, runtime_mb=250,
    cold_start_s=1.0,      # ASSUMED: AWS documents none; its guidance quotes under 100 ms to over 1 s
    scale_per_s=100.0,     # Lambda docs, 'Lambda scaling behavior': +1,000 concurrent executions per 10 s per function
    concurrency=1000,      # Lambda docs, 'Lambda quotas': default concurrent executions per account and Region
    invoke_s=0.03,         # ASSUMED: an asynchronous Invoke reaching a warm sandbox, tens of ms
    read_mb_s=30.0, write_mb_s=30.0, request_s=0.1,
    get_per_s=5500.0, put_per_s=3500.0, aggregate_mb_s=None,
    task_limit_s=900.0,    # Lambda docs, 'Lambda quotas': function timeout at most 900 s (15 minutes)
    sources={"gflops_per_core": "this machine's kernels stand in for Lambda's x86 cores (LOCAL_GFLOPS_PER_CORE)",
             "mb_per_vcpu": "Lambda docs, 'Configuring Lambda function memory': 1,769 MB = 1 vCPU, up to 6 "
                            "vCPUs at 10,240 MB", **S3_SOURCES},
)

LAMBDA_2017 = LAMBDA.with_(
    name="lambda-2017",
    gflops_per_core={op: 14.0 for op in LOCAL_GFLOPS_PER_CORE} | {"sum": 0.5, "row_norms": 0.5},
    mb_per_vcpu=None, cores_per_worker=1.0, memory_mb=1536, max_memory_mb=1536,
    read_mb_s=30.0, write_mb_s=30.0, concurrency=3000,
    sources={"gflops_per_core": "Jonas et al. 2017, Fig. 3: ~40 TFLOPS at 2,800 workers, ~14 GFLOPS per worker "
                                "(4096^2 float64 matmuls in each worker) -- CALIBRATION for this profile",
             "memory_mb": "Lambda's maximum in 2017: 1,536 MB",
             "concurrency": "the papers ran 3,000 workers (a raised account limit)", **S3_SOURCES},
)

PLATFORMS = {p.name: p for p in (LOCAL, LAMBDA, LAMBDA_2017)}


def platform(name: "str | Platform") -> Platform:
    """A platform by name (or the given one)."""
    if isinstance(name, Platform):
        return name
    try:
        return PLATFORMS[name]
    except KeyError:
        raise ValueError(f"unknown platform {name!r}; choose one of {sorted(PLATFORMS)}") from None
