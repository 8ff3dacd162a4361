"""Automatic tiles: is the tile ``tile_shape=None`` chooses within 10% of the best tile of a sweep?

For each case (GEMM ``A @ B`` at ``--gemm`` sizes, Cholesky at ``--cholesky`` sizes) numpywren runs the
same job with every tile of a sweep on one ``LocalExecutor(--workers, blas_threads=1)``, tiles interleaved
within each round (``--repeat`` rounds; ``--repeat-large`` for N >= 16384), and each tile keeps the
median of its rounds. The chosen tile is ``numpywren.tiling.choose_tile`` for that shape, dtype,
operation and executor (a pure function of them, computed after the measurements, so ``--from-csv``
re-reports a saved sweep with the current rule). The timed part is the whole call (plan, run, verify),
inputs stored before the clock starts. A numpy/scipy peer with ``--workers`` BLAS threads runs in a
subprocess (OpenBLAS with 2 threads has segfaulted at N=16384: a crash there is reported as a crash).
Every result is checked against the inputs with a random-vector residual.

Run: ``nice python -m benchmarks.tiles``; CSV ``benchmarks/results/tiles.csv`` (one row per run) and a
summary table printed at the end.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import textwrap
import time
import uuid

import numpy as np

from benchmarks import common

#: default sweeps: powers of two around what a 2-worker machine could want (N/16 ... N, at least 256)
SWEEP = {("gemm", 2048): (256, 512, 1024, 2048), ("gemm", 4096): (512, 1024, 2048, 4096),
         ("gemm", 8192): (2048, 4096, 8192), ("gemm", 16384): (4096, 8192),
         ("cholesky", 4096): (512, 1024, 2048, 4096), ("cholesky", 8192): (512, 1024, 2048, 4096, 8192)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gemm", type=common.int_list, default=[2048, 4096, 8192, 16384],
                        help="GEMM sizes N (default 2048,4096,8192,16384)")
    parser.add_argument("--cholesky", type=common.int_list, default=[4096, 8192],
                        help="Cholesky sizes N (default 4096,8192)")
    parser.add_argument("--workers", type=int, default=2, help="numpywren workers = peer BLAS threads (default 2)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds per case; median per tile (default 3)")
    parser.add_argument("--repeat-large", type=int, default=1, help="rounds for N >= 16384 (default 1)")
    parser.add_argument("--no-peer", action="store_true", help="skip the numpy/scipy peer")
    parser.add_argument("--from-csv", nargs="+", default=None,
                        help="re-report saved tiles.csv files (nothing is run)")
    common.add_common_arguments(parser)


def main(argv: list[str] | None = None) -> int:
    return run(common.parse_args("tiles", __doc__, add_arguments, argv))


def run(args: argparse.Namespace) -> int:
    if args.from_csv:
        rows = []
        for path in args.from_csv:
            with open(path) as f:
                rows += csv.DictReader(line for line in f if not line.startswith("#"))
        print(summary(rows, args.workers))
        return 0
    if args.tiny:
        args.gemm, args.cholesky, args.repeat, args.no_peer = [256], [256], 1, True
    info = common.machine_info()
    print(f"tile sweep on {common.describe_machine(info)}; numpywren {args.workers} workers x 1 BLAS thread",
          flush=True)
    rows: list[dict] = []
    info["workers"] = str(args.workers)
    with common.scratch_store(None, "tiles") as store, _executor(args.workers, store) as ex:
        cases = [("gemm", n) for n in args.gemm] + [("cholesky", n) for n in args.cholesky]
        for op, n in sorted(cases, key=lambda case: _flops(*case)):  # cheapest first: a cut-off run keeps most
            rows += _case(op, n, args, store, ex)
            common.write_csv("tiles", rows, info, args.out)  # a partial sweep survives an interrupted run
    info["load_average_1m_end"] = f"{os.getloadavg()[0]:.2f}"
    path = common.write_csv("tiles", rows, info, args.out)
    print(summary([{k: str(v) for k, v in r.items()} for r in rows], args.workers))
    common.report_paths([path])
    return 0


def _executor(workers: int, store):
    from benchmarks import engines

    return engines.open_executor("local", workers, store)


def _flops(op: str, n: int) -> float:
    return 2.0 * n ** 3 if op == "gemm" else n ** 3 / 3.0


def sweep(op: str, n: int) -> tuple[int, ...]:
    return SWEEP.get((op, n), tuple(t for t in (256, 512, 1024, 2048, 4096, 8192) if n // 16 <= t <= n) or (n,))


def _case(op: str, n: int, args, store, ex) -> list[dict]:
    """Every tile of the sweep, interleaved, in rounds; the peer once per round (in a subprocess)."""
    from numpywren import BigMatrix

    rng = np.random.default_rng(n)
    if op == "gemm":
        arrays = {"A": rng.standard_normal((n, n)), "B": rng.standard_normal((n, n))}
    else:
        from benchmarks.linalg import spd_matrix

        arrays = {"A": spd_matrix(n)}
    tiles = sweep(op, n) if not args.tiny else (64, 128, 256)
    rounds = args.repeat_large if n >= 16384 else args.repeat
    rows: list[dict] = []
    for round_ in range(rounds):
        if not args.no_peer and round_ == 0:  # a reference, once per case
            rows.append(_peer(op, n, args.workers, round_))
        for tile in tiles:
            prefix = f"bench-tiles-{uuid.uuid4().hex[:8]}"
            inputs = {k: BigMatrix.from_numpy(a, tile, store, f"{prefix}/{k}") for k, a in arrays.items()}
            load = os.getloadavg()[0]
            try:
                row = _numpywren(op, n, tile, inputs, arrays, ex, f"{prefix}/out")
            finally:
                for m in inputs.values():
                    m.delete()
            rows.append({"op": op, "n": n, "round": round_, "load_1m": load, **row})
            print(f"  {op} N={n} round {round_} tile {tile}: {row['seconds']:.2f} s "
                  f"({row['gflops']:.1f} GFLOPS, residual {row['residual']:.1e}, load {load:.1f})", flush=True)
    return rows


def _numpywren(op: str, n: int, tile: int, inputs: dict, arrays: dict, ex, out: str) -> dict:
    import numpywren

    start = time.perf_counter()
    if op == "gemm":
        C = numpywren.matmul(inputs["A"], inputs["B"], out=out, executor=ex, progress=False)
    else:
        C = numpywren.cholesky(inputs["A"], out=out, executor=ex, progress=False)
    seconds = time.perf_counter() - start
    report = C.report
    v = np.random.default_rng(1).standard_normal(n)
    c = C.to_numpy()
    if op == "gemm":
        want, got = arrays["A"] @ (arrays["B"] @ v), c @ v
    else:
        want, got = arrays["A"] @ v, c @ (c.T @ v)
    del c
    C.delete()
    flops = _flops(op, n)
    return {"system": "numpywren", "tile": tile, "seconds": seconds, "gflops": flops / seconds / 1e9,
            "scheduler_s": report.wall_seconds, "tasks": report.tasks,
            "residual": float(np.linalg.norm(got - want) / np.linalg.norm(want))}


PEER = """
import json, sys, time
import numpy as np, scipy.linalg
from threadpoolctl import threadpool_limits
op, n, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(n)
if op == "gemm":
    a, b = rng.standard_normal((n, n)), rng.standard_normal((n, n))
