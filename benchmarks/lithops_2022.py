"""The lambda-2022 profile (numpywren.sim_params.LAMBDA_2022) against the runs none of its parameters came from.

Every parameter of the profile comes from Lithops' 1,000-function runs (lithops-cloud/applications,
``benchmarks/flops/aws_lambda/1000_flops.pickle`` and ``benchmarks/object_storage/aws_s3/
1000_{read,write}.pickle``, eu-west-1, June 2022). The same campaign also ran 100 functions of each
(``100_flops.pickle``, commit 826d482; ``100_read.pickle`` and ``100_write.pickle``, commit 0ee402d): the
cases here. Each is predicted from the profile the way the simulator charges a task (numpywren.simulate:
invoke latency, then a request's latency plus bytes at the profile's MB/s, or flops at its GFLOPS) and set
beside what was published.

The pickles are read with an unpickler that refuses every global (dicts, lists, numbers and strings only).
Get them from a clone of the repository::

    git -C applications show 826d482:benchmarks/flops/aws_lambda/100_flops.pickle > DIR/100_flops.pickle
    git -C applications show 0ee402d:benchmarks/object_storage/aws_s3/100_read.pickle > DIR/100_read.pickle
    git -C applications show 0ee402d:benchmarks/object_storage/aws_s3/100_write.pickle > DIR/100_write.pickle
    python -m benchmarks.lithops_2022 DIR
"""
from __future__ import annotations

import argparse
import pickle
import statistics
import sys
from pathlib import Path

from numpywren.sim_params import LITHOPS_2022, platform

MB = 1e6


class _DataOnly(pickle.Unpickler):
    def find_class(self, module, name):  # noqa: D102 - data from the web: no code runs
        raise pickle.UnpicklingError(f"refused global {module}.{name}")


def load(path: Path) -> dict:
    with open(path, "rb") as f:
        return _DataOnly(f).load()


def cases(folder: Path) -> list[tuple[str, float, float, str]]:
    """(case, published, predicted, unit) of the 100-function runs."""
    p = platform("lambda-2022")
    memory = LITHOPS_2022["memory_mb"]
    flops = load(folder / "100_flops.pickle")
    n, loops, matn = flops["workers"], flops["loopcount"], flops["MATN"]
    rate = p.gflops("gemm", memory, matn) * 1e9
    gemm_s = loops * 2 * matn ** 3 / rate
    ends = [w["worker_end_tstamp"] - flops["start_time"] for w in flops["worker_stats"]]
    out = [
        (f"{n} x ({loops} GEMMs {matn}^2), GFLOPS per function (median)",
         statistics.median(r["flops"] for r in flops["results"]) / 1e9, rate / 1e9, "GFLOPS"),
        (f"same, a function's end after the job's start (median)", statistics.median(ends), p.invoke_s + gemm_s, "s"),
        (f"same, the last function's end", max(ends), p.invoke_s + gemm_s, "s"),
        (f"same, effective TFLOPS (all flops / Lithops' total_time)", flops["est_flops"] / flops["total_time"] / 1e12,
         flops["est_flops"] / (p.invoke_s + gemm_s) / 1e12, "TFLOPS"),
    ]
    for kind, mb_s in (("read", p.read_mb_s), ("write", p.write_mb_s)):
        run = load(folder / f"100_{kind}.pickle")
        size = 512 * 2 ** 20  # every function moved one 512 MiB object (Lithops' object_storage benchmark)
        ends = [w["worker_end_tstamp"] - run["start_time"] for w in run["worker_stats"]]
        one = p.invoke_s + p.request_s + size / (mb_s * MB)
        out += [
            (f"{len(run['results'])} x S3 {kind} of 512 MiB, MB/s per function (median)",
             statistics.median(r["mb_rate"] for r in run["results"]), mb_s, "MB/s"),
            (f"same, a function's end after the job's start (median)", statistics.median(ends), one, "s"),
            (f"same, the last function's end", max(ends), one, "s"),
        ]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.lithops_2022", description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="the folder holding 100_flops/100_read/100_write.pickle")
    args = parser.parse_args(argv)
    print("| case (Lithops, 100 functions of 1,024 MB, eu-west-1, June 2022) | published | predicted | error |")
    print("|---|---|---|---|")
    for case, published, predicted, unit in cases(args.folder):
        print(f"| {case} | {published:.3f} {unit} | {predicted:.3f} {unit} | {predicted / published - 1:+.1%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
