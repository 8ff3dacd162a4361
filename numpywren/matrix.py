"""BigMatrix: a 2-D matrix stored as tiles in an object store, as the driver sees it.

The tiles, their keys, generations and bindings are numpywren.tiled's (:class:`~numpywren.tiled.TiledMatrix`,
the handle workers get); a BigMatrix adds what only a driver does: creating matrices, reading and
deleting whole ones, and the array-library surface (operators, reductions, slicing, numpy protocols).
Beside meta.json and the tiles, a matrix's folder holds::

    <key>/job.json           what computed the matrix, and which run (numpywren.jobs)

A BigMatrix object is only a handle (store URL, key, metadata): it pickles to a
few hundred bytes, so tasks carry matrices by reference and workers read the
tiles they need. ``A.T`` is a view that swaps block indices and transposes
tiles on read, ``A.H`` also conjugates them (complex); nothing is copied in the store.
"""
from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Callable

import numpy as np

from numpywren.protocol import new_id
from numpywren.storage import open_store
from numpywren.tiled import (FORMAT, FORMAT_VERSION, MAX_BLOCKS, MAX_DIM, SUPPORTED_DTYPES,  # noqa: F401
                             JOB_RECORD, MatrixNotFoundError, TiledMatrix, _normalize_dtype, stored_tile_key)

IO_THREADS = 8  # concurrent tile transfers from the driver (S3 latency hides behind these)


def _auto_tile(shape, dtype) -> tuple[int, int]:
    """``tile_shape=None``: the tile numpywren.tiling chooses for the executor operations would use now
    (tiling installs its rule as ``BigMatrix._tile_chooser``: it predicts jobs with numpywren.simulate, which
    builds plans of matrices, so this module cannot import it)."""
    from numpywren.tiled import _normalize_shape

    if BigMatrix._tile_chooser is None:  # imported as numpywren.matrix alone: load the package's installers
        import numpywren

        numpywren.BigMatrix  # noqa: B018 - the first public name loads numpywren/__init__.py's _INSTALLERS
    return BigMatrix._tile_chooser(_normalize_shape(shape), _normalize_dtype(dtype))


