"""List prices of what a numpywren job uses on AWS, kept in one place with their date and source.

Used by ``Report.cost()`` ("on Lambda this would cost about ...") and by the
cloud simulator's predictions. Prices are AWS's public on-demand list prices
for us-east-1 (N. Virginia), as recorded on ``RECORDED``; this machine cannot
reach AWS, so they were not re-checked online: verify them on the pages in
``SOURCES`` before quoting a number. Free tiers are ignored (a job's cost, not
a bill).
"""
from __future__ import annotations

from dataclasses import dataclass

RECORDED = "2026-11-26"
REGION = "us-east-1"
SOURCES = {
    "lambda": "https://aws.amazon.com/lambda/pricing/",
    "s3": "https://aws.amazon.com/s3/pricing/",
}

#: Lambda compute, USD per GB-second of configured memory, by architecture (first pricing tier).
LAMBDA_GB_SECOND = {"x86_64": 0.0000166667, "arm64": 0.0000133334}
#: Lambda requests, USD per invocation ($0.20 per million).
LAMBDA_REQUEST = 0.20 / 1e6
#: S3 Standard requests, USD each: PUT, COPY, POST, LIST ($0.005 per 1,000); GET and others ($0.0004 per 1,000).
S3_PUT = 0.005 / 1000
S3_GET = 0.0004 / 1000
#: Lambda bills duration in 1 ms increments.
LAMBDA_BILLING_MS = 1


@dataclass
class Cost:
    """An estimate in USD, by item."""

    lambda_compute: float
    lambda_requests: float
    s3_puts: float
    s3_gets: float

    @property
    def total(self) -> float:
        return self.lambda_compute + self.lambda_requests + self.s3_puts + self.s3_gets

    def __str__(self) -> str:
        return (f"${self.total:.4f} (Lambda compute ${self.lambda_compute:.4f}, invocations "
                f"${self.lambda_requests:.4f}, S3 PUT/LIST ${self.s3_puts:.4f}, GET ${self.s3_gets:.4f}; "
                f"{REGION} list prices of {RECORDED})")


def estimate(task_seconds: float, invocations: int, puts: int, gets: int, memory_mb: int = 3008,
             arch: str = "x86_64") -> Cost:
    """Cost of ``invocations`` Lambda calls running ``task_seconds`` in total at ``memory_mb``, plus S3 requests."""
    if arch not in LAMBDA_GB_SECOND:
        raise ValueError(f"arch must be one of {sorted(LAMBDA_GB_SECOND)}, got {arch!r}")
    if memory_mb < 128 or task_seconds < 0 or min(invocations, puts, gets) < 0:
        raise ValueError("memory_mb must be >= 128 and the counts >= 0")
    gb_seconds = task_seconds * memory_mb / 1024
    return Cost(gb_seconds * LAMBDA_GB_SECOND[arch], invocations * LAMBDA_REQUEST, puts * S3_PUT, gets * S3_GET)
