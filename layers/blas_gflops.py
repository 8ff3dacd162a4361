"""Single-core GFLOPS of the tile kernels' BLAS/LAPACK routines: MKL vs OpenBLAS, side by side.

    python layers/blas_gflops.py                       # n = 1024 2048 4096, float64 + float32, 5 reps
    python layers/blas_gflops.py --n 1024 --reps 3 --routines gemm potrf
    python layers/blas_gflops.py --mkl PATH/libnumpywren_mkl.so

Libraries, all on one thread, on the same arrays (Fortran order), one routine at a time:
  * ``MKL``: ``libnumpywren_mkl.so`` (``layers/mkl_lib.py``, built into ``layers/.cache/mkl/build``
    when absent), through ``blocks.blas`` (ctypes);
  * ``OpenBLAS``: the LP64 OpenBLAS scipy's wheel bundles, through the same ``blocks.blas`` calls;
  * ``numpy``: ``a @ b`` (numpy's own OpenBLAS build), GEMM only: what the OpenBLAS layer's GEMM calls.
The libraries take turns within each repetition (so the machine's load drifts over all of them alike);
each cell is the median over ``reps``. Every result is checked against numpy/scipy first. Rows go to
``benchmarks/results/blas_gflops.csv`` (machine info in its ``#`` header) and ``blas_gflops.png``.

The default-``--blas`` rule: MKL only if it is >= 5% faster by median over every routine the tile kernels
call through ``blocks.blas`` (GEMM, and since the Cholesky, LU and QR kernels call it, SYRK, TRSM, POTRF,
GETRF, GEQRF), MKL vs scipy's OpenBLAS through the same binding. GEMM against numpy's own ``@`` is printed
too.
"""
from __future__ import annotations

import argparse
import glob
import os
import statistics
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy/scipy load their BLAS

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from blocks import blas

#: routine -> flop count for n x n operands (LAPACK working notes 41 counts, leading terms).
FLOPS = {"gemm": lambda n: 2.0 * n ** 3, "syrk": lambda n: 1.0 * n ** 3, "trsm": lambda n: 1.0 * n ** 3,
         "potrf": lambda n: n ** 3 / 3.0, "getrf": lambda n: 2.0 / 3.0 * n ** 3,
         "getrf_tall": lambda n: 8.0 * n ** 3 - n ** 3 / 3.0, "geqrf": lambda n: 4.0 / 3.0 * n ** 3}
#: MKL must beat OpenBLAS by this median factor to become the default.
THRESHOLD = 1.05


def scipy_openblas() -> str:
    import scipy

    libs = sorted(glob.glob(str(Path(scipy.__file__).parent.parent / "scipy.libs" / "libscipy_openblas*.so")))
    if not libs:
        raise FileNotFoundError("this scipy wheel bundles no libscipy_openblas*.so to compare against")
    return libs[0]


def mkl_library(path: str | None) -> str:
    if path:
        return path
    import importlib.util

    spec = importlib.util.spec_from_file_location("numpywren_mkl_lib", HERE / "mkl_lib.py")
    mkl_lib = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mkl_lib)
    built = mkl_lib.cache_dir() / "build" / mkl_lib.LIB_NAME
    if not built.is_file():
        mkl_lib.build(built.parent)
    return str(built)


def operands(routine: str, n: int, dtype, rng) -> tuple:
    """Fresh Fortran-ordered inputs (the in-place routines overwrite them)."""
    a = np.asfortranarray(rng.standard_normal((n, n)).astype(dtype))
    if routine == "gemm":
        return a, np.asfortranarray(rng.standard_normal((n, n)).astype(dtype)), np.zeros((n, n), dtype, order="F")
    if routine == "syrk":
        return a, np.zeros((n, n), dtype, order="F")
    if routine == "trsm":
        t = np.asfortranarray(np.tril(a) + n * np.eye(n, dtype=dtype))
        return t, np.asfortranarray(rng.standard_normal((n, n)).astype(dtype))
    if routine == "potrf":
        s = a @ a.T + n * np.eye(n, dtype=dtype)
        return (np.asfortranarray(s),)
    if routine == "getrf_tall":   # an LU panel: 8n x n, as LU's first panel at N = 8 t
        return (np.asfortranarray(rng.standard_normal((8 * n, n)).astype(dtype)),)
    return (a,)  # getrf, geqrf


