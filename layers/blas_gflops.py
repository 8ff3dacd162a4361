"""Single-thread GEMM GFLOPS of numpy's BLAS, and optionally of MKL called directly (ctypes cblas_?gemm).

    python layers/blas_gflops.py [--n 2048] [--reps 3]
    PYTHONPATH=unzipped-layer/python python -s layers/blas_gflops.py       (the layer's numpy)
    LD_LIBRARY_PATH=MKL_LIB_DIR python layers/blas_gflops.py --mkl MKL_LIB_DIR/libmkl_rt.so.2

numpy from PyPI has no MKL build for cp311, so MKL is measured through its
C interface on the same arrays; both results are checked against each other.
Prints one CSV line per (library, dtype): best of ``reps`` runs.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import time

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy loads its BLAS
os.environ.setdefault("MKL_THREADING_LAYER", "SEQUENTIAL")

import numpy as np


def best_seconds(fn, reps: int) -> float:
    fn()  # warm up (page faults, BLAS init)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def mkl_gemm(lib, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    m, k = a.shape
    n = b.shape[1]
    c = np.zeros((m, n), a.dtype)
    scalar = ctypes.c_double if a.dtype == np.float64 else ctypes.c_float
    fn = lib.cblas_dgemm if a.dtype == np.float64 else lib.cblas_sgemm
    ptr = ctypes.c_void_p
    fn(101, 111, 111, m, n, k, scalar(1.0), ptr(a.ctypes.data), k, ptr(b.ctypes.data), n,
       scalar(0.0), ptr(c.ctypes.data), n)  # row major, no transposes
    return c


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=2048)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--mkl", help="path of libmkl_rt.so to measure as well")
    args = p.parse_args()
    n = args.n
    config = np.show_config(mode="dicts") if hasattr(np, "show_config") else {}
    blas = config.get("Build Dependencies", {}).get("blas", {})
    print("library,version,dtype,n,seconds,gflops")
    rng = np.random.default_rng(0)
    lib = ctypes.CDLL(args.mkl) if args.mkl else None
    for dtype in (np.float64, np.float32):
        a = rng.standard_normal((n, n)).astype(dtype)
        b = rng.standard_normal((n, n)).astype(dtype)
        flops = 2.0 * n ** 3
        s = best_seconds(lambda a=a, b=b: a @ b, args.reps)
        print(f"numpy {np.__version__} {blas.get('name', '?')},{blas.get('version', '?')},"
              f"{np.dtype(dtype).name},{n},{s:.4f},{flops / s / 1e9:.1f}")
        if lib is not None:
            want = a @ b
            got = mkl_gemm(lib, a, b)
            err = np.linalg.norm(got - want) / np.linalg.norm(want)
            assert err < (1e-12 if dtype == np.float64 else 1e-4), f"MKL result differs from numpy's: {err}"
            s = best_seconds(lambda a=a, b=b: mkl_gemm(lib, a, b), args.reps)
            print(f"MKL (ctypes cblas),{os.path.basename(args.mkl)},{np.dtype(dtype).name},{n},{s:.4f},"
                  f"{flops / s / 1e9:.1f}")


if __name__ == "__main__":
    main()
