"""Per-call overhead of each executor: ``--calls`` no-op calls (one ``map``), calls per second.

A no-op call still makes the whole round trip: its arguments are written to the
store, its event is delivered, the worker reads the function and arguments,
writes its result, and the driver learns of it. Every executor gets
``--workers`` workers x 1 BLAS thread (see benchmarks.engines) and a LocalStore
in a temporary folder; the best of ``--repeat`` rounds is kept. Run with
``python -m benchmarks.overhead --executors local,dask,lithops``.
"""
from __future__ import annotations

import argparse
import sys

from benchmarks import common, engines


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--executors", type=engines.engine_list, default=["local", "dask"],
                        help="comma-separated executors among local, dask, lithops (default local,dask)")
    parser.add_argument("--calls", type=int, default=1000, help="no-op calls per round (default 1000)")
    parser.add_argument("--lithops-calls", type=int, default=100,
                        help="calls per round for lithops, whose localhost backend starts a process per "
                             "call (default 100)")
    parser.add_argument("--workers", type=int, default=2, help="workers of every executor (default 2)")
    parser.add_argument("--repeat", type=int, default=2, help="rounds, each executor keeps its best (default 2)")
    parser.add_argument("--store", default=None, help="store URL (default: a temporary local folder)")
    common.add_common_arguments(parser)


def main(argv: list[str] | None = None) -> int:
    return run(common.parse_args("overhead", __doc__, add_arguments, argv))


def _noop(_):
    return None


def run(args: argparse.Namespace) -> int:
    if args.tiny:
        args.calls, args.lithops_calls, args.repeat = 20, 4, 1
    info = common.machine_info()
    print(f"Per-call overhead on {common.describe_machine(info)}; {args.workers} workers x 1 BLAS thread")
    rows = []
    with common.scratch_store(args.store, "overhead") as store:
        for engine in args.executors:
            calls = args.lithops_calls if engine == "lithops" else args.calls
            with engines.open_executor(engine, args.workers, store) as ex:
                best = None
                for _ in range(args.repeat):
                    with common.Stopwatch() as t:
                        results = ex.get_all_results(ex.map(_noop, range(calls)))
                    assert results == [None] * calls
                    ex.cleanup()
                    best = t.seconds if best is None else min(best, t.seconds)
                    print(f"  {engine}: {calls} calls in {t.seconds:.2f} s", flush=True)
            rows.append({"executor": engine, "workers": args.workers, "calls": calls, "seconds": best,
                         "calls_per_s": calls / best, "ms_per_call": 1000 * best / calls})
    local = next((r["calls_per_s"] for r in rows if r["executor"] == "local"), None)
    for r in rows:
        if local:
            r["vs_local"] = r["calls_per_s"] / local
    print()
    common.print_table(rows, COLUMNS, title="no-op calls (one map): calls/s, best round")
    info["workers"] = str(args.workers)
    paths = [common.write_csv("overhead", rows, info, args.out)]
    if not args.no_plot:
        paths.append(_plot(rows, args))
    common.report_paths(paths)
    return 0


COLUMNS = [("executor", "executor", ""), ("calls", "calls", ""), ("seconds", "s", ".2f"),
           ("calls_per_s", "calls/s", ".0f"), ("ms_per_call", "ms/call", ".2f"), ("vs_local", "x local", ".2f")]


def _plot(rows, args):
    plt = common.pyplot()
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    ax.bar([r["executor"] for r in rows], [r["calls_per_s"] for r in rows])
    ax.set_ylabel("no-op calls per second")
    ax.set_title(f"per-call overhead, {args.workers} workers")
    return common.save_figure(fig, "overhead", args.out)


if __name__ == "__main__":
    sys.exit(main())
