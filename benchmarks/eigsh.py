"""The top k eigenpairs of an RBF kernel matrix: numpywren.eigsh vs scipy.sparse.linalg.eigsh with a numpy matvec.

X (n x d, anisotropic Gaussian: column scales from 1 down to 0.2, so the spectrum has no exact clusters) is
stored and K = rbf(X, X) (gamma = 1/d) is computed by ``numpywren.kernel`` (one triangle stored) before the
clock starts; then ``eigsh(K, k, which="LA")`` runs on ``--workers`` local workers x 1 BLAS thread, each product
``K @ V`` a matmul job. The peer builds the same K in memory in a subprocess (with ``--workers`` BLAS threads) and
times ``scipy.sparse.linalg.eigsh(LinearOperator(matvec=K @ v), k, which="LA")``; both use their default tol
("machine precision"). Eigenvalues are compared relative to the largest. Peak memory (VmHWM) of the peer, the
driver and each worker, the load average (sampled every 30 s) and the keys left in the store afterwards are
reported. Run with
``python -m benchmarks.eigsh [--n 16384 --k 20 --tile 4096]``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np

from benchmarks import common
from benchmarks.factorizations import SILENCE_SECONDS
from benchmarks.machine_load import LoadSampler, keys_left, peak_rss_mb, workers_peak_rss_mb

PEER = """
import json, resource, sys, time
import numpy as np, scipy.sparse.linalg as sl
from threadpoolctl import threadpool_limits
n, d, k, threads, seed = json.loads(sys.argv[1])
x = np.random.default_rng(seed).standard_normal((n, d)) * np.linspace(1, 0.2, d)
with threadpool_limits(threads):
    began = time.perf_counter()
    sq = (x * x).sum(1)
    K = x @ np.ascontiguousarray(x.T)   # a GEMM: numpy's SYRK path (x @ x.T) gave a wrong K at N=32768
    K *= -2.0
    K += sq[:, None]
    K += sq[None, :]
    np.maximum(K, 0, out=K)
    K *= -1.0 / d
    np.exp(K, out=K)
    k_seconds = time.perf_counter() - began
# K against the formula at 4096 random entries (numpy's 2-thread SYRK once returned wrong tiles at N=32768)
i, j = np.random.default_rng(1).integers(0, n, (2, 4096))
k_error = float(np.abs(K[i, j] - np.exp(-((x[i] - x[j]) ** 2).sum(1) / d)).max())
with threadpool_limits(threads):
    op = sl.LinearOperator((n, n), matvec=lambda v: K @ v, dtype=K.dtype)
    start = time.perf_counter()
    w = sl.eigsh(op, k, which="LA", return_eigenvectors=False)
    seconds = time.perf_counter() - start
