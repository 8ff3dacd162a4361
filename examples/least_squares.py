"""A least-squares fit of a tall data set by TSQR on the workers, against numpy.linalg.lstsq.

Usage: python examples/least_squares.py [STORE]   (default: a temporary folder)
"""
import sys
import tempfile

import numpy as np

import numpywren
from numpywren import BigMatrix

rng = np.random.default_rng(0)
rows, cols = 60_000, 32
a = rng.standard_normal((rows, cols))
truth = rng.standard_normal(cols)
b = a @ truth + 0.01 * rng.standard_normal(rows)

store = numpywren.open_store(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp())
A = BigMatrix.from_numpy(a, tile_shape=(7_500, cols), store=store, key="A", overwrite=True)
with numpywren.LocalExecutor(workers=2, store=store) as ex:
    x, residuals, rank, s = numpywren.lstsq(A, b, executor=ex)      # the same four results as numpy's

x_np, residuals_np, rank_np, s_np = np.linalg.lstsq(a, b, rcond=None)
error = np.linalg.norm(x - x_np) / np.linalg.norm(x_np)
print(f"fit of {rows} x {cols}: rank {rank}, residual sum of squares {residuals[0]:.4f} "
      f"(numpy {residuals_np[0]:.4f}); coefficients vs numpy: relative difference {error:.1e}")
print(f"largest and smallest singular values {s[0]:.2f}, {s[-1]:.2f} (numpy {s_np[0]:.2f}, {s_np[-1]:.2f}); "
      f"distance to the true coefficients {np.linalg.norm(x - truth):.2e}")
assert error < 1e-10 and rank == rank_np and np.allclose(s, s_np, rtol=1e-10)
