"""Factorizations of a square matrix side by side: numpywren (CAQR, band SVD, band eigh) vs numpy/scipy.

Cases (``--ops``): ``qr_r`` (``qr(A, mode="r")`` vs ``numpy.linalg.qr(mode="r")``), ``qr`` (with Q),
``svdvals`` (``svd(A, compute_uv=False)`` vs ``scipy.linalg.svd(compute_uv=False)``) and ``eigvalsh``
(of ``A + A^T`` vs ``scipy.linalg.eigvalsh``); ``svd`` (with vectors, ``full_matrices=False``, vs
``scipy.linalg.svd``; not in the default list) and ``eigh`` (with vectors, vs ``scipy.linalg.eigh``; neither). numpywren runs ``--workers`` local workers x 1 BLAS thread
on a LocalStore; the peer runs in a subprocess with ``--workers`` BLAS threads (OpenBLAS with 2 threads has
crashed on big in-memory problems here: a crash is reported, not fatal). A is written before the clock
starts and each result is checked against the peer's (R up to row signs, or unit phases for complex A;
values relative to the largest). ``--dtype complex128`` (or complex64) factors a complex A (real and
imaginary parts standard normal; eigvalsh of the Hermitian ``A + A^H``) on both sides.
Run with ``python -m benchmarks.factorizations [--n 4096 --tile 1024] [--dtype complex128]``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np

from benchmarks import common

OPS = ("qr_r", "qr", "svdvals", "eigvalsh")
EXTRA_OPS = ("svd", "eigh")   # with vectors (U, S, Vh vs scipy's gesdd): minutes at N=8192, so not in the default list
#: on a machine loaded far beyond its cores a worker can take minutes to pick up a call: not a lost call
SILENCE_SECONDS = 900

PEER = """
import json, sys, time
import numpy as np, scipy.linalg
from threadpoolctl import threadpool_limits
n, threads, op, seed, dtype = json.loads(sys.argv[1])
rng = np.random.default_rng(seed)
a = rng.standard_normal((n, n))
if np.dtype(dtype).kind == "c":
    a = a + 1j * rng.standard_normal((n, n))
a = a.astype(dtype)
if op in ("eigvalsh", "eigh"):
    a = a + a.conj().T
with threadpool_limits(threads):
    start = time.perf_counter()
    if op == "qr_r":
        out = np.linalg.qr(a, mode="r")
    elif op == "qr":
        out = np.linalg.qr(a)[1]
    elif op == "svdvals":
        out = scipy.linalg.svd(a, compute_uv=False)
    elif op == "svd":
        out = scipy.linalg.svd(a, full_matrices=False)[1]
    elif op == "eigh":
        out = scipy.linalg.eigh(a)[0]
    else:
        out = scipy.linalg.eigvalsh(a)
    seconds = time.perf_counter() - start
np.save(sys.argv[2], out)
print(json.dumps({"seconds": seconds}))
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=int, default=4096, help="order of A (default 4096)")
    parser.add_argument("--tile", type=int, default=1024, help="square tile (default 1024)")
    parser.add_argument("--workers", type=int, default=2, help="numpywren workers = peer BLAS threads")
    parser.add_argument("--ops", default=",".join(OPS), help=f"comma-separated cases (default {','.join(OPS)})")
    parser.add_argument("--dtype", default="float64", choices=["float32", "float64", "complex64", "complex128"],
                        help="A's dtype (default float64)")
    parser.add_argument("--no-dask", action="store_true", help="skip dask.array's qr on the qr cases")
    common.add_common_arguments(parser)


def main(argv: list[str] | None = None) -> int:
    args = common.parse_args("factorizations", __doc__, add_arguments, argv)
    if args.tiny:
        args.n, args.tile = 256, 64
    ops = [op for op in args.ops.split(",") if op]
    unknown = set(ops) - set(OPS) - set(EXTRA_OPS)
    if unknown:
        raise SystemExit(f"unknown --ops {sorted(unknown)} (known: {', '.join(OPS + EXTRA_OPS)})")
    info = common.machine_info()
    print(f"factorizations on {common.describe_machine(info)}; N={args.n}, tile {args.tile}, "
          f"{args.dtype}, {args.workers} workers x 1 thread vs {args.workers} BLAS threads")
    rows = []
    with common.scratch_store(None, "factorizations") as store:
        for op in ops:
            peer = _peer(args, op, store)
            try:
                mine = _numpywren(args, op, store)
            except Exception as e:  # noqa: BLE001 - a failed case is a row saying so; the others still count
                mine = {"numpywren_status": f"{type(e).__name__}: {str(e)[:120]}"}
            row = {"op": op, "dtype": args.dtype, "n": args.n, "tile": args.tile, "workers": args.workers, **peer,
                   **mine}
            if op.startswith("qr") and not args.no_dask:
                row.update(_dask(args, op))
            if peer.get("peer_s") and mine.get("numpywren_s"):
                row["speedup"] = peer["peer_s"] / mine["numpywren_s"]
                row["rel_error"] = _error(op, mine.pop("_result"), peer.pop("_result"))
            row.pop("_result", None)
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if not k.startswith("_")}), flush=True)
    common.print_table(rows, [("op", "case", ""), ("dtype", "dtype", ""), ("peer_s", "peer s", ".2f"),
                              ("numpywren_s", "numpywren s", ".2f"),
                              ("speedup", "x peer", ".2f"), ("tasks", "tasks", "d"),
                              ("before_band_s", "tiles s", ".1f"), ("band_s", "band s", ".1f"),
                              ("after_band_s", "after s", ".1f"), ("rel_error", "rel err", ".1e"),
                              ("peer_status", "peer", ""), ("numpywren_status", "numpywren", ""),
                              ("dask", "dask.array (same chunks)", "")])
    common.report_paths([common.write_csv("factorizations", rows, info, args.out)])
    return 0