class BigMatrix(TiledMatrix):
    """A tiled matrix in a store. Build one with create, open, from_numpy or from_function (numpywren.creation)."""

    _repr_name = "BigMatrix"
    #: tile_shape=None's rule, (shape, dtype) -> tile shape: installed by numpywren.tiling
    _tile_chooser = None

    # -- construction ------------------------------------------------------------
    @classmethod
    def create(cls, shape, tile_shape=None, dtype="float64", store=None, key: str | None = None,
               symmetric: bool = False, overwrite: bool = False, hermitian: bool = False) -> "BigMatrix":
        """Write the metadata of a new, empty matrix (its tiles come later).

        ``tile_shape=None`` chooses the tile for the executor operations would use now
        (numpywren.tiling: shape, dtype, workers, worker memory and the platform's calibrated rates).

        If a matrix with the same shape, tile shape and dtype already exists at
        ``key``, it is reused as it is, generation included (so a resumed job
        can write into it); a different one is an error unless
        ``overwrite=True``, which deletes its tiles and starts a new generation.
        """
        store = open_store(store)
        key = key or f"matrices/{uuid.uuid4().hex[:12]}"
        if tile_shape is None:
            tile_shape = _auto_tile(shape, dtype)
        m = cls(store, key, shape, tile_shape, dtype, symmetric=symmetric, generation=new_id(), hermitian=hermitian)
        meta = json.dumps(m._meta()).encode()
        if overwrite:
            store.delete_prefix(f"{m.key}/tiles/")
            store.put(m._meta_key, meta)
        elif not store.put_if_absent(m._meta_key, meta):
            existing = cls.open(store, key)
            if existing._layout() != m._layout():
                raise FileExistsError(f"a different matrix already exists at {key!r} in {store.url} "
                                      f"({existing!r}); pass overwrite=True to replace it")
            m.generation = existing.generation
        return m

    @classmethod
    def _create_new(cls, shape, tile_shape, dtype, store, key, overwrite: bool) -> "BigMatrix":
        """``create`` for constructors that write every tile: an existing matrix is never reused silently."""
        store = open_store(store)
        if not overwrite and key is not None and store.exists(f"{key.strip('/')}/meta.json"):
            raise FileExistsError(f"a matrix already exists at {key!r} in {store.url} "
                                  f"({cls.open(store, key)!r}); pass overwrite=True to replace it")
        return cls.create(shape, tile_shape, dtype, store, key, overwrite=overwrite)

    @classmethod
    def from_numpy(cls, array, tile_shape=None, store=None, key: str | None = None,
                   overwrite: bool = False) -> "BigMatrix":
        """Store an in-memory array as tiles (1-D arrays become a column).

        An existing matrix at ``key`` is an error unless ``overwrite=True``.

        Parameters
        ----------
        array : array_like
            A 1-D or 2-D float32, float64, complex64 or complex128 array.
        tile_shape : int or tuple of int, optional
            Rows and columns per tile (one int: square tiles); clipped to the matrix. Default: chosen for
            the executor operations would use now (numpywren.tiling.choose_tile; a small matrix is one tile).
        store : Store or str, optional
            Where the tiles go; default the default store.
        key : str, optional
            The matrix's key; default a new key under ``matrices/``.
        overwrite : bool, default False
            Replace an existing matrix at ``key`` (a new generation).

        Returns
        -------
        BigMatrix
            The stored matrix.

        Raises
        ------
        FileExistsError
            A matrix exists at ``key`` and ``overwrite`` is False.
        TypeError
            A dtype other than float32, float64, complex64 or complex128.
        ValueError
            An unsupported shape or tile shape.
        """
        if isinstance(array, np.ma.MaskedArray):  # np.asarray would drop the mask without a word
            raise TypeError("a masked array has no BigMatrix equivalent: fill it first (x.filled(value))")
        array = np.asarray(array)
        if array.ndim == 1:
            array = array[:, None]
        if array.ndim != 2:
            raise ValueError(f"from_numpy takes a 1-D or 2-D array, got {array.ndim}-D: stacked matrices are not "
                             "supported; store each 2-D matrix of the stack as its own BigMatrix and run one job "
                             "per matrix (e.g. [numpywren.solve(A_i, b_i) for ...])")
        if not array.dtype.isnative:  # tiles hold native-endian numbers (what every worker's kernels read)
            array = array.astype(array.dtype.newbyteorder("="))
        if tile_shape is None:
            tile_shape = _auto_tile(array.shape, array.dtype)
        m = cls._create_new(array.shape, tile_shape, array.dtype, store, key, overwrite)
        with _discarded_on_error(m):
            _in_threads(lambda ij: m.put_block(*ij, array[m.block_slices(*ij)]), m.block_indices())
        return m

    def to_numpy(self) -> np.ndarray:
        """Read the whole matrix into memory (only for matrices that fit)."""
        out = np.empty(self.shape, dtype=self.dtype)

        def fetch(ij):
            out[self.block_slices(*ij)] = self.get_block(*ij)

        _in_threads(fetch, self.block_indices())
        return out

    def delete(self) -> None:
        """Remove the matrix's tiles and metadata (and the record of the job that computed it)."""
        self.store.delete_prefix(f"{self.key}/tiles/")
        self.store.delete(f"{self.key}/{JOB_RECORD}")
        self.store.delete(self._meta_key)

    # -- arithmetic ------------------------------------------------------------------------
    def __matmul__(self, other) -> "BigMatrix":
        # ``A @ B`` is sugar on the data type for an operation of the layer above it, which installs
        # itself (install_array_api): numpywren.linalg and numpywren.elementwise import this module.
        return _ew().matmul(self, other)

    # -- the array-library surface (numpywren.elementwise: tile jobs, reductions, slicing, numpy protocol) ----------
    # Operator results are temporaries: deleted from the store when their last handle goes (see keep()).
    def __rmatmul__(self, other) -> "BigMatrix":
        return _ew().matmul(other, self)

    def __add__(self, other):
        return _ew().binary("add", self, other)

    def __radd__(self, other):
        return _ew().binary("add", self, other, swap=True)

    def __sub__(self, other):
        return _ew().binary("subtract", self, other)

    def __rsub__(self, other):
        return _ew().binary("subtract", self, other, swap=True)

    def __mul__(self, other):
        return _ew().binary("multiply", self, other)

    def __rmul__(self, other):
        return _ew().binary("multiply", self, other, swap=True)

    def __truediv__(self, other):
        return _ew().binary("divide", self, other)

    def __rtruediv__(self, other):
        return _ew().binary("divide", self, other, swap=True)

    def __pow__(self, other):
        return _ew().binary("power", self, other)

    def __rpow__(self, other):
        return _ew().binary("power", self, other, swap=True)

    def __neg__(self):
        return _ew().unary("negative", self)

    def __pos__(self):
        return _ew().unary("copy", self)

    def __abs__(self):
        return _ew().unary("absolute", self)

    @property
    def real(self) -> "BigMatrix":
        """The real part (a job for a complex matrix, as numpy's ``a.real``; a real matrix is its own)."""
        return _ew().unary("real", self) if self.dtype.kind == "c" else self

    @property
    def imag(self) -> "BigMatrix":
        """The imaginary part, a real matrix (zeros for a real matrix, as numpy's ``a.imag``)."""
        return _ew().unary("imag", self)

    def astype(self, dtype, **options) -> "BigMatrix":
        """A copy in ``dtype`` (one of SUPPORTED_DTYPES), computed on the workers (run options as every operation).
        Complex to real is refused (it would drop the imaginary part): take ``A.real``."""
        return _ew().unary("copy", self, dtype=dtype, **options)

    def copy(self, out=None, **options) -> "BigMatrix":
        """A copy in native tiles (of a view, or of a zarr-backed matrix), computed on the workers."""
        return _ew().unary("copy", self, out=out, **options)

    def transpose(self) -> "BigMatrix":
        return self.T

    def sum(self, axis=None, **options):
        """Sum of all elements (a numpy scalar) or along ``axis`` (a numpy 1-D array), in this dtype.
        Run options as every operation (``compute=False``: the plan; its ``value`` after the run)."""
        return _ew().total(self, "sum", axis, **options)

    def mean(self, axis=None, **options):
        return _ew().total(self, "mean", axis, **options)

    def max(self, axis=None, **options):
        return _ew().total(self, "max", axis, **options)

    def min(self, axis=None, **options):
        return _ew().total(self, "min", axis, **options)

    def norm(self, **options):
        """The Frobenius norm."""
        return _ew().total(self, "norm", **options)

    def diagonal(self, offset: int = 0) -> np.ndarray:
        return _ew().diagonal(self, offset)

    def trace(self, offset: int = 0):
        return self.dtype.type(self.diagonal(offset).sum(dtype=self.dtype))

    def keep(self) -> "BigMatrix":
        """Make an operator's result permanent (otherwise deleted when its last handle goes)."""
        return _ew().keep(self)

    # BigMatrix.from_zarr and .to_zarr are installed by numpywren.zarr_io (it imports this module).

    def __getitem__(self, key) -> np.ndarray:
        """``A[r0:r1, c0:c1]``, ``A[i]``, ``A[i, j]``: numpy, reading only the tiles covered."""
        return _ew().getitem(self, key)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return _ew().to_array(self, dtype, copy)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        return _ew().array_ufunc(self, ufunc, method, inputs, kwargs)

    def __array_function__(self, func, types, args, kwargs):
        return _ew().array_function(func, args, kwargs)

#: The module implementing BigMatrix's array-library surface (operators, reductions, slicing): it installs
#: itself here when imported (numpywren.elementwise imports this module, so this one cannot import it).
_array_api = None


def install_array_api(module) -> None:
    global _array_api
    _array_api = module


def _ew():
    if _array_api is None:
        raise RuntimeError("BigMatrix's operators and reductions come with numpywren.elementwise: "
                           "`import numpywren` and use any public name, or `import numpywren.elementwise`")
    return _array_api


@contextmanager
def _discarded_on_error(matrix: BigMatrix):
    """Delete a matrix we just created if filling it fails, so a rerun is not refused; re-raise the error.

    Only for a matrix the constructor created (or replaced with overwrite=True). Both
    callers wait for every tile write before an error reaches here (only an interrupt
    can leave a late tile, without meta.json); a failed cleanup never hides the error.
    """
    try:
        yield
    except BaseException:
        try:
            matrix.delete()
        except Exception:  # the store may be what failed; the original error says more
            pass
        raise


def _in_threads(fn: Callable, items) -> None:
    """Run tile transfers concurrently (S3 latency hides behind the threads)."""
    with ThreadPoolExecutor(IO_THREADS) as pool:
        list(pool.map(fn, items))
