"""Complex matrices side by side: numpywren vs numpy/scipy on the same complex128 inputs, in one run.

One row per (operation, N, tile), each operation timed for numpywren and for its in-memory peer with the same
core budget (``--workers``, default 2 = this machine's cores):

* numpywren: ``LocalExecutor(workers, blas_threads=1)``, inputs written to the store (a LocalStore in a
  temporary folder) before the clock starts; the timed part is the whole job.
* peer: numpy/scipy with ``workers`` BLAS threads, best of two calls after a warm-up, in a subprocess
  (OpenBLAS has crashed in large in-memory calls on this machine: a crash is reported, not a number).

Rounds (``--repeat``) alternate the two systems, so a change of the machine's load hits both; each keeps its
best round. Tiles default to N/2 (GEMM: 2 x 2 output tiles, one per worker and a half) and N/4 (Cholesky).

Operations (``OPS``; each has a flop count, a numpywren call, a peer call and an independent check):

* ``gemm``: C = A @ B, complex (8 N^3 real flops); the check is the relative difference to numpy's C.
* ``gemm_h``: C = A.H @ B through the conjugate-transpose view (tiles conjugated on read).
* ``cholesky``: L with A = L L^H for a Hermitian positive definite A (4 N^3 / 3 flops); the check is
  the residual ||A v - L (L^H v)|| / ||A v|| for a random v.
* ``qr``: ``numpywren.qr(A)`` (CAQR, Q and R) vs ``numpy.linalg.qr(a)`` (32 N^3 / 3 real flops: Householder
  R and the explicit Q, 4 real flops per complex one); the check is ||Q R - A|| / ||A||.
* ``svd``: singular values, ``numpywren.svd(A, compute_uv=False)`` (band reduction by tiled QR/LQ, then
  LAPACK on the band) vs ``scipy.linalg.svd(a, compute_uv=False)`` (32 N^3 / 3 real flops of the
  bidiagonalization); the check is max |s - numpy's s| / s_max.

Each numpywren time is the whole call on the driver (a stopwatch: planning, the job, reading the result
back), the same for every operation.

GFLOPS count real floating-point operations (a complex multiply-add is 8). Every system runs ``--repeat``
rounds. Run with ``python -m benchmarks.complex`` or ``numpywren bench complex``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import uuid

import numpy as np

from benchmarks import common


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ops", default="gemm,cholesky,qr,svd",
                        help=f"operations, comma-separated (default gemm,cholesky,qr,svd; known: {', '.join(OPS)})")
    parser.add_argument("--sizes", type=common.int_list, default=[4096], help="matrix sizes N (default 4096)")
    parser.add_argument("--gemm-tile", type=int, default=None, help="numpywren's tile for the GEMMs (default N/2)")
    parser.add_argument("--cholesky-tile", "--factor-tile", dest="cholesky_tile", type=int, default=None,
                        help="numpywren's tile for Cholesky, QR and the SVD (default N/4)")
    parser.add_argument("--dtype", default="complex128", choices=["complex64", "complex128"])
    parser.add_argument("--workers", type=int, default=2,
                        help="numpywren workers = the peer's BLAS threads (default 2)")
    parser.add_argument("--repeat", type=int, default=2, help="rounds of all systems, each keeps its best")
    common.add_common_arguments(parser)


def main(argv: list[str] | None = None) -> int:
    return run(common.parse_args("complex", __doc__, add_arguments, argv))


# -- inputs, checks and the operations ---------------------------------------------------------------------
def crandn(shape, dtype, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype)


def hpd(n: int, dtype, seed: int = 0) -> np.ndarray:
    """A Hermitian, strictly diagonally dominant (hence positive definite) matrix: (R + R^H)/2 + 2n I."""
    a = crandn((n, n), dtype, seed)
    a = (a + a.conj().T) / 2
    a[np.diag_indices(n)] += 2 * n
    return a


def cholesky_residual(a: np.ndarray, lower: np.ndarray, seed: int = 1) -> float:
    v = crandn(a.shape[0], np.complex128, seed)
    av = a @ v
    return float(np.linalg.norm(av - lower @ (lower.conj().T @ v)) / np.linalg.norm(av))


def _inputs(op: str, n: int, dtype) -> list[np.ndarray]:
    if op == "cholesky":
        return [hpd(n, dtype)]
    return [crandn((n, n), dtype, 1)] if op in ("qr", "svd") else [crandn((n, n), dtype, 1), crandn((n, n), dtype, 2)]


def _numpywren_call(op: str, mats, ex):
    import numpywren

    if op == "gemm":
        return numpywren.matmul(mats[0], mats[1], executor=ex, progress=False)
    if op == "gemm_h":
        return numpywren.matmul(mats[0].H, mats[1], executor=ex, progress=False)
    if op == "qr":
        return numpywren.qr(mats[0], executor=ex, progress=False)
    if op == "svd":
        return numpywren.svd(mats[0], compute_uv=False, executor=ex, progress=False)
    return numpywren.cholesky(mats[0], executor=ex, progress=False)


def _check(op: str, arrays, result) -> float:
    """The independent check of one numpywren result (see the module docstring)."""
    a = arrays[0]
    if op == "cholesky":
        return cholesky_residual(a, result.to_numpy())
    if op == "qr":
        q, r = (m.to_numpy() if hasattr(m, "to_numpy") else m for m in result)
        return float(np.linalg.norm(q @ r - a) / np.linalg.norm(a))
    if op == "svd":
        s = np.linalg.svd(a, compute_uv=False)
        return float(np.abs(np.asarray(result) - s).max() / s[0])
    got = result.to_numpy()
    return float(np.linalg.norm(got - _reference(op, arrays)) / np.linalg.norm(got))


def _delete(result) -> None:
    for m in (result if isinstance(result, tuple) else (result,)):
        if hasattr(m, "delete"):
            m.delete()


#: operation -> (real flops for N, peer's expression on the inputs a, b (run in the subprocess))
OPS = {
    "gemm": (lambda n: 8.0 * n ** 3, "a @ b"),
    "gemm_h": (lambda n: 8.0 * n ** 3, "a.conj().T @ b"),
    "cholesky": (lambda n: 4.0 * n ** 3 / 3, "scipy.linalg.cholesky(a, lower=True, check_finite=False)"),
    "qr": (lambda n: 32.0 * n ** 3 / 3, "np.linalg.qr(a)"),
    "svd": (lambda n: 32.0 * n ** 3 / 3, "scipy.linalg.svd(a, compute_uv=False, check_finite=False)"),
}
#: the peer of each operation, as the table names it
PEERS = {"cholesky": "scipy", "svd": "scipy"}


def run(args: argparse.Namespace) -> int:
    ops = [o.strip() for o in args.ops.split(",") if o.strip()]
    if args.tiny:
        args.sizes, args.gemm_tile, args.cholesky_tile, args.repeat = [256], 128, 64, 1
    unknown = [o for o in ops if o not in OPS]
    if unknown or args.workers < 1 or args.repeat < 1:
        raise SystemExit(f"unknown operations {unknown} (known: {', '.join(OPS)})" if unknown else
                         "--workers and --repeat must be at least 1")
    info = common.machine_info()
    print(f"complex benchmark on {common.describe_machine(info)}")
    print(f"numpywren: {args.workers} workers x 1 BLAS thread | numpy/scipy: {args.workers} BLAS threads | "
          f"{args.dtype}")
    rows: list[dict] = []
    with common.scratch_store(None, "complex") as store, tempfile.TemporaryDirectory(prefix="numpywren-complex-") as tmp:
        from numpywren import LocalExecutor

        with LocalExecutor(args.workers, store) as ex:
            common.warm_up(ex)
            for n in args.sizes:
                for op in ops:
                    rows.append(_run_case(op, n, args, store, ex, tmp))
    common.print_table(rows, COLUMNS, title=f"complex ({args.dtype}; GFLOPS of real flops; x peer: GFLOPS ratio "
                                            f"numpywren / numpy-scipy in this run)")
    info["workers"] = str(args.workers)
    paths = [common.write_csv("complex", rows, info, args.out)]
    if not args.no_plot:
        paths.append(_plot(rows, args))
    common.report_paths(paths)
    return 0


COLUMNS = [("op", "op", ""), ("n", "N", "d"), ("tile", "tile", "d"), ("numpywren_s", "numpywren s", ".2f"),
           ("numpywren_gflops", "GFLOPS", ".1f"), ("peer", "peer", ""), ("peer_s", "peer s", ".2f"),
           ("peer_gflops", "GFLOPS", ".1f"), ("vs_peer", "x peer", ".2f"), ("check", "check", ".1e")]


def _run_case(op: str, n: int, args, store, ex, tmp: str) -> dict:
    from numpywren import BigMatrix

    flops, peer_expr = OPS[op]
    tile = (args.cholesky_tile or n // 4) if op in ("cholesky", "qr", "svd") else (args.gemm_tile or n // 2)
    arrays = _inputs(op, n, args.dtype)
    paths = []
    for k, x in enumerate(arrays):
        paths.append(os.path.join(tmp, f"{op}-{n}-{k}.npy"))
        np.save(paths[-1], x)
    prefix = f"bench-complex-{uuid.uuid4().hex[:8]}"
    mats = [BigMatrix.from_numpy(x, tile, store, f"{prefix}/in{k}") for k, x in enumerate(arrays)]
    best, check, peer = float("inf"), float("nan"), {}
    try:
        for _ in range(args.repeat):   # rounds alternate the systems: a load change hits both
            got_peer = _peer(op, peer_expr, paths, args.workers)
            if "seconds" not in peer or got_peer.get("seconds", np.inf) < peer["seconds"]:
                peer = got_peer
            with common.Stopwatch() as t:
                result = _numpywren_call(op, mats, ex)
            if t.seconds < best:
                best = t.seconds
                check = _check(op, arrays, result)
            _delete(result)
    finally:
        for M in mats:
            M.delete()
    row = {"op": op, "n": n, "tile": tile, "dtype": args.dtype, "workers": args.workers, "numpywren_s": best,
           "numpywren_gflops": flops(n) / best / 1e9, "peer": PEERS.get(op, "numpy"),
           "check": check}
    if "seconds" in peer:
        row.update(peer_s=peer["seconds"], peer_gflops=flops(n) / peer["seconds"] / 1e9,
                   vs_peer=peer["seconds"] / best)
        if op == "cholesky":
            row["peer_check"] = peer["residual"]
    else:
        row["peer_note"] = peer["note"]
    print(f"  {op} N={n} tile={tile}: numpywren {best:.2f} s, peer "
          + (f"{peer['seconds']:.2f} s" if "seconds" in peer else peer["note"]) + f", check {check:.1e}", flush=True)
    return row


def _reference(op: str, arrays) -> np.ndarray:
    a, b = arrays
    return (a.conj().T if op == "gemm_h" else a) @ b


def _peer(op: str, expr: str, paths: list[str], workers: int) -> dict:
    """The peer's best of two calls in a subprocess with ``workers`` BLAS threads."""
    env = {**os.environ, **{v: str(workers) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}}
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(PEER), op, expr, str(workers), *paths],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        return {"note": (f"crashed (signal {-proc.returncode})" if proc.returncode < 0 else
                         f"failed: {proc.stderr.strip().splitlines()[-1:]}")}
    return json.loads(proc.stdout.strip().splitlines()[-1])


