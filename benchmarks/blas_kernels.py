"""Per-kernel before/after of the triangular solves: the TSQR leaf and the Cholesky panel solve, one core.

    python benchmarks/blas_kernels.py BEFORE_TREE AFTER_TREE [--rounds 3] [--blas numpy|PATH]

Each tree (a numpywren checkout, e.g. a ``git archive main`` and this branch) runs in its own process, the
trees alternating ``--rounds`` times, 1 BLAS thread: ``blocks.qr.r_factor_blas3`` on a 125,000 x 256 float64
block (a TSQR leaf of ``benchmarks.tsqr``: CholeskyQR2, whose second round solves with R1 by trsm or, on
OpenBLAS, by the explicit inverse) and ``blocks.cholesky.trsm_right_lower_t`` on a C-ordered 1024 tile with a
C-ordered triangle (a Cholesky panel task's solve, as the worker reads its tiles), each the median of 5 calls
(the panel's input copy timed apart and subtracted). ``--blas`` sets ``$NUMPYWREN_BLAS_LIB`` (default numpy:
scipy's OpenBLAS). GFLOPS count leading terms: the leaf 4 m n^2 (two Gram matrices, two solves), the panel n^3.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

LEAF = (125_000, 256)
PANEL = 1024


def measure(tree: str) -> str:
    """One tree's line (run in a subprocess whose path starts with ``tree``)."""
    import numpy as np

    from blocks import blas, cholesky, qr

    def median(fn, reps=5):
        times = []
        for _ in range(reps):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return sorted(times)[reps // 2]

    rng = np.random.default_rng(0)
    a = rng.standard_normal(LEAF)
    leaf = median(lambda: qr.r_factor_blas3(a))
    m, n = LEAF
    b = rng.standard_normal((PANEL, PANEL))
    low = np.linalg.cholesky(b @ b.T / PANEL + 2 * np.eye(PANEL))
    panel = median(lambda: cholesky.trsm_right_lower_t(b.copy(), low)) - median(b.copy)
    return (f"{tree}: {blas.describe()[:48]} | leaf {leaf:.3f} s ({4 * m * n * n / leaf / 1e9:.1f} GFLOPS) | "
            f"panel trsm {panel * 1e3:.1f} ms ({PANEL ** 3 / panel / 1e9:.1f} GFLOPS) | load {os.getloadavg()[0]:.1f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("trees", nargs="+", help="numpywren source trees to compare")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--blas", default="numpy", help="$NUMPYWREN_BLAS_LIB for every run (default numpy)")
    p.add_argument("--one", help=argparse.SUPPRESS)   # internal: measure this tree in this process
    args = p.parse_args(argv)
    if args.one:
        print(measure(args.one), flush=True)
        return 0
    env = {**os.environ, "NUMPYWREN_BLAS_LIB": args.blas,
           **{v: "1" for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}}
    for _ in range(args.rounds):
        for tree in args.trees:
            tree = os.path.abspath(tree)
            subprocess.run([sys.executable, os.path.abspath(__file__), tree, "--one", tree], check=True,
                           env={**env, "PYTHONPATH": tree}, cwd=tree)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
