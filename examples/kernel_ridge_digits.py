"""Kernel ridge regression on scikit-learn's bundled digits, solved exactly by the tiled Cholesky, against
scikit-learn's own KernelRidge on the same data.

Usage: python examples/kernel_ridge_digits.py [STORE]   (default: a temporary folder)
"""
import sys
import tempfile

import numpy as np
from sklearn.datasets import load_digits
from sklearn.kernel_ridge import KernelRidge as SklearnKernelRidge

import numpywren
from numpywren.kernels import KernelRidge

digits = load_digits()
x = digits.data / 16.0
y = np.eye(10)[digits.target]                  # one-hot targets: ten right-hand sides in one solve
train, test = slice(0, 1400), slice(1400, None)
params = dict(alpha=1e-2, kernel="rbf", gamma=0.05)

with numpywren.LocalExecutor(workers=2, store=sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp()) as ex:
    model = KernelRidge(**params, tile_size=350).fit(x[train], y[train], executor=ex)
    predicted = model.predict(x[test])
reference = SklearnKernelRidge(**params).fit(x[train], y[train])

accuracy = np.mean(predicted.argmax(axis=1) == digits.target[test])
difference = np.abs(model.dual_coef_ - reference.dual_coef_).max() / np.abs(reference.dual_coef_).max()
print(f"digits: {x.shape[0]} images of {x.shape[1]} pixels; trained on {train.stop}, tested on "
      f"{x.shape[0] - train.stop}")
print(f"held-out accuracy {accuracy:.3f}; dual coefficients vs scikit-learn: relative difference {difference:.1e}")
assert difference < 1e-8 and accuracy > 0.9
