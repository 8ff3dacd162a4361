"""The cloud simulator against measurements: predicted vs published (PyWren, numpywren) and vs this machine.

Each row is one measured number and the simulator's prediction of it
(numpywren.simulate, parameters in numpywren/sim_params.py, none changed per
case). ``kind`` says what a row is: ``validation`` (the parameters were not
derived from it) or ``calibration`` (a parameter was taken from the same
measurement, so agreement is by construction; shown for completeness).

* local: every numpywren run of benchmarks/results/gemm.csv (``python -m
  benchmarks.gemm``) and of benchmarks/results/linalg.csv (``python -m
  benchmarks.linalg``: Cholesky), predicted with the ``local`` platform
  (measured ``seconds`` = the scheduler's wall time, Report.wall_seconds);
  target within 20%. The local parameters come from ``python -m
  benchmarks.sim_calibrate`` (kernel rates, a one-task job's fixed costs).
* published: PyWren (Jonas et al. 2017, calibration) and the numpywren
  README's table of December 2017 (github.com/Vaishaal/numpywren, commit
  f492742, imgs/numpywren_results.png), predicted with the ``numpywren-2017``
  profile (the binops.gemm of that time on PyWren 2017); target within 30%.

Also writes the predicted scaling curve of a 65536^2 matmul (tile 4096) on
today's Lambda for W = 1 ... 3,000 (``predict_scaling.csv`` + PNG).

    python -m benchmarks.predict [--gemm-csv ...] [--linalg-csv ...] [--calibration-csv ...] [--tiny]
"""
from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

from benchmarks import common
from numpywren import simulate
from numpywren.predict import SCALING_WORKERS, plot_scaling
from numpywren.sim_params import LAMBDA_2017

RESULTS = Path(__file__).resolve().parent / "results"
GEMM_CSV = RESULTS / "gemm.csv"
LINALG_CSV = RESULTS / "linalg.csv"
CALIBRATION_CSV = RESULTS / "sim_calibrate.csv"
X_ROWS = 1_200_000
#: the shard size of that time's ImageNet-scale (1,281,167 rows) matrices: BigMatrix(..., shard_sizes=[4096,
#: 4096]) in backwards_solve.py (github.com/Vaishaal/numpywren, 9b0ce29, 2018-02-02) and the default
#: shard_size_0=4096 of lambdapack/sharded_matrix.py (2f1b4c5, 2017-07-19); not stated with the table itself
NUMPYWREN_TILE = 4096
README_TABLE = ("numpywren README, github.com/Vaishaal/numpywren commit f492742 (2017-12-11), "
                "imgs/numpywren_results.png")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gemm-csv", default=str(GEMM_CSV), help="measured local GEMM runs (benchmarks.gemm)")
    parser.add_argument("--linalg-csv", default=str(LINALG_CSV),
                        help="measured local Cholesky runs (benchmarks.linalg)")
    parser.add_argument("--calibration-csv", default=str(CALIBRATION_CSV),
                        help="the simulator's local calibration (benchmarks.sim_calibrate): the one-task job")
    parser.add_argument("--no-published", action="store_true", help="skip the (slow) 3,000-worker published cases")
    common.add_common_arguments(parser)


def _runs(path: str) -> list[dict]:
    with open(path, newline="") as f:
        return [r for r in csv.DictReader(line for line in f if not line.startswith("#"))]


def local_rows(gemm_csv: str, linalg_csv: str, tiny: bool) -> list[dict]:
    """Every numpywren run in gemm.csv and linalg.csv, predicted on the local platform."""
    rows = []
    for path, op, what in ((gemm_csv, "matmul", "GEMM"), (linalg_csv, "cholesky", "Cholesky")):
        if not Path(path).exists():
            rows.append({"case": f"local {what}", "source": path, "kind": "skipped", "note": "no such file"})
            continue
        runs = [r for r in _runs(path) if r["system"] == "numpywren" and r.get("seconds")]
        for r in runs[:1] if tiny else runs:
            n, tile, workers = int(r["n"]), int(r["tile"]), int(r["workers"])
            p = simulate.predict(op, (n,), workers, tile, platform="local", dtype=r["dtype"])
            rows.append(_row(f"local {what} N={n} tile={tile}, {workers} workers",
                             f"{Path(path).name} (benchmarks.{'gemm' if op == 'matmul' else 'linalg'})",
                             "validation", p, float(r["seconds"]), p.seconds, "s", 20))
    return rows


def calibration_rows(path: str) -> list[dict]:
    """The one-task job the fixed costs were measured on (by construction; shows the arithmetic)."""
    if not Path(path).exists():
        return []
    job = next((r for r in _runs(path) if r["kind"] == "job" and r["tasks"] == "1"), None)
    if job is None:
        return []
    p = simulate.predict("matmul", (64,), 2, 64, platform="local")
    return [_row("local one-task job (64^2 matmul), whole job", f"{Path(path).name} (benchmarks.sim_calibrate)",
                 "calibration", p, float(job["job_s"]), p.job_seconds, "s", 20)]


