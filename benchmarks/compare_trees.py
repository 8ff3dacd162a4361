"""Old tree vs new tree: the cost of the new integrity checks on one large GEMM.

Why this exists: the reliability work added checks on every tile and task (checksummed tiles,
run ids and matrix generations bound into tiles, verified outputs, job records). The
reliability issue asks what those checks cost on the N=8192 GEMM. This machine is a noisy,
shared 2-core box, so two separate benchmark runs minutes apart are not comparable. Instead
this script runs *alternating rounds*: in each round the old source tree and the new one
each multiply the same matrices once, in a fresh subprocess, one after the other (the order is
swapped every other round so a slow drift in the machine's speed cancels out). The answer is
the median over rounds of the per-round ratio new/old, with its min and max as the spread.

Each run is ``python -c CHILD`` with ``PYTHONPATH=<tree>`` and ``cwd=<tree>``, so that tree's
``numpywren`` package is imported (the child prints ``numpywren.__file__`` and the parent checks
it lies under the tree). The child writes A and B (float64, N x N, fixed seed) to a LocalStore
in a temporary folder, starts ``LocalExecutor(workers, blas_threads=1)``, does one small
untimed matmul so worker start-up is not timed, then times ``numpywren.matmul(A, B, out="C")``
with ``time.perf_counter``. Correctness is checked cheaply afterwards: 64 random rows of the
first and of the last block of C against numpy. A child that crashes or times out is reported
as such, never as a number. Only one child runs at a time (each holds ~1 GiB at N=8192).

    python -m benchmarks.compare_trees --old /path/to/old/worktree [--new PATH] [--rounds 5]
        [--n 8192] [--tile 4096] [--workers 2] [--csv benchmarks/results/compare_trees.csv]

Both trees must stay put while this runs: each child imports whatever is on disk at its start,
so point ``--new`` at a frozen copy if others commit to the repo meanwhile (the CSV records each
run's commit and the script warns if a tree changed).

The CSV has one row per run (tree, round, seconds, rel_err, store_s, load_1m_before, commit, status) after ``# key: value``
lines describing the machine and both trees' commits.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks import common

HERE = Path(__file__).resolve()
DEFAULT_CSV = common.RESULTS_DIR / "compare_trees.csv"

# The child: argv = folder, n, tile, workers, seed. Prints one "RESULT {json}" line.
# The parent creates and removes the folder, so a crashed child leaves nothing behind.
CHILD = r'''
import json, shutil, sys, time
import numpy as np
import numpywren

folder = sys.argv[1]
n, t, workers, seed = (int(x) for x in sys.argv[2:6])
try:
    store = numpywren.open_store(folder)
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, n))
    b = rng.standard_normal((n, n))
    t0 = time.perf_counter()
    A = numpywren.BigMatrix.from_numpy(a, (t, t), store, "A")
    B = numpywren.BigMatrix.from_numpy(b, (t, t), store, "B")
    store_s = time.perf_counter() - t0
    w = rng.standard_normal((256, 256))
    W = numpywren.BigMatrix.from_numpy(w, (128, 128), store, "W")
    with numpywren.LocalExecutor(workers=workers, store=store, blas_threads=1) as ex:
        numpywren.matmul(W, W, out="WW", executor=ex)          # warm-up: start the workers
        t0 = time.perf_counter()
        C = numpywren.matmul(A, B, out="C", executor=ex)
        seconds = time.perf_counter() - t0
    # Correctness only: 64 random rows of the first and the last block of C against numpy.
    g = -(-n // t)
    rel_err = 0.0
    for i, j in {(0, 0), (g - 1, g - 1)}:
        r0, c0 = i * t, j * t
        block = np.asarray(C.get_block(i, j))
        rows = np.sort(rng.choice(block.shape[0], size=min(64, block.shape[0]), replace=False))
        ref = a[r0 + rows] @ b[:, c0:c0 + block.shape[1]]
        rel_err = max(rel_err, float(np.linalg.norm(block[rows] - ref) / np.linalg.norm(ref)))
    print("RESULT " + json.dumps({"numpywren_file": numpywren.__file__, "seconds": seconds,
                                  "store_s": store_s, "rel_err": rel_err}), flush=True)
finally:
    shutil.rmtree(folder, ignore_errors=True)
'''


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.compare_trees", description=__doc__.splitlines()[0])
    p.add_argument("--old", required=True, type=Path, help="source tree of the previous release")
    p.add_argument("--new", type=Path, default=HERE.parents[1],
                   help=f"source tree of the new code (default: this repo, {HERE.parents[1]})")
    p.add_argument("--rounds", type=int, default=5, help="rounds; each runs both trees once (default 5)")
    p.add_argument("--n", type=int, default=8192, help="matrix size N (default 8192)")
    p.add_argument("--tile", type=int, default=4096, help="tile size (default 4096)")
    p.add_argument("--workers", type=int, default=2, help="LocalExecutor workers (default 2)")
    p.add_argument("--seed", type=int, default=0, help="seed of A and B (default 0)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds before a child is killed (default 1800)")
    p.add_argument("--no-swap", action="store_true", help="always run old first (default: swap every other round)")
    p.add_argument("--csv", type=Path, default=DEFAULT_CSV, help=f"output CSV (default {DEFAULT_CSV})")
    args = p.parse_args(argv)
    args.old, args.new = args.old.resolve(), args.new.resolve()
    if args.rounds < 1 or args.workers < 1 or not 0 < args.tile <= args.n:
        p.error("need --rounds >= 1, --workers >= 1 and 0 < --tile <= --n")
    return args


def tree_commit(tree: Path) -> str:
    """``<short sha>`` (+ ``-dirty`` if the tree has uncommitted changes), or '?' outside git."""
    def git(*cmd):
        return subprocess.run(["git", "-C", str(tree), *cmd], capture_output=True, text=True).stdout.strip()
    sha = git("rev-parse", "--short", "HEAD") or "?"
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "numpywren")
    return sha + ("-dirty" if dirty else "")


def run_child(tree: Path, args: argparse.Namespace) -> dict:
    """One GEMM in a fresh interpreter importing ``tree``'s numpywren. Never raises."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    folder = tempfile.mkdtemp(prefix="numpywren-compare-trees-")  # the child's LocalStore
    cmd = [sys.executable, "-c", CHILD, folder, str(args.n), str(args.tile), str(args.workers), str(args.seed)]
    try:
        proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"status": f"timeout after {args.timeout:.0f} s"}
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        rc = proc.returncode
        how = f"killed by {signal.Signals(-rc).name}" if rc < 0 else f"exit code {rc}"
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        return {"status": f"crash ({how})", "detail": tail}
    result = json.loads(lines[-1][len("RESULT "):])
    if not Path(result["numpywren_file"]).resolve().is_relative_to(tree):
        return {"status": f"wrong tree: imported {result['numpywren_file']}"}
    result["status"] = "ok"
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    info = common.machine_info()
    trees = {"old": args.old, "new": args.new}
    for name, tree in trees.items():
        info[f"tree_{name}"] = f"{tree} @ {tree_commit(tree)}"
    info.update(n=str(args.n), tile=str(args.tile), workers=str(args.workers), rounds=str(args.rounds))
    print(common.describe_machine(info))
    print(f"old: {info['tree_old']}\nnew: {info['tree_new']}")
    print(f"N={args.n} tile={args.tile} workers={args.workers} rounds={args.rounds}\n")

    rows, table = [], []
    for rnd in range(1, args.rounds + 1):
        order = ["old", "new"] if args.no_swap or rnd % 2 else ["new", "old"]
        got = {}
        for name in order:
            load, commit = os.getloadavg()[0], tree_commit(trees[name])
            r = got[name] = run_child(trees[name], args)
            shown = f"{r['seconds']:.2f} s (rel_err {r['rel_err']:.1e})" if r["status"] == "ok" else "FAILED: " + r["status"]
            print(f"round {rnd} {name}: {shown}  [load {os.getloadavg()[0]:.2f}]", flush=True)
            if r.get("detail"):
                print("  " + r["detail"].replace("\n", "\n  "))
            rows.append({"tree": name, "round": rnd, "seconds": r.get("seconds"), "rel_err": r.get("rel_err"),
                         "store_s": r.get("store_s"), "load_1m_before": load, "commit": commit, "status": r["status"]})
        ok = all(got[k]["status"] == "ok" for k in trees)
        table.append({"round": rnd, "order": "/".join(order),
                      "old": got["old"].get("seconds"), "new": got["new"].get("seconds"),
                      "ratio": got["new"]["seconds"] / got["old"]["seconds"] if ok else None})

    print()
    common.print_table(table, [("round", "round", "d"), ("order", "order", ""), ("old", "old s", ".2f"),
                               ("new", "new s", ".2f"), ("ratio", "new/old", ".3f")])
    ratios = [t["ratio"] for t in table if t["ratio"] is not None]
    times = {k: [r["seconds"] for r in rows if r["tree"] == k and r["status"] == "ok"] for k in trees}
    if ratios:
        print(f"\nmedian new/old ratio: {statistics.median(ratios):.3f}  "
              f"(min {min(ratios):.3f}, max {max(ratios):.3f}, {len(ratios)} complete rounds)")
    else:
        print("\nno round completed for both trees: no ratio")
    for k in trees:
        print(f"median {k}: " + (f"{statistics.median(times[k]):.2f} s over {len(times[k])} runs" if times[k] else "-"))
    for k in trees:
        if len({r["commit"] for r in rows if r["tree"] == k}) > 1:
            print(f"WARNING: the {k} tree changed during the run (commits {sorted({r['commit'] for r in rows if r['tree'] == k})}); "
                  "benchmark a frozen copy (git archive / a detached worktree) instead")
    crashes = [r for r in rows if r["status"] != "ok"]
    if crashes:
        print(f"{len(crashes)} run(s) failed: " + "; ".join(f"{r['tree']} round {r['round']}: {r['status']}" for r in crashes))
    print(f"load average at end: {os.getloadavg()[0]:.2f}")

    csv_path = args.csv if args.csv.is_absolute() else Path.cwd() / args.csv
    print(f"wrote {common.write_csv(csv_path.stem, rows, info, out=csv_path.parent)}")
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
