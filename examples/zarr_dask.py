"""A zarr round trip: a zarr array read in place by the workers, a product written back as zarr v3 on the
workers, and dask reading the result, checked against numpy.

Usage: python examples/zarr_dask.py [FOLDER]   (default: a temporary folder; an S3 URL works the same)
"""
import os
import sys
import tempfile

import dask.array as da
import numpy as np
import zarr

import numpywren
from numpywren import BigMatrix

folder = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp()
rng = np.random.default_rng(0)
x = rng.standard_normal((3000, 1000))

source = zarr.create_array(os.path.join(folder, "x.zarr"), shape=x.shape, chunks=(1000, 500), dtype="float64",
                           overwrite=True)                        # zarr's default compressor (zstd)
source[:] = x
with numpywren.LocalExecutor(workers=2, store=folder) as ex, numpywren.using(ex):
    X = BigMatrix.from_zarr(os.path.join(folder, "x.zarr"))      # chunk (i, j) is tile (i, j): nothing copied
    G = X.T @ X                                                    # 1000 x 1000, tiles of 500
    G.to_zarr(os.path.join(folder, "gram.zarr"))                   # zarr v3, one task per chunk

gram = da.from_zarr(os.path.join(folder, "gram.zarr"))
print(f"dask reads {gram.shape} in chunks {gram.chunksize}, dtype {gram.dtype}")
trace, total = da.trace(gram).compute(), gram.sum().compute()
error = np.linalg.norm(gram.compute() - x.T @ x) / np.linalg.norm(x.T @ x)
print(f"trace {trace:.6e} (numpy {np.trace(x.T @ x):.6e}), sum {total:.6e}; relative error against numpy "
      f"{error:.1e}")
assert error < 1e-12
