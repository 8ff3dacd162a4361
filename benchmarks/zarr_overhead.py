"""What ``to_zarr`` through the jobs layer costs against the direct path it replaced (issue 26).

Since issue 26, ``to_zarr`` is a plan run by ``jobs.run`` (job record, run id, heartbeat, fencing, a
run-private array published by one conditional write, verification). Before (c0d85ad) it called the
scheduler directly. For each code tree (``--code NAME=PATH``), alternating round by round, a fresh
process writes the same matrix (``--n`` x ``--n`` float64, tile ``--tile``, local store, 2 local workers,
raw chunks) with ``to_zarr`` and times it (the executor started and warmed first): wall seconds, and the
driver process's CPU seconds (what the jobs layer adds runs on the driver: record, publish, verification;
CPU time depends less on the machine's load than wall time). It prints the median of each tree and the
ratios to the first tree, so the overhead is measured side by side under the same load.

``python -m benchmarks.zarr_overhead --code before=<worktree of c0d85ad> --code after=. --rounds 5``
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

_ONE = r'''
import json, sys, tempfile, time
import numpy as np
import numpywren
from numpywren import BigMatrix
n, tile = int(sys.argv[1]), int(sys.argv[2])
with tempfile.TemporaryDirectory(prefix="nw-zarr-overhead-") as tmp:
    store = numpywren.open_store(tmp + "/store")
    M = BigMatrix.from_numpy(np.random.default_rng(0).standard_normal((n, n)), (tile, tile), store, "M")
    W = BigMatrix.from_numpy(np.ones((64, 128)), (64, 64), store, "W")
    with numpywren.LocalExecutor(workers=2, store=store) as ex:
        W.to_zarr(tmp + "/warm.zarr", executor=ex, compressors=None, progress=False)  # workers started, imports done
        t0, c0 = time.perf_counter(), time.process_time()
        Z = M.to_zarr(tmp + "/out.zarr", executor=ex, compressors=None, progress=False)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert np.array_equal(np.asarray(Z[0:tile, 0:tile]), np.asarray(M[0:tile, 0:tile]))
print(json.dumps({"seconds": seconds, "cpu": cpu}))
'''


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.zarr_overhead", description=__doc__.splitlines()[0])
    parser.add_argument("--code", action="append", required=True, help="NAME=PATH of a numpywren tree")
    parser.add_argument("--cases", default="2048:512,4096:1024", help="N:tile,... (default 2048:512,4096:1024)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    trees = dict(c.split("=", 1) for c in args.code)
    print(f"load average at start: {os.getloadavg()[0]:.1f}")
    for case in args.cases.split(","):
        n, tile = case.split(":")
        runs: dict[str, list[dict]] = {name: [] for name in trees}
        for _ in range(args.rounds):
            for name, tree in trees.items():
                out = subprocess.run([sys.executable, "-c", _ONE, n, tile], capture_output=True, text=True,
                                     cwd=tree, env={**os.environ, "PYTHONPATH": str(Path(tree).resolve())},
                                     check=True)
                runs[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
        for what in ("seconds", "cpu"):
            medians = {name: statistics.median(r[what] for r in rs) for name, rs in runs.items()}
            first = next(iter(medians.values()))
            print(f"N={n} tile {tile}, {'wall' if what == 'seconds' else 'driver CPU'}: " + ", ".join(
                f"{name} {m:.3f} s ({m / first:.2f}x; rounds {', '.join(f'{r[what]:.3f}' for r in runs[name])})"
                for name, m in medians.items()))
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