else:
    from benchmarks.linalg import spd_matrix
    a = spd_matrix(n)
with threadpool_limits(limits=threads, user_api="blas"):
    start = time.perf_counter()
    c = a @ b if op == "gemm" else scipy.linalg.cholesky(a, lower=True, check_finite=False)
    seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds}))
"""


def _peer(op: str, n: int, threads: int, round_: int) -> dict:
    """numpy ``a @ b`` or ``scipy.linalg.cholesky`` with ``threads`` BLAS threads, in its own process."""
    system = "numpy" if op == "gemm" else "scipy"
    base = {"op": op, "n": n, "round": round_, "load_1m": os.getloadavg()[0], "system": system, "tile": n}
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(PEER), op, str(n), str(threads)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        why = (f"crashed (signal {-proc.returncode})" if proc.returncode < 0 else
               f"failed (exit {proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}")
        print(f"  {op} N={n} round {round_} {system}: {why}", flush=True)
        return {**base, "note": why}
    seconds = json.loads(proc.stdout.strip().splitlines()[-1])["seconds"]
    flops = _flops(op, n)
    print(f"  {op} N={n} round {round_} {system}: {seconds:.2f} s", flush=True)
    return {**base, "seconds": seconds, "gflops": flops / seconds / 1e9}


def summary(rows: list[dict], workers: int) -> str:
    """Per case: the median seconds of each tile, the best, the chosen tile and its time over the best."""
    from numpywren.tiling import choose_tile

    cases: dict[tuple[str, int], dict] = {}
    for r in rows:
        if r.get("seconds") in (None, ""):
            continue
        case = cases.setdefault((r["op"], int(r["n"])), {})
        case.setdefault((r["system"], int(r["tile"])), []).append(float(r["seconds"]))
    lines = ["case            tiles: median s (rounds)                              best  chosen  chosen/best  peer s",
             "-" * 110]
    for (op, n), times in sorted(cases.items()):
        medians = {tile: statistics.median(s) for (system, tile), s in times.items() if system == "numpywren"}
        peer = [statistics.median(s) for (system, _), s in times.items() if system != "numpywren"]
        best = min(medians, key=medians.get)
        chosen = choose_tile((n, n), "float64", workers=workers, operation="matmul" if op == "gemm" else op,
                             platform="local")[0]
        ratio = medians[chosen] / medians[best] if chosen in medians else float("nan")
        swept = ", ".join(f"{t}: {medians[t]:.2f} ({len(times[('numpywren', t)])})" for t in sorted(medians))
        lines.append(f"{op:8s} N={n:<6d} {swept:52s} {best:5d} {chosen:6d}  {ratio:10.3f}  "
                     + (f"{peer[0]:.2f}" if peer else "-"))
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
