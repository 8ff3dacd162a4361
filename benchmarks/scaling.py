"""GEMM throughput and store traffic as the number of local workers grows: strong and weak scaling.

* strong scaling: the same N x N GEMM (``--n``) on 1, 2, ... ``--max-workers``
  workers; ideal is GFLOPS growing linearly with workers.
* weak scaling: the work per worker stays constant, N grows as
  ``--weak-n x workers^(1/3)`` (rounded to whole tiles); ideal is constant
  GFLOPS per worker.

Each worker is a process with 1 BLAS thread, so past the machine's core count
(2 here) workers share cores and the curves flatten: the default maximum of 4
shows that on purpose. ``store MB/s`` is the bytes all workers read and wrote
divided by the job's wall time. Inputs are written to the store before timing.
Run with ``python -m benchmarks.scaling`` or ``numpywren bench scaling``.
"""
from __future__ import annotations

import argparse
import sys
import uuid

import numpy as np

from benchmarks import common


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-workers", type=int, default=4, help="largest worker count (default 4)")
    parser.add_argument("--n", type=int, default=6144, help="N of the strong-scaling GEMM (default 6144)")
    parser.add_argument("--weak-n", type=int, default=4096,
                        help="N of the weak-scaling GEMM at 1 worker (default 4096)")
    parser.add_argument("--tile", type=int, default=1024, help="tile size (default 1024)")
    parser.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    parser.add_argument("--store", default=None, help="store URL (default: a temporary local folder)")
    parser.add_argument("--repeat", type=int, default=2, help="runs per point, best kept (default 2)")
    common.add_common_arguments(parser)


def main(argv: list[str] | None = None) -> int:
    return run(common.parse_args("scaling", __doc__, add_arguments, argv))