def call(routine: str, lib, args: tuple):
    if lib == "numpy":
        return np.matmul(args[0], args[1], out=args[2])
    if routine == "gemm":
        return blas.gemm(args[0], args[1], args[2], lib=lib)
    if routine == "syrk":
        return blas.syrk(args[0], args[1], lib=lib)
    if routine == "trsm":
        return blas.trsm(args[0], args[1], lib=lib)
    if routine == "potrf":
        return blas.potrf(args[0], lib=lib)
    if routine in ("getrf", "getrf_tall"):
        return blas.getrf(args[0], lib=lib)
    return blas.geqrf(args[0], lib=lib)


def check(routine: str, lib, n: int, dtype) -> None:
    """The library's result against numpy's/scipy's on a small case (a wrong fast answer is no answer)."""
    import scipy.linalg

    rng = np.random.default_rng(1)
    args = operands(routine, min(n, 256), dtype, rng)
    x = [np.array(a, np.float64, order="F") for a in args]
    out = call(routine, lib, args)
    if routine == "gemm":
        got, want = out, x[0] @ x[1]
    elif routine == "syrk":
        got, want = np.tril(out), np.tril(x[0] @ x[0].T)
    elif routine == "trsm":
        got, want = out, scipy.linalg.solve_triangular(x[0], x[1], lower=True)
    elif routine == "potrf":
        got, want = np.tril(out), scipy.linalg.cholesky(x[0], lower=True)
    elif routine in ("getrf", "getrf_tall"):
        got, want = out[0], scipy.linalg.lu_factor(x[0])[0]
    else:
        got, want = np.abs(np.triu(out[0])), np.abs(np.linalg.qr(x[0], mode="r"))
    err = np.linalg.norm(np.asarray(got, np.float64) - want) / np.linalg.norm(want)
    if err > (1e-10 if dtype == np.float64 else 1e-3):
        raise AssertionError(f"{routine} {np.dtype(dtype).name} on {lib}: relative error {err:.1e} against numpy")


def measure(routines, sizes, dtypes, libs: dict, reps: int) -> list[dict]:
    rows = []
    rng = np.random.default_rng(0)
    for dtype in dtypes:
        for n in sizes:
            for routine in routines:
                names = [k for k in libs if routine == "gemm" or libs[k] != "numpy"]
                for name in names:
                    check(routine, libs[name], n, dtype)
                seconds = {name: [] for name in names}
                for rep in range(reps + 1):  # the first round warms up (page faults, library init)
                    for name in names:
                        args = operands(routine, n, dtype, rng)
                        start = time.perf_counter()
                        call(routine, libs[name], args)
                        if rep:
                            seconds[name].append(time.perf_counter() - start)
                for name in names:
                    med = statistics.median(seconds[name])
                    rows.append({"routine": routine, "dtype": np.dtype(dtype).name, "n": n, "library": name,
                                 "median_s": med, "gflops": FLOPS[routine](n) / med / 1e9,
                                 "best_gflops": FLOPS[routine](n) / min(seconds[name]) / 1e9, "reps": reps})
                    print(f"{routine:6} {np.dtype(dtype).name:8} n={n:5} {name:9} {rows[-1]['gflops']:7.1f} GFLOPS "
                          f"(median of {reps}; best {rows[-1]['best_gflops']:.1f})", flush=True)
    return rows


def ratios(rows: list[dict], against: str = "OpenBLAS", routine: str | None = None) -> list[float]:
    """MKL / ``against`` GFLOPS for every (routine, dtype, n) cell (of one ``routine`` if given)."""
    by = {(r["routine"], r["dtype"], int(r["n"]), r["library"]): float(r["gflops"]) for r in rows}
    return [by[k] / by[(*k[:3], against)] for k in by
            if k[3] == "MKL" and (*k[:3], against) in by and routine in (None, k[0])]


