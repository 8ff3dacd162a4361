"""The cloud simulator against measurements: predicted vs published (PyWren, numpywren) and vs this machine.

Each row is one measured number and the simulator's prediction of it
(numpywren.simulate, parameters in numpywren/sim_params.py, none changed per
case). ``kind`` says what a row is: ``validation`` (the parameters were not
derived from it) or ``calibration`` (the platform's per-worker rate was taken
from the same figure, so agreement is by construction; shown for completeness).

* local: every numpywren row of benchmarks/results/gemm.csv (``python -m
  benchmarks.gemm``), predicted with the ``local`` platform; target within 20%.
* published: Jonas et al. 2017 ("Occupy the Cloud") and Shankar et al. 2018
  (numpywren), predicted with the ``lambda-2017`` platform; target within 30%.

Also writes the predicted scaling curve of a 65536^2 matmul (tile 4096) on
today's Lambda for W = 1 ... 3,000 (``predict_scaling.csv`` + PNG).

    python -m benchmarks.predict [--gemm-csv benchmarks/results/gemm.csv] [--tiny]
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

GEMM_CSV = Path(__file__).resolve().parent / "results" / "gemm.csv"
X_ROWS = 1_200_000
NUMPYWREN_TILE = 4096  # assumed: the tile (block) size of the published runs is not restated here


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gemm-csv", default=str(GEMM_CSV), help="measured local GEMM runs (benchmarks.gemm)")
    parser.add_argument("--no-published", action="store_true", help="skip the (slow) 3,000-worker published cases")
    common.add_common_arguments(parser)


def local_rows(path: str, tiny: bool) -> list[dict]:
    """Every numpywren run in gemm.csv, predicted on the local platform."""
    with open(path, newline="") as f:
        runs = [r for r in csv.DictReader(line for line in f if not line.startswith("#")) if r["system"] == "numpywren"]
    if tiny:
        runs = runs[:1]
    rows = []
    for r in runs:
        n, tile, workers = int(r["n"]), int(r["tile"]), int(r["workers"])
        p = simulate.predict("matmul", (n,), workers, tile, platform="local", dtype=r["dtype"])
        rows.append(_row(f"local GEMM N={n} tile={tile}", f"{Path(path).name} (benchmarks.gemm)", "validation", p,
                         float(r["seconds"]), p.seconds, "s", 20))
    return rows


def published_rows(tiny: bool) -> list[dict]:
    rows = []
    # Jonas et al. 2017, Fig. 3 / Fig. 4: the lambda-2017 platform takes its per-worker rates from these
    # figures, so these two rows are calibration: the model only multiplies them by the workers running.
    gflops = LAMBDA_2017.gflops("gemm", LAMBDA_2017.memory_mb)
    rows.append(_row("PyWren peak, 4096^2 matmuls in each of 2,800 workers", "Jonas et al. 2017, Fig. 3",
                     "calibration", None, 40.0, gflops * 2800 / 1e3, "TFLOPS", 30))
    rows.append(_row("PyWren S3 aggregate read, 2,800 workers", "Jonas et al. 2017, Fig. 4 (60-80 GB/s; mid 70)",
                     "calibration", None, 70.0, LAMBDA_2017.read_mb_s * 2800 / 1e3, "GB/s", 30))
    # Shankar et al. 2018: X X^T with X of 1.2M rows on 3,000 cores. The papers count 2 n^2 d flops (the
    # full product); whether the run computed one triangle or all tiles is not restated here, so both.
    rows_x = 12_000 if tiny else X_ROWS
    workers = 30 if tiny else 3000
    for d, seconds in ((4096, 1320.0), (18432, 2520.0)):
        for how, op, sizes in (("all tiles (GEMM)", "matmul", (rows_x, d, rows_x)),
                               ("one triangle (SYRK)", "syrk", (rows_x, d))):
            began = time.perf_counter()
            p = simulate.predict(op, sizes, workers, NUMPYWREN_TILE if not tiny else 1024, platform="lambda-2017",
                                 concurrency=workers)
            real = time.perf_counter() - began
            rows.append(_row(f"numpywren X X^T, X {rows_x:,} x {d:,}, {how}, {workers:,} workers",
                             "Shankar et al. 2018 (numpywren), as quoted in issue 21", "validation", p,
                             seconds, p.seconds, "s", 30, simulate_real_s=real))
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
    rows = local_rows(args.gemm_csv, args.tiny)
    if not args.no_published:
        rows += published_rows(args.tiny)
    rows.append({"case": "local Cholesky", "source": "-", "kind": "skipped",
                 "note": "numpywren.cholesky is not on this branch (predict uses a stand-in DAG until it lands)"})
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
