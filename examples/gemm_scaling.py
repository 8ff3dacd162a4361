"""GEMM through the store on 1 and 2 local workers, checked against numpy, with a small scaling plot.

Usage: python examples/gemm_scaling.py [N] [TILE] [STORE]   (defaults 2048, 512, a temporary folder)
Writes gemm_scaling.png in the current folder. On a 2-core machine the second worker can only help as much as
the other load allows: the printed GFLOPS are this run's, measured.
"""
import sys
import tempfile

import matplotlib.pyplot as plt
import numpy as np

import numpywren
from numpywren import BigMatrix

n = int(sys.argv[1]) if len(sys.argv) > 1 else 2048
tile = int(sys.argv[2]) if len(sys.argv) > 2 else 512
store = numpywren.open_store(sys.argv[3] if len(sys.argv) > 3 else tempfile.mkdtemp(prefix="numpywren-gemm-"))

rng = np.random.default_rng(0)
a, b = rng.standard_normal((n, n)), rng.standard_normal((n, n))
A = BigMatrix.from_numpy(a, tile, store, "A", overwrite=True)
B = BigMatrix.from_numpy(b, tile, store, "B", overwrite=True)
reference = a @ b

workers, gflops = [1, 2], []
for w in workers:
    with numpywren.LocalExecutor(workers=w, store=store) as ex:
        C = numpywren.matmul(A, B, out="C", executor=ex)
    error = np.linalg.norm(C.to_numpy() - reference) / np.linalg.norm(reference)
    assert error < 1e-12, f"relative error {error:.2e} on {w} workers"
    gflops.append(2 * n**3 / C.report.wall_seconds / 1e9)
    print(f"{w} worker(s): {C.report.tasks} tasks in {C.report.wall_seconds:.2f} s, {gflops[-1]:.1f} GFLOPS, "
          f"relative error against numpy {error:.1e}")
    C.delete()

fig, ax = plt.subplots(figsize=(4.5, 3))
ax.plot(workers, gflops, "o-", label="numpywren matmul")
ax.plot(workers, [gflops[0] * w for w in workers], "--", color="grey", label="linear scaling")
ax.set(xlabel="local workers (1 BLAS thread each)", ylabel="GFLOPS", xticks=workers,
       title=f"C = A @ B, N={n}, tile {tile}")
ax.legend()
fig.tight_layout()
fig.savefig("gemm_scaling.png", dpi=100)
print("wrote gemm_scaling.png")