def weak_size(base_n: int, workers: int, tile: int) -> int:
    """N whose GEMM work (N^3) is ``workers`` times base_n's, rounded to a quarter tile.

    Whole tiles would be too coarse (3 and 4 workers would both get 6 tiles of
    1024); a partial last tile keeps the work per worker within a few percent.
    """
    step = max(1, tile // 4)
    return max(tile, round(base_n * workers ** (1 / 3) / step) * step)


def run(args: argparse.Namespace) -> int:
    from numpywren import LocalExecutor

    if args.tiny:
        args.max_workers, args.n, args.weak_n, args.tile, args.repeat = 2, 256, 256, 128, 1
    if args.max_workers < 1 or args.repeat < 1:
        raise SystemExit("--max-workers and --repeat must be at least 1")
    info = common.machine_info()
    cores = int(info["usable_cores"])
    print(f"Scaling benchmark on {common.describe_machine(info)}")
    print(f"GEMM {args.dtype}, tile {args.tile}, 1 BLAS thread per worker; strong N={args.n}, "
          f"weak N={args.weak_n} x workers^(1/3)")
    rows = []
    inputs: dict[int, tuple] = {}
    with common.scratch_store(args.store, "scaling") as store:
        prefix = f"bench-scaling-{uuid.uuid4().hex[:8]}"
        try:
            for workers in range(1, args.max_workers + 1):
                with LocalExecutor(workers, store, blas_threads=1) as ex:
                    common.warm_up(ex)
                    for mode, n in (("strong", args.n), ("weak", weak_size(args.weak_n, workers, args.tile))):
                        if n not in inputs:
                            inputs[n] = _store_inputs(n, args, store, f"{prefix}/n{n}")
                        rows.append(_measure(mode, workers, n, inputs[n], ex, args.repeat, f"{prefix}/C"))
                        r = rows[-1]
                        print(f"  {mode} workers={workers} N={n}: {r['seconds']:.2f} s, {r['gflops']:.1f} GFLOPS, "
                              f"store {r['store_mb_s']:.0f} MB/s", flush=True)
        finally:
            for A, B, _ in inputs.values():
                A.delete()
                B.delete()
    _add_speedups(rows)
    print()
    common.print_table(rows, COLUMNS, title=f"Scaling ({cores} cores; speedup and efficiency relative to 1 "
                                            "worker; weak-scaling efficiency = GFLOPS per worker / 1 worker's)")
    info.update({"tile": str(args.tile), "strong_n": str(args.n), "weak_base_n": str(args.weak_n)})
    paths = [common.write_csv("scaling", rows, info, args.out)]
    if not args.no_plot:
        paths.append(_plot(rows, cores, args))
    common.report_paths(paths)
    return 0


def _store_inputs(n: int, args, store, key: str):
    from numpywren import BigMatrix

    rng = np.random.default_rng(n)
    with common.Stopwatch() as t:
        A = BigMatrix.from_numpy(rng.standard_normal((n, n)).astype(args.dtype), args.tile, store, f"{key}/A")
        B = BigMatrix.from_numpy(rng.standard_normal((n, n)).astype(args.dtype), args.tile, store, f"{key}/B")
    return A, B, t.seconds


def _measure(mode: str, workers: int, n: int, inputs, executor, repeat: int, out_key: str) -> dict:
    import numpywren

    A, B, store_seconds = inputs
    best = None
    for _ in range(repeat):
        C = numpywren.matmul(A, B, out=out_key, executor=executor, progress=False)
        if best is None or C.report.wall_seconds < best.wall_seconds:
            best = C.report
    C.delete()
    r = best
    moved = r.bytes_read + r.bytes_written
    return {"mode": mode, "workers": workers, "n": n, "tile": A.tile_shape[0], "tasks": r.tasks,
            "gflop_per_worker": r.flops / workers / 1e9, "seconds": r.wall_seconds, "gflops": r.gflops, "gflops_per_worker": r.gflops / workers,
            "store_mb_s": moved / r.wall_seconds / 1e6, "read_mb": r.bytes_read / 1e6,
            "written_mb": r.bytes_written / 1e6,
            "read_mb_s_per_reader": r.bytes_read / r.read_seconds / 1e6 if r.read_seconds else 0.0,
            "io_fraction": r.io_fraction, "kernel_gflops_per_worker": r.kernel_gflops_per_worker,
            "store_inputs_s": store_seconds}


def _add_speedups(rows: list[dict]) -> None:
    one = {r["mode"]: r for r in rows if r["workers"] == 1}
    for r in rows:
        base = one.get(r["mode"])
        if base is None:
            continue
        r["speedup"] = r["gflops"] / base["gflops"]
        r["efficiency"] = r["gflops_per_worker"] / base["gflops_per_worker"]


COLUMNS = [("mode", "mode", ""), ("workers", "workers", ""), ("n", "N", ""),
           ("gflop_per_worker", "GFLOP/worker", ".0f"), ("seconds", "s", ".2f"),
           ("gflops", "GFLOPS", ".1f"), ("gflops_per_worker", "GF/worker", ".1f"), ("speedup", "speedup", ".2f"),
           ("efficiency", "efficiency", ".0%"), ("store_mb_s", "store MB/s", ".0f"),
           ("io_fraction", "I/O", ".1%"), ("kernel_gflops_per_worker", "kernel GF/w", ".1f")]


def _plot(rows: list[dict], cores: int, args):
    plt = common.pyplot()
    if plt is None:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for mode, marker in (("strong", "o"), ("weak", "s")):
        pts = [r for r in rows if r["mode"] == mode]
        ws = [r["workers"] for r in pts]
        label = f"strong (N={args.n})" if mode == "strong" else f"weak (N={args.weak_n}·workers^1/3)"
        left.plot(ws, [r["gflops"] for r in pts], marker=marker, label=label)
        right.plot(ws, [r["store_mb_s"] for r in pts], marker=marker, label=label)
    strong = [r for r in rows if r["mode"] == "strong"]
    if strong:
        ws = [r["workers"] for r in strong]
        left.plot(ws, [strong[0]["gflops"] * w for w in ws], "k:", label="linear from 1 worker")
    for ax in (left, right):
        ax.axvline(cores, color="grey", linestyle="--", linewidth=1, label=f"{cores} cores")
        ax.set_xlabel("workers (processes x 1 BLAS thread)")
        ax.set_xticks(sorted({r["workers"] for r in rows}))
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=8)
    left.set_ylabel("GFLOPS")
    left.set_title(f"GEMM throughput, tile {args.tile}, {args.dtype}")
    right.set_ylabel("store MB/s (read + written, all workers)")
    right.set_title("store traffic")
    return common.save_figure(fig, "scaling", args.out)


if __name__ == "__main__":
    sys.exit(main())