def plot(rows: list[dict], out=None):
    """Bars of MKL / OpenBLAS per routine, dtype and n (1.0 = a tie)."""
    from benchmarks import common

    plt = common.pyplot()
    if plt is None:
        return None
    cells = sorted({(r["routine"], r["dtype"], int(r["n"])) for r in rows}, key=lambda c: (list(FLOPS).index(c[0]), c[1], c[2]))
    by = {(r["routine"], r["dtype"], int(r["n"]), r["library"]): float(r["gflops"]) for r in rows}
    fig, ax = plt.subplots(figsize=(11, 4))
    for x, c in enumerate(cells):
        ratio = by[(*c, "MKL")] / by[(*c, "OpenBLAS")]
        ax.bar(x, ratio, color="tab:blue" if c[1] == "float64" else "tab:orange")
        if (*c, "numpy") in by:
            ax.plot(x, by[(*c, "MKL")] / by[(*c, "numpy")], "k_", markersize=14)
    ax.axhline(1.0, color="gray", lw=0.8)
    ax.axhline(THRESHOLD, color="red", lw=0.8, ls="--")
    ax.set_xticks(range(len(cells)), [f"{r}\n{d[5:]} {n}" for r, d, n in cells], fontsize=7, rotation=90)
    ax.set_ylabel("MKL / OpenBLAS GFLOPS (1 core)")
    ax.set_title("blue float64, orange float32; black: MKL / numpy @ (GEMM); red: the 5% rule")
    return common.save_figure(fig, "blas_gflops", out)


def summary(rows: list[dict]) -> str:
    gemm = ratios(rows, "numpy", "gemm")
    every = ratios(rows)
    # the factorization kernels call blocks.blas too now: the rule's input is the median over every routine
    verdict = "MKL" if every and statistics.median(every) >= THRESHOLD else "OpenBLAS"
    parts = [f"GEMM, MKL / numpy @: median {statistics.median(gemm):.3f} over {len(gemm)} cells"] if gemm else []
    if every:
        parts.append(f"all routines, MKL / OpenBLAS (same binding): median {statistics.median(every):.3f} over "
                     f"{len(every)} cells (range {min(every):.2f}-{max(every):.2f})")
    return "; ".join(parts) + f"; default --blas by the >= {THRESHOLD:.2f} rule: {verdict}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, nargs="+", default=[1024, 2048, 4096], help="tile sizes")
    p.add_argument("--dtype", nargs="+", default=["float64", "float32"])
    p.add_argument("--routines", nargs="+", choices=sorted(FLOPS), default=list(FLOPS))
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--mkl", help="the MKL library (default: layers/.cache/mkl/build/libnumpywren_mkl.so, built if absent)")
    p.add_argument("--out", help="results folder (default benchmarks/results)")
    p.add_argument("--replot", metavar="CSV", help="only redraw the PNG and summary from an earlier CSV")
    args = p.parse_args(argv)
    if args.replot:
        import csv

        with open(args.replot) as f:
            rows = list(csv.DictReader(line for line in f if not line.startswith("#")))
        print(f"{summary(rows)}\n{plot(rows, args.out)}")
        return 0
    mkl = blas.Library(mkl_library(args.mkl))
    openblas = blas.Library(scipy_openblas())
    libs = {"MKL": mkl, "OpenBLAS": openblas, "numpy": "numpy"}
    print(f"MKL: {mkl.version} ({mkl.path})\nOpenBLAS: {openblas.path}\nnumpy {np.__version__}: "
          f"{blas.describe() if blas.library() is None else 'numpy'}")
    rows = measure(args.routines, args.n, [np.dtype(d).type for d in args.dtype], libs, args.reps)
    from benchmarks import common

    info = common.machine_info()
    info.update(mkl=mkl.version, openblas=f"scipy's {Path(openblas.path).name}", threads="1")
    info["summary"] = summary(rows)
    path = common.write_csv("blas_gflops", rows, info, args.out)
    print(f"{info['summary']}\n{path}\n{plot(rows, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