def published_rows(tiny: bool) -> list[dict]:
    rows = []
    # Jonas et al. 2017, Fig. 3 / Fig. 4: the lambda-2017 platform takes its per-worker rates from these
    # figures, so these two rows are calibration: the model only multiplies them by the workers running.
    gflops = LAMBDA_2017.gflops("gemm", LAMBDA_2017.memory_mb)
    rows.append(_row("PyWren peak, 4096^2 matmuls in each of 2,800 workers", "Jonas et al. 2017, Fig. 3",
                     "calibration", None, 40.0, gflops * 2800 / 1e3, "TFLOPS", 30))
    rows.append(_row("PyWren S3 aggregate read, 2,800 workers", "Jonas et al. 2017, Fig. 4 (60-80 GB/s; mid 70)",
                     "calibration", None, 70.0, LAMBDA_2017.read_mb_s * 2800 / 1e3, "GB/s", 30))
    # The numpywren README's table (Dec 2017): X X^T, X 1.2M x D, 3,000 cores. binops.gemm of that time
    # wrote a BigSymmetricMatrix and mapped one call per block of one triangle: today's syrk plan has the
    # same tasks (one per lower tile, reading the pairs X[i, k], X[j, k]); the numpywren-2017 profile runs
    # them as that code did (serial reads, HEAD + GET per block, PyWren's per-call costs).
    rows_x = 12_000 if tiny else X_ROWS
    workers = 30 if tiny else 3000
    for d, seconds in ((4096, 1320.0), (18432, 2520.0)):
        began = time.perf_counter()
        p = simulate.predict("syrk", (rows_x, d), workers, NUMPYWREN_TILE if not tiny else 1024,
                             platform="numpywren-2017", concurrency=workers)
        real = time.perf_counter() - began
        rows.append(_row(f"numpywren 2017 X X^T, X {rows_x:,} x {d:,}, {workers:,} cores", README_TABLE,
                         "validation", p, seconds, p.job_seconds, "s", 30, simulate_real_s=real))
    return rows


def _row(case, source, kind, p, published, predicted, unit, target, **extra) -> dict:
    error = predicted / published - 1
    row = {"case": case, "source": source, "kind": kind, "unit": unit, "published_or_measured": published,
           "predicted": predicted, "error_pct": 100 * error, "target_pct": target, "met": abs(error) <= target / 100}
    if p is not None:
        row.update({"platform": p.platform, "workers": p.workers, "bound": p.bound, "tasks": p.tasks,
                    "predicted_gflops": p.gflops, "cost_usd": p.cost.total if p.cost else None,
                    "driver_s": p.driver_seconds})
    return {**row, **extra}


def scaling_rows(tiny: bool, out) -> tuple[list[dict], Path | None]:
    n, tile, workers = (8192, 1024, (1, 4, 16, 64)) if tiny else (65536, 4096, SCALING_WORKERS)
    curve = simulate.scaling("matmul", (n,), tile, workers, platform="lambda", concurrency=max(workers))
    return [p.row() for p in curve], curve


def main(argv=None) -> int:
    args = common.parse_args("predict", __doc__, add_arguments, argv)
    info = common.machine_info()
    print(common.describe_machine(info))
    rows = local_rows(args.gemm_csv, args.linalg_csv, args.tiny) + calibration_rows(args.calibration_csv)
    if not args.no_published:
        rows += published_rows(args.tiny)
    common.print_table(rows, [("case", "case", ""), ("kind", "kind", ""), ("published_or_measured", "measured", ".3g"),
                              ("predicted", "predicted", ".3g"), ("unit", "unit", ""), ("error_pct", "error %", "+.0f"),
                              ("met", "within target", ""), ("bound", "bound", "")],
                       title="simulator: predicted vs measured")
    paths = [common.write_csv("predict", rows, info, args.out)]
    scaling, curve = scaling_rows(args.tiny, args.out)
    paths.append(common.write_csv("predict_scaling", scaling, info, args.out))
    common.print_table(scaling, [("workers", "workers", "d"), ("seconds", "s", ".1f"), ("gflops", "GFLOPS", ".0f"),
                                 ("bound", "bound", ""), ("cost_usd", "cost $", ".2f")],
                       title=f"predicted scaling: {curve[0].op} {curve[0].sizes[0]}^2, tile {curve[0].tile}, lambda")
    if not args.no_plot and common.pyplot() is not None:
        path = common.results_dir(args.out) / "predict_scaling.png"
        plot_scaling(curve, path)
        paths.append(path)
    common.report_paths(paths)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