def _peer(args, op: str, store) -> dict:
    path = os.path.join(store.root if hasattr(store, "root") else "/tmp", f"peer-{op}.npy")
    proc = subprocess.run([sys.executable, "-c", PEER, json.dumps([args.n, args.workers, op, 0, args.dtype]), path],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        return {"peer_status": f"exit {proc.returncode}"}
    result = np.load(path)
    os.remove(path)
    return {"peer_status": "ok", "peer_s": json.loads(proc.stdout.strip().splitlines()[-1])["seconds"],
            "_result": result}


def _numpywren(args, op: str, store) -> dict:
    import numpywren
    from numpywren import BigMatrix

    rng = np.random.default_rng(0)   # the peer's matrix, drawn the same way
    a = rng.standard_normal((args.n, args.n))
    if np.dtype(args.dtype).kind == "c":
        a = a + 1j * rng.standard_normal((args.n, args.n))
    a = a.astype(args.dtype)
    if op in ("eigvalsh", "eigh"):
        a = a + a.conj().T
    A = BigMatrix.from_numpy(a, (args.tile, args.tile), store)
    del a
    with numpywren.LocalExecutor(args.workers, store) as ex:
        common.warm_up(ex)
        if op == "qr_r":
            plan = numpywren.qr(A, mode="r", compute=False, workers=args.workers)
        elif op == "qr":
            plan = numpywren.qr(A, compute=False, workers=args.workers)
        elif op == "svdvals":
            plan = numpywren.svd(A, compute_uv=False, compute=False, workers=args.workers)
        elif op == "svd":
            plan = numpywren.svd(A, full_matrices=False, compute=False, workers=args.workers)
        elif op == "eigh":
            plan = numpywren.eigh(A, compute=False, workers=args.workers)
        else:
            plan = numpywren.eigvalsh(A, compute=False, workers=args.workers)
        with common.Stopwatch() as t:
            report = numpywren.run(plan, ex, silence_seconds=SILENCE_SECONDS)
            value = plan.value
            result = (value if op == "qr_r" else value[1]) if op.startswith("qr") or op == "svd" else value
            result = value[0] if op == "eigh" else result
            result = result.to_numpy() if hasattr(result, "to_numpy") else result
    for o in plan.outputs:
        o.matrix.delete()
    A.delete()
    return {"numpywren_s": t.seconds, "tasks": len(plan.dag), **_phases(report), "_result": result}


def _phases(report) -> dict:
    """The one-worker band step (svd/eigvalsh: the task of most flops) against the tile tasks before and after
    it: wall seconds, and the band task's own compute seconds."""
    records = report.timeline()
    if not records or not any(r.flops for r in records):
        return {}
    band = max(records, key=lambda r: r.flops)
    t0, t1 = min(r.start for r in records), max(r.end for r in records)
    return {"before_band_s": band.start - t0, "band_s": band.end - band.start,
            "band_compute_s": band.compute_seconds, "after_band_s": t1 - band.end}


def _dask(args, op: str) -> dict:
    """dask.array.linalg.qr on A in (tile, tile) chunks, 2 threads: its time, or the error it raises (dask's
    TSQR needs one chunk per column, so a square matrix of several column chunks is refused)."""
    import dask
    import dask.array as da

    a = da.random.default_rng(0).standard_normal((args.n, args.n), chunks=(args.tile, args.tile)).astype(args.dtype)
    try:
        with dask.config.set(scheduler="threads", num_workers=args.workers), common.Stopwatch() as t:
            q, r = da.linalg.qr(a)
            (r if op == "qr_r" else q).sum().compute()
    except Exception as e:  # noqa: BLE001 - the error is the result shown
        return {"dask": f"{type(e).__name__}: {str(e).splitlines()[0][:90]}"}
    return {"dask": f"{t.seconds:.2f} s"}


def _error(op: str, got: np.ndarray, want: np.ndarray) -> float:
    if op.startswith("qr"):
        ratio = np.diag(got) / np.diag(want)   # R is unique up to a sign (complex: a unit phase) per row
        got = got / (ratio / np.abs(ratio))[:, None]
        return float(np.linalg.norm(got - want) / np.linalg.norm(want))
    return float(np.abs(np.sort(got) - np.sort(want)).max() / np.abs(want).max())


if __name__ == "__main__":
    raise SystemExit(main())
