"""GEMM side by side: numpywren ``matmul`` vs one numpy ``A @ B`` vs dask.array ``A @ B``.

Every system multiplies the same float matrices and gets the same core budget
(``--workers``, default 2 = this machine's cores):

* numpywren: ``LocalExecutor(workers, blas_threads=1)``, tiles in a store
  (default a LocalStore in a temporary folder). A and B are written to the
  store *before* the clock starts (``store_s`` reports that separately); the
  timed part is the whole job: scheduling, workers reading tiles, multiplying,
  writing C.
* numpy: a single ``a @ b`` with ``workers`` BLAS threads (threadpoolctl).
* dask.array: ``from_array`` with the same chunking, threaded scheduler with
  ``workers`` threads, BLAS limited to 1 thread per process (threads x BLAS
  threads = cores, exactly like numpywren's workers x blas_threads; letting each
  dask thread use 2 BLAS threads oversubscribes the cores and measured no
  faster). Dask works on in-memory arrays: it pays no store I/O at all.

All systems run in ``--repeat`` rounds (default 2) and each keeps its best
round: on a shared machine noise only ever slows a run down. numpy's spread
across rounds is recorded as a noise indicator. Each product is checked
against numpy's (relative Frobenius error). Run with ``python -m benchmarks.gemm``
or ``numpywren bench gemm``.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import uuid

import numpy as np

from benchmarks import common, engines


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", type=common.int_list, default=[2048, 4096, 8192],
                        help="matrix sizes N (N x N @ N x N), default 2048,4096,8192")
    parser.add_argument("--tiles", type=common.int_list, default=[1024, 2048, 4096],
                        help="tile sizes; each is used for the sizes N with N/4 <= tile <= N/2 "
                             "(default 1024,2048,4096)")
    parser.add_argument("--workers", type=int, default=2,
                        help="numpywren workers = dask threads = numpy BLAS threads (default 2)")
    parser.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    parser.add_argument("--store", default=None, help="store URL (default: a temporary local folder)")
    parser.add_argument("--repeat", type=int, default=2,
                        help="rounds of all systems, each keeps its best (default 2)")
    parser.add_argument("--no-dask", action="store_true", help="skip dask.array")
    parser.add_argument("--executor", type=engines.engine_list, default=[],
                        help="also run numpywren's GEMM through these executors (dask, lithops), each with "
                             "--workers workers x 1 BLAS thread, side by side with the LocalExecutor")
    common.add_common_arguments(parser)


def main(argv: list[str] | None = None) -> int:
    return run(common.parse_args("gemm", __doc__, add_arguments, argv))


def run(args: argparse.Namespace) -> int:
    if args.tiny:
        args.sizes, args.tiles, args.repeat = [256], [128], 1
    if args.workers < 1 or args.repeat < 1:
        raise SystemExit("--workers and --repeat must be at least 1")
    if not args.no_dask and _missing("dask.array"):
        print("dask is not installed: skipping the dask.array column (pip install 'numpywren[bench]')")
        args.no_dask = True
    info = common.machine_info()
    print(f"GEMM benchmark on {common.describe_machine(info)}")
    print(f"numpywren: {args.workers} workers x 1 BLAS thread | numpy: {args.workers} BLAS threads | "
          f"dask: {args.workers} threads x 1 BLAS thread | {args.dtype}")
    rows: list[dict] = []
    with common.scratch_store(args.store, "gemm") as store, _executors(args, store) as executors:
        for n in args.sizes:
            tiles = [t for t in args.tiles if n <= 4 * t and 2 * t <= n]
            if not tiles:
                print(f"N={n}: no tile size among {args.tiles} is between N/4 and N/2; skipped")
                continue
            rows += _run_size(n, tiles, args, store, executors)
    _add_ratios(rows)
    _print(rows, args)
    info["workers"] = str(args.workers)
    name = "gemm_executors" if args.executor else "gemm"  # the standard table is not overwritten
    paths = [common.write_csv(name, rows, info, args.out)]
    if not args.no_plot:
        paths.append(_plot(rows, args, name))
    common.report_paths(paths)
    return 0


def _missing(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is None
    except ModuleNotFoundError:
        return True


@contextlib.contextmanager
def _executors(args, store):
    """{system name: executor}: "numpywren" (LocalExecutor) and "numpywren/<engine>" for --executor."""
    with contextlib.ExitStack() as stack:
        executors = {"numpywren": stack.enter_context(engines.open_executor("local", args.workers, store))}
        for engine in dict.fromkeys(args.executor):
            if engine != "local":
                executors[f"numpywren/{engine}"] = stack.enter_context(
                    engines.open_executor(engine, args.workers, store))
        yield executors


def _run_size(n: int, tiles: list[int], args, store, executors: dict) -> list[dict]:
    """Rounds of every system at this N; each keeps its best round (noise on a shared machine only slows)."""
    from threadpoolctl import threadpool_limits

    with common.Stopwatch() as gen:
        rng = np.random.default_rng(n)
        a = rng.standard_normal((n, n)).astype(args.dtype)
        b = rng.standard_normal((n, n)).astype(args.dtype)
    base = {"n": n, "dtype": args.dtype, "workers": args.workers, "generate_s": gen.seconds}
    best: dict[tuple[str, int], dict] = {}
    errors: dict[tuple[str, int], float] = {}
    inputs: dict[int, tuple] = {}
    numpy_seconds: list[float] = []

    def keep(row: dict, result=None) -> None:
        key = (row["system"], row["tile"])
        if result is not None:  # check each system's product once
            errors[key] = _rel_error(result, reference)
        if key not in best or row["seconds"] < best[key]["seconds"]:
            best[key] = {**base, **row}
        _progress({**base, **row})

    try:
        for round_ in range(args.repeat):
            with threadpool_limits(limits=args.workers, user_api="blas"), common.Stopwatch() as t:
                reference = a @ b
            numpy_seconds.append(t.seconds)
            print(f"  N={n} numpy: {t.seconds:.2f} s", flush=True)
            for tile in tiles:
                if tile not in inputs:
                    inputs[tile] = _store_inputs(a, b, tile, store)
                for system, executor in executors.items():
                    row, C = _numpywren(n, inputs[tile], executor, system)
                    keep(row, C.to_numpy() if round_ == 0 else None)
                    C.delete()
                if not args.no_dask:
                    row, c = _dask(a, b, tile, args.workers)
                    keep(row, c if round_ == 0 else None)
                    del c
    finally:
        for A, B, _ in inputs.values():
            A.delete()
            B.delete()
    spread = max(numpy_seconds) / min(numpy_seconds) - 1
    if spread > 0.1 and min(numpy_seconds) > 0.5:  # tiny products are all noise
        print(f"  warning: numpy's {len(numpy_seconds)} runs at N={n} differ by {spread:.0%}: the machine was "
              "busy, ratios at this N are noisy")
    rows = [{"system": "numpy", **base, "tile": n, "blas_threads": args.workers, "cores": args.workers,
             **_speed(n, min(numpy_seconds), args.workers), "rel_error": 0.0, "numpy_spread": spread}]
    for key, row in best.items():
        rows.append({**row, "rel_error": errors[key]})
    return rows


def _store_inputs(a, b, tile, store) -> tuple:
    """A and B as tiles in the store (before any clock starts), and how long writing them took."""
    from numpywren import BigMatrix

    prefix = f"bench-gemm-{uuid.uuid4().hex[:8]}"
    with common.Stopwatch() as stored:
        A = BigMatrix.from_numpy(a, tile, store, f"{prefix}/A")
        B = BigMatrix.from_numpy(b, tile, store, f"{prefix}/B")
    return A, B, stored.seconds


def _numpywren(n: int, inputs: tuple, executor, system: str = "numpywren"):
    import numpywren

    A, B, store_seconds = inputs
    C = numpywren.matmul(A, B, out=f"{A.key.rpartition('/')[0]}/C", executor=executor, progress=False)
    r = C.report
    row = {"system": system, "tile": A.tile_shape[0], "blas_threads": 1, "cores": executor.workers,
           **_speed(n, r.wall_seconds, executor.workers), "store_s": store_seconds,
           "io_fraction": r.io_fraction, "kernel_gflops_per_worker": r.kernel_gflops_per_worker,
           "tasks": r.tasks, "read_mb": r.bytes_read / 1e6, "written_mb": r.bytes_written / 1e6,
           "read_s": r.read_seconds, "io_wait_s": r.io_wait_seconds, "write_s": r.write_seconds,
           "compute_s": r.compute_seconds, "kernel_blas": "; ".join(r.blas)}
    return row, C


def _dask(a, b, tile, threads):
    import dask
    import dask.array as da
    from threadpoolctl import threadpool_limits

    A, B = da.from_array(a, chunks=tile), da.from_array(b, chunks=tile)
    with threadpool_limits(limits=1, user_api="blas"), \
            dask.config.set(scheduler="threads", num_workers=threads), common.Stopwatch() as t:
        c = (A @ B).compute()
    return {"system": "dask", "tile": tile, "blas_threads": 1, "cores": threads,
            **_speed(a.shape[0], t.seconds, threads)}, c


def _speed(n: int, seconds: float, cores: int) -> dict:
    gflops = 2.0 * n ** 3 / seconds / 1e9
    return {"seconds": seconds, "gflops": gflops, "gflops_per_core": gflops / cores}


def _rel_error(c: np.ndarray, reference: np.ndarray) -> float:
    return float(np.linalg.norm(c - reference) / np.linalg.norm(reference))


def _add_ratios(rows: list[dict]) -> None:
    """vs_numpy: GFLOPS / numpy's at the same N; vs_dask: GFLOPS / dask's at the same N and tile;
    vs_local: a numpywren executor's GFLOPS / the LocalExecutor's at the same N and tile."""
    numpy_gf = {r["n"]: r["gflops"] for r in rows if r["system"] == "numpy"}
    dask_gf = {(r["n"], r["tile"]): r["gflops"] for r in rows if r["system"] == "dask"}
    local_gf = {(r["n"], r["tile"]): r["gflops"] for r in rows if r["system"] == "numpywren"}
    for r in rows:
        r["vs_numpy"] = r["gflops"] / numpy_gf[r["n"]]
        if r["system"].startswith("numpywren") and (r["n"], r["tile"]) in dask_gf:
            r["vs_dask"] = r["gflops"] / dask_gf[(r["n"], r["tile"])]
        if r["system"].startswith("numpywren/") and (r["n"], r["tile"]) in local_gf:
            r["vs_local"] = r["gflops"] / local_gf[(r["n"], r["tile"])]


def _progress(row: dict) -> None:
    extra = f", I/O {row['io_fraction']:.0%}" if "io_fraction" in row else ""
    if row["system"] == "numpy":
        return
    print(f"  N={row['n']} tile={row['tile']} {row['system']}: {row['seconds']:.2f} s, "
          f"{row['gflops']:.1f} GFLOPS{extra}", flush=True)


COLUMNS = [("n", "N", ""), ("tile", "tile", ""), ("system", "system", ""), ("seconds", "s", ".2f"),
           ("gflops", "GFLOPS", ".1f"), ("gflops_per_core", "GF/core", ".1f"), ("vs_numpy", "x numpy", ".2f"),
           ("vs_dask", "x dask", ".2f"), ("vs_local", "x local", ".2f"), ("io_fraction", "I/O", ".1%"),
           ("kernel_gflops_per_worker", "kernel GF/w", ".1f"), ("store_s", "store s", ".1f"),
           ("rel_error", "rel err", ".0e")]


def _print(rows: list[dict], args) -> None:
    print()
    common.print_table(rows, COLUMNS, title="GEMM (x numpy / x dask: GFLOPS ratio at the same N / N and tile; "
                                           "I/O: share of numpywren task time waiting on the store)")
    for n in sorted({r["n"] for r in rows}):
        nw = [r for r in rows if r["n"] == n and r["system"] == "numpywren"]
        dk = [r for r in rows if r["n"] == n and r["system"] == "dask"]
        if not nw:
            continue
        best = max(nw, key=lambda r: r["gflops"])
        line = f"N={n}: best numpywren (tile {best['tile']}) = {best['vs_numpy']:.2f}x numpy"
        if dk:
            line += f", {best['gflops'] / max(r['gflops'] for r in dk):.2f}x the best dask"
        print(line)
        for system in sorted({r["system"] for r in rows if r["system"].startswith("numpywren/")}):
            ratios = [f"tile {r['tile']}: {r['vs_local']:.2f}x" for r in rows
                      if r["n"] == n and r["system"] == system and "vs_local" in r]
            print(f"N={n}: {system} vs the LocalExecutor, same run: {', '.join(ratios)}")


def _plot(rows: list[dict], args, name: str):
    plt = common.pyplot()
    if plt is None:
        return None
    sizes = sorted({r["n"] for r in rows})
    fig, axes = plt.subplots(1, len(sizes), figsize=(4.2 * len(sizes), 3.8), squeeze=False)
    systems = [s for s in dict.fromkeys(r["system"] for r in rows) if s != "numpy"]
    for ax, n in zip(axes[0], sizes):
        at_n = [r for r in rows if r["n"] == n]
        tiles = sorted({r["tile"] for r in at_n if r["system"] != "numpy"})
        width = 0.8 / max(1, len(systems))
        for s, system in enumerate(systems):
            by_tile = {r["tile"]: r for r in at_n if r["system"] == system}
            xs = [x + s * width for x, t in enumerate(tiles) if t in by_tile]
            bars = ax.bar(xs, [by_tile[t]["gflops"] for t in tiles if t in by_tile], width, label=system)
            for bar, t in zip(bars, [t for t in tiles if t in by_tile]):
                if "io_fraction" in by_tile[t]:
                    ax.annotate(f"I/O {by_tile[t]['io_fraction']:.0%}", (bar.get_x() + bar.get_width() / 2,
                                bar.get_height()), ha="center", va="bottom", fontsize=7)
        numpy_gf = next(r["gflops"] for r in at_n if r["system"] == "numpy")
        ax.axhline(numpy_gf, color="k", linestyle="--", linewidth=1, label=f"numpy ({args.workers} BLAS threads)")
        ax.set_xticks([x + width * (len(systems) - 1) / 2 for x in range(len(tiles))], [str(t) for t in tiles])
        ax.set_xlabel("tile size")
        ax.set_ylabel("GFLOPS")
        ax.set_title(f"N={n} {args.dtype}, {args.workers} cores")
        ax.set_ylim(0, ax.get_ylim()[1] * 1.3)  # room for the legend above the bars
        ax.legend(fontsize=7, loc="upper left", ncol=2)
    return common.save_figure(fig, name, args.out)


if __name__ == "__main__":
    sys.exit(main())
