"""Kernel PCA of scikit-learn's digits: the RBF kernel matrix built on the workers, its top eigenvectors by
subspace iteration whose products K @ V run on the workers (numpywren has no distributed eigensolver of its own
yet), checked against numpy's dense eigh of the same centered kernel.

Usage: python examples/kernel_pca_digits.py [STORE]   (default: a temporary folder)
"""
import sys
import tempfile

import numpy as np
from sklearn.datasets import load_digits
from sklearn.metrics.pairwise import rbf_kernel

import numpywren
from numpywren import BigMatrix

x = load_digits().data / 16.0
n, k, block, gamma = x.shape[0], 2, 10, 0.05
store = numpywren.open_store(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp())


def center(v):  # H v with H = I - 1 1^T / n: the kernel's centering, applied to the small side
    return v - v.mean(axis=0)


with numpywren.LocalExecutor(workers=2, store=store) as ex:
    X = BigMatrix.from_numpy(x, tile_shape=(600, 64), store=store, key="digits", overwrite=True)
    K = numpywren.kernel(X, kind="rbf", gamma=gamma, out="K", executor=ex)   # 1797 x 1797, one triangle
    V = np.linalg.qr(np.random.default_rng(0).standard_normal((n, block)))[0]
    for step in range(1, 41):
        with numpywren.using(ex):
            KV = center(np.asarray(K @ center(V)))                            # (H K H) V, K @ V on the workers
        ritz, vectors = np.linalg.eigh(V.T @ KV)                              # Rayleigh-Ritz on the block
        residual = np.linalg.norm(KV @ vectors[:, -k:] - V @ vectors[:, -k:] * ritz[-k:]) / ritz[-1]
        V = np.linalg.qr(KV @ vectors[:, ::-1])[0]
        if residual < 1e-7:  # eigenvalue errors are of the order of its square
            break
eigenvalues = ritz[::-1][:k]
projection = V[:, :k] * np.sqrt(eigenvalues)                                 # the data in its first k components

kc = center(center(rbf_kernel(x, gamma=gamma)).T)
expected = np.linalg.eigh(kc)[0][::-1][:k]
error = np.abs(eigenvalues - expected).max() / expected[0]
print(f"kernel PCA of {n} digits: top {k} eigenvalues {np.round(eigenvalues, 4)} after {step} products "
      f"(numpy's dense eigh: {np.round(expected, 4)}; relative difference {error:.1e})")
print(f"first two components of the first three images:\n{np.round(projection[:3], 4)}")
assert error < 1e-8