PEER = """
import json, sys, time
import numpy as np, scipy.linalg
from threadpoolctl import threadpool_limits
from benchmarks.complex import cholesky_residual
op, expr, workers = sys.argv[1], sys.argv[2], int(sys.argv[3])
arrays = [np.load(p) for p in sys.argv[4:]]
a, b = (arrays + [None])[:2]
with threadpool_limits(limits=workers, user_api="blas"):
    small = {"a": a[:256, :256], "b": None if b is None else b[:256, :256]}
    eval(expr, {"scipy": scipy, "np": np, **small})   # warm up (thread pool, dispatch)
    seconds = float("inf")
    for _ in range(2):   # best of two calls: noise on a shared machine only slows a run down
        start = time.perf_counter()
        result = eval(expr, {"scipy": scipy, "np": np, "a": a, "b": b})
        seconds = min(seconds, time.perf_counter() - start)
print(json.dumps({"seconds": seconds, "residual": cholesky_residual(a, result) if op == "cholesky" else None}))
"""


def _plot(rows: list[dict], args):
    plt = common.pyplot()
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.5))
    labels = [f"{r['op']}\nN={r['n']}" for r in rows]
    x = np.arange(len(rows))
    ax.bar(x - 0.2, [r["numpywren_gflops"] for r in rows], 0.4, label=f"numpywren ({args.workers} workers)")
    ax.bar(x + 0.2, [r.get("peer_gflops", 0.0) for r in rows], 0.4, label=f"numpy/scipy ({args.workers} threads)")
    ax.set_xticks(x, labels)
    ax.set_ylabel("GFLOPS (real flops)")
    ax.set_title(f"complex ({args.dtype})")
    ax.legend()
    return common.save_figure(fig, "complex", args.out)


if __name__ == "__main__":
    raise SystemExit(main())