np.save(sys.argv[2], np.sort(w))
print(json.dumps({"seconds": seconds, "k_seconds": k_seconds, "k_error": k_error,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=int, default=16384, help="order of K (default 16384)")
    parser.add_argument("--d", type=int, default=16, help="features of X (default 16)")
    parser.add_argument("--k", type=int, default=20, help="eigenpairs (default 20)")
    parser.add_argument("--tile", type=int, default=4096, help="square tile of K (default 4096)")
    parser.add_argument("--workers", type=int, default=2, help="numpywren workers = peer BLAS threads")
    parser.add_argument("--no-peer", action="store_true", help="skip scipy (when K does not fit in memory)")
    common.add_common_arguments(parser)


def main(argv: list[str] | None = None) -> int:
    args = common.parse_args("eigsh", __doc__, add_arguments, argv)
    if args.tiny:
        args.n, args.d, args.k, args.tile = 256, 4, 4, 64
    info = common.machine_info()
    print(f"eigsh on {common.describe_machine(info)}; RBF kernel N={args.n}, d={args.d}, k={args.k}, tile "
          f"{args.tile}, {args.workers} workers x 1 thread vs {args.workers} BLAS threads")
    with LoadSampler(30) as load, common.scratch_store(None, "eigsh") as store:
        peer = {"peer_status": "skipped"} if args.no_peer else _peer(args, store)
        mine = _numpywren(args, store)
        left = keys_left(store)
    row = {"n": args.n, "k": args.k, "tile": args.tile, "workers": args.workers, **peer, **mine,
           "keys_left": len(left), "load_low": load.low, "load_high": load.high}
    if "_result" in peer:
        want = peer.pop("_result")
        row["rel_error"] = float(np.abs(mine["_result"] - want).max() / np.abs(want).max())
        row["speedup"] = peer["peer_s"] / mine["numpywren_s"]
    row.pop("_result", None)
    common.print_table([row], [("n", "N", "d"), ("k", "k", "d"), ("peer_s", "scipy s", ".2f"),
                               ("numpywren_s", "numpywren s", ".2f"), ("speedup", "x scipy", ".2f"),
                               ("passes", "passes", "d"), ("kernel_s", "kernel s", ".2f"),
                               ("rel_error", "rel err", ".1e"), ("residual", "max resid/|w|", ".1e"),
                               ("peer_status", "peer", "")])
    print(f"peer's K vs the formula at 4096 random entries: max error {row.get('peer_k_error', float('nan')):.1e}")
    if row.get("rel_error", 0) > 1e-10:
        print(f"eigenvalues disagree: numpywren {mine['_result'][::-1].tolist()}\n  scipy {want[::-1].tolist()}")
    print(f"peak RSS: peer {row.get('peer_rss_mb', float('nan')):.0f} MB (K built in "
          f"{row.get('peer_k_s', float('nan')):.1f} s, not timed), driver {row['driver_rss_mb']:.0f} MB, workers "
          f"{row['worker_rss_each_mb']} MB; keys left in the store: {len(left)} {left[:5]}; {load.describe()}")
    common.report_paths([common.write_csv("eigsh", [row], info, args.out)])
    return 0


def _peer(args, store) -> dict:
    path = os.path.join(store.root if hasattr(store, "root") else "/tmp", "peer-eigsh.npy")
    proc = subprocess.run([sys.executable, "-c", PEER, json.dumps([args.n, args.d, args.k, args.workers, 0]), path],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        return {"peer_status": f"exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}"}
    result = np.load(path)
    os.remove(path)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"peer_status": "ok", "peer_s": out["seconds"], "peer_k_s": out["k_seconds"],
            "peer_k_error": out["k_error"],
            "peer_rss_mb": out["peak_rss_mb"], "_result": result}


def _numpywren(args, store) -> dict:
    import numpywren
    from numpywren import BigMatrix

    x = np.random.default_rng(0).standard_normal((args.n, args.d)) * np.linspace(1, 0.2, args.d)
    X = BigMatrix.from_numpy(x, (args.tile, args.d), store)
    with numpywren.LocalExecutor(args.workers, store) as ex:
        common.warm_up(ex)
        with common.Stopwatch() as kt:
            K = numpywren.kernel(X, kind="rbf", gamma=1.0 / args.d, executor=ex, out="bench-eigsh-K",
                                 silence_seconds=SILENCE_SECONDS)
        with common.Stopwatch() as t:
            w, info = numpywren.eigsh(K, args.k, which="LA", return_eigenvectors=False, return_info=True,
                                      seed=0, executor=ex, progress=False, silence_seconds=SILENCE_SECONDS)
        worker_rss = workers_peak_rss_mb(ex)
    K.delete()
    X.delete()
    return {"numpywren_s": t.seconds, "kernel_s": kt.seconds, "passes": info["passes"],
            "residual": float(info["residuals"].max() / np.abs(w).max()), "_result": w,
            "driver_rss_mb": peak_rss_mb(), "worker_rss_mb": max(worker_rss, default=float("nan")),
            "worker_rss_each_mb": " ".join(f"{r:.0f}" for r in worker_rss)}


if __name__ == "__main__":
    raise SystemExit(main())
