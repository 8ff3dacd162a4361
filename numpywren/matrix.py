"""BigMatrix: a 2-D matrix stored as tiles in an object store.

Layout under the matrix's key (readable on purpose)::

    <key>/meta.json          shape, tile shape, dtype, format version, generation
    <key>/tiles/<hh>/<i>_<j> one tile per block, in the codec of numpywren.tile; ``<hh>`` is a
                             2-hex-digit hash of ``<i>_<j>`` spreading a matrix's tiles over 256 key
                             prefixes (S3 serves about 5,500 GETs/s per prefix); one listing under
                             ``<key>/tiles/`` still finds them all
    <key>/job.json           what computed the matrix, and which run (numpywren.jobs)

Every (re)creation of a matrix gives it a new random *generation*, recorded
in meta.json; a handle remembers the generation it opened, and every tile is
bound (under its checksum) to matrix key, generation, block index and the run
that wrote it. Reading a tile checks that binding against the handle, so a
tile copied from elsewhere, left by another run, or read while the matrix is
being rewritten is an error (numpywren.tile.StaleTileError or
InputChangedError), never a value.

A BigMatrix object is only a handle (store URL, key, metadata): it pickles to a
few hundred bytes, so tasks carry matrices by reference and workers read the
tiles they need. ``A.T`` is a view that swaps block indices and transposes
tiles on read; nothing is copied in the store.

A *symmetric* matrix stores only the tiles with ``i >= j``; the others read as
the transpose of their mirror (used by syrk and by kernel matrices K(X, X)).
"""
from __future__ import annotations

import json
import operator
import uuid
import zlib
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Callable, Iterator

import numpy as np

from numpywren import tile as codec
from numpywren.api import get_executor
from numpywren.protocol import new_id
from numpywren.storage import KeyNotFoundError, Store, open_store

FORMAT = "numpywren.matrix"


def stored_tile_key(key: str, si: int, sj: int) -> str:
    """Key of stored tile (si, sj) of matrix ``key``: under a hash partition of the block index."""
    name = f"{si}_{sj}"
    return f"{key}/tiles/{zlib.crc32(name.encode()) & 0xFF:02x}/{name}"


JOB_RECORD = "job.json"  # beside meta.json: what computed the matrix, and the run (numpywren.jobs)
FORMAT_VERSION = 3  # 2: meta.json has a generation and tiles are bound to it; 3: tiles under hash prefixes
SUPPORTED_DTYPES = ("float32", "float64")
IO_THREADS = 8  # concurrent tile transfers from the driver (S3 latency hides behind these)
#: Limits checked before anything enumerates blocks: a meta.json is input, and a huge shape must be
#: an error, not a block list that exhausts memory.
MAX_DIM = 2**48
MAX_BLOCKS = 10**8


class MatrixNotFoundError(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


def _int_pair(value, error: type[Exception], message: str) -> tuple[int, int]:
    """``value`` as a pair of Python ints; floats, bools and strings are refused, not truncated."""
    try:
        first, second = value
        pair = tuple(operator.index(v) for v in (first, second) if not isinstance(v, bool))
    except (TypeError, ValueError):
        pair = ()
    if isinstance(value, (str, bytes)) or len(pair) != 2:
        raise error(f"{message}, got {value!r}")
    return pair


def _normalize_tile_shape(tile_shape, shape: tuple[int, int]) -> tuple[int, int]:
    """Tiles of at most ``tile_shape`` (an int means square): larger than the matrix is clipped, as dask and
    zarr clip chunks (``from_numpy(np.zeros((200, 100)), (128, 128))`` has tiles of (128, 100))."""
    if isinstance(tile_shape, (int, np.integer)) and not isinstance(tile_shape, bool):
        tile_shape = (tile_shape, tile_shape)
    tr, tc = _int_pair(tile_shape, TypeError, "tile_shape must be an int or a pair of ints")
    if tr <= 0 or tc <= 0:
        raise ValueError(f"tile shape must be positive, got {(tr, tc) if tr != tc else tr}")
    return min(tr, max(shape[0], 1)), min(tc, max(shape[1], 1))   # an empty dimension keeps tiles of 1


def _normalize_shape(shape) -> tuple[int, int]:
    rows, cols = _int_pair(shape, ValueError, "a BigMatrix is 2-D: shape must be a pair of ints")
    if rows < 0 or cols < 0:   # 0 x n, n x 0 and 0 x 0 are matrices with no tiles, as numpy's empty arrays
        raise ValueError(f"matrix shape must not be negative, got {(rows, cols)}")
    return rows, cols


def _check_size(key: str, store: Store, shape: tuple[int, int], tile_shape: tuple[int, int]) -> None:
    """Refuse a matrix too large to enumerate its blocks (see MAX_DIM and MAX_BLOCKS)."""
    grid = tuple(-(-s // t) for s, t in zip(shape, tile_shape))
    if max(shape) >= MAX_DIM or grid[0] * grid[1] > MAX_BLOCKS:
        raise ValueError(f"matrix {key!r} in {store.url} is too large: shape {shape} in tiles of {tile_shape} "
                         f"is a {grid[0]}x{grid[1]} block grid; the limits are dimensions below {MAX_DIM} "
                         f"and at most {MAX_BLOCKS} blocks")


def _normalize_dtype(dtype) -> np.dtype:
    dt = np.dtype(dtype)
    if dt.kind == "c":
        raise TypeError(f"dtype {dt} is not supported: complex matrices are not supported yet (numpywren stores "
                        "real float32/float64; store the real and imaginary parts as two matrices)")
    if dt.name not in SUPPORTED_DTYPES:
        raise TypeError(f"dtype {dt} is not supported; use one of {', '.join(SUPPORTED_DTYPES)}")
    return dt


class BigMatrix:
    """A tiled matrix in a store. Build one with create, open, from_numpy or from_function."""

    def __init__(self, store: "Store | str", key: str, shape, tile_shape, dtype,
                 symmetric: bool = False, transposed: bool = False, generation: str | None = None):
        self.store = open_store(store)
        self.key = key.strip("/")
        self._shape = _normalize_shape(shape)          # stored orientation
        self._tile_shape = _normalize_tile_shape(tile_shape, self._shape)
        _check_size(self.key, self.store, self._shape, self._tile_shape)
        self.dtype = _normalize_dtype(dtype)
        self.symmetric = bool(symmetric)
        self.transposed = bool(transposed)
        #: The generation this handle reads and writes (None: read from meta.json on first use).
        self.generation = generation
        if self.symmetric and (self._shape[0] != self._shape[1] or self._tile_shape[0] != self._tile_shape[1]):
            raise ValueError("a symmetric matrix needs a square shape and square tiles")

    # -- construction ------------------------------------------------------------
    @classmethod
    def create(cls, shape, tile_shape, dtype="float64", store=None, key: str | None = None,
               symmetric: bool = False, overwrite: bool = False) -> "BigMatrix":
        """Write the metadata of a new, empty matrix (its tiles come later).

        If a matrix with the same shape, tile shape and dtype already exists at
        ``key``, it is reused as it is, generation included (so a resumed job
        can write into it); a different one is an error unless
        ``overwrite=True``, which deletes its tiles and starts a new generation.
        """
        store = open_store(store)
        key = key or f"matrices/{uuid.uuid4().hex[:12]}"
        m = cls(store, key, shape, tile_shape, dtype, symmetric=symmetric, generation=new_id())
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
    def open(cls, store, key: str) -> "BigMatrix":
        """Open an existing matrix by key (reads its metadata)."""
        store = open_store(store)
        try:
            raw = store.get(f"{key.strip('/')}/meta.json")
        except KeyNotFoundError:
            raise MatrixNotFoundError(f"no matrix at {key!r} in {store.url} (no meta.json)") from None
        try:
            meta = json.loads(raw)
            if meta.get("format") != FORMAT or meta.get("version") != FORMAT_VERSION:
                raise ValueError(f"format {meta.get('format')!r} version {meta.get('version')!r}")
            if not isinstance(meta.get("generation"), str) or not meta["generation"]:
                raise ValueError("no generation")
            return cls(store, key, meta["shape"], meta["tile_shape"], meta["dtype"],
                       symmetric=meta.get("symmetric", False), generation=meta["generation"])
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            raise ValueError(f"{key!r} in {store.url} is not a numpywren matrix of format version "
                             f"{FORMAT_VERSION}: its meta.json is unreadable ({e!r})") from None

    @classmethod
    def from_numpy(cls, array, tile_shape, store=None, key: str | None = None,
                   overwrite: bool = False) -> "BigMatrix":
        """Store an in-memory array as tiles (1-D arrays become a column).

        An existing matrix at ``key`` is an error unless ``overwrite=True``.
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
        m = cls._create_new(array.shape, tile_shape, array.dtype, store, key, overwrite)
        with _discarded_on_error(m):
            _in_threads(lambda ij: m.put_block(*ij, array[m.block_slices(*ij)]), m.block_indices())
        return m

    @classmethod
    def from_function(cls, fn: Callable[[int, int], np.ndarray], shape, tile_shape,
                      dtype="float64", store=None, key: str | None = None, executor=None,
                      overwrite: bool = False, progress: bool | None = None) -> "BigMatrix":
        """Build a matrix tile by tile on the workers: ``fn(i, j)`` returns block (i, j).

        The whole matrix is never held anywhere; each worker generates and
        writes its own tiles (use it for random or structured inputs).
        ``progress=None`` shows a bar of generated tiles only on a terminal.
        An existing matrix at ``key`` is an error unless ``overwrite=True``.
        """
        executor = get_executor(executor)
        store = open_store(store) if store is not None else executor.store
        m = cls._create_new(shape, tile_shape, dtype, store, key, overwrite)
        with _discarded_on_error(m):
            futures = executor.map(_generate_block, list(m.block_indices()), extra_args=(m, fn))
            try:
                executor.get_all_results(futures, progress=progress, desc=f"generating {m.key}")
            finally:  # its calls' objects (function, arguments, results) are not the user's data
                executor.cleanup([futures[0].callset])
        return m

    # -- shape ---------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        return self._shape[::-1] if self.transposed else self._shape

    @property
    def tile_shape(self) -> tuple[int, int]:
        return self._tile_shape[::-1] if self.transposed else self._tile_shape

    @property
    def grid(self) -> tuple[int, int]:
        """Number of blocks along each dimension."""
        return tuple(-(-s // t) for s, t in zip(self.shape, self.tile_shape))

    ndim = 2

    @property
    def size(self) -> int:
        return self.shape[0] * self.shape[1]

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def T(self) -> "BigMatrix":
        """The transpose, as a view: same tiles, swapped block indices."""
        view = type(self).__new__(type(self))
        view.__dict__.update(self.__dict__, transposed=not self.transposed)
        return view

    def block_indices(self) -> Iterator[tuple[int, int]]:
        rows, cols = self.grid
        return ((i, j) for i in range(rows) for j in range(cols))

    def block_slices(self, i: int, j: int) -> tuple[slice, slice]:
        self._check_index(i, j)
        (tr, tc), (r, c) = self.tile_shape, self.shape
        return slice(i * tr, min((i + 1) * tr, r)), slice(j * tc, min((j + 1) * tc, c))

    def block_shape(self, i: int, j: int) -> tuple[int, int]:
        rs, cs = self.block_slices(i, j)
        return rs.stop - rs.start, cs.stop - cs.start

    def _check_index(self, i: int, j: int) -> None:
        if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (i, j)):
            raise TypeError(f"block indices must be ints, got ({i!r}, {j!r})")
        rows, cols = self.grid
        if not (0 <= i < rows and 0 <= j < cols):
            raise IndexError(f"block index ({i}, {j}) is outside the {rows}x{cols} block grid of {self!r}")

    # -- tiles -----------------------------------------------------------------------
    def stored_index(self, i: int, j: int) -> tuple[tuple[int, int], bool]:
        """Where block (i, j) of this view is stored, and whether it reads transposed."""
        self._check_index(i, j)
        flip = self.transposed
        if flip:
            i, j = j, i
        if self.symmetric and i < j:
            return (j, i), not flip
        return (i, j), flip

    def tile_key(self, i: int, j: int) -> str:
        """Store key of block (i, j) of this view (the one place tile keys are built)."""
        (si, sj), _ = self.stored_index(i, j)
        return stored_tile_key(self.key, si, sj)

    def get_block(self, i: int, j: int) -> np.ndarray:
        """Read block (i, j): a read-only array, checked against its checksum.

        On a LocalStore the array maps the tile file (no copy, 64-byte aligned
        for BLAS); ``np.array(block)`` gives a writeable copy.
        """
        (si, sj), flip = self.stored_index(i, j)
        key = stored_tile_key(self.key, si, sj)
        try:
            data = self.store.get_buffer(key)
        except KeyNotFoundError:
            raise KeyNotFoundError(f"block ({i}, {j}) of {self!r} has not been written "
                                   f"(no object {key!r})") from None
        where = f"block ({si}, {sj}) of matrix {self.key!r} ({key})"
        block, binding = codec.decode_with_binding(data, where=where)
        self._check_binding(binding, si, sj, where)
        (r, c), (tr, tc) = self._shape, self._tile_shape  # the stored orientation
        expected = (min(tr, r - si * tr), min(tc, c - sj * tc))
        if block.shape != expected or block.dtype != self.dtype:
            raise codec.CorruptTileError(f"{where}: expected shape {expected} and dtype {self.dtype}, found "
                                         f"{block.shape} {block.dtype} (a tile left from another matrix?)")
        return block.T if flip else block

    def put_block(self, i: int, j: int, block: np.ndarray, run: str | None = None) -> None:
        """Write block (i, j) atomically, bound to this generation and to ``run`` (who wrote it).

        Its shape and dtype must match the grid. Written by hand (``run=None``), a block is
        written once per generation: replacing a tile would change the matrix under the jobs
        that read it, or that recorded it for a resume, while its generation says it is
        unchanged. To change a stored matrix, store it anew (``BigMatrix.from_numpy(...,
        overwrite=True)`` starts a new generation). A job's task (``run=``) may write its
        output tile again: running a task twice is safe.
        """
        block = np.asarray(block)
        expected = self.block_shape(i, j)
        if block.shape != expected:
            raise ValueError(f"block ({i}, {j}) of {self!r} must have shape {expected}, got {block.shape}")
        if block.dtype != self.dtype:
            raise TypeError(f"block ({i}, {j}) of {self!r} must have dtype {self.dtype}, got {block.dtype}")
        (si, sj), flip = self.stored_index(i, j)
        binding = {"matrix": self.key, "gen": self.current_generation(), "block": [si, sj], "run": run or "driver"}
        key, data = stored_tile_key(self.key, si, sj), codec.encode(block.T if flip else block, binding)
        if run is not None:
            return self.store.put(key, data)
        if self.store.put_if_absent(key, data):
            return
        old = self.tile_binding(i, j)
        if old is not None and old.get("gen") == binding["gen"] and old.get("matrix") == self.key:
            raise ValueError(f"block ({i}, {j}) of {self!r} is already written: a matrix's tiles are written "
                             f"once per generation, so that jobs reading it never see it change; store the "
                             f"changed matrix anew (BigMatrix.from_numpy(..., overwrite=True))")
        self.store.put(key, data)  # a tile left by an earlier generation or a deleted matrix: replace it

    def tile_binding(self, i: int, j: int) -> dict | None:
        """The binding of the tile stored for block (i, j) (matrix, gen, block, run), checking its header
        and length only; None if it is missing, corrupt or unbound."""
        key = self.tile_key(i, j)
        try:
            head, size = self.store.get_head(key, codec.HEADER_PEEK_BYTES)
            binding, _shape, _dtype = codec.peek_binding(head, size, where=key)
        except (KeyNotFoundError, codec.CorruptTileError):
            return None
        return binding

    def written_by(self, i: int, j: int) -> str | None:
        """The run that wrote block (i, j) if the stored tile is this generation's; else None (recompute it)."""
        (si, sj), _ = self.stored_index(i, j)
        binding = self.tile_binding(i, j)
        try:
            self._check_binding(binding, si, sj, "", classify=False)
        except codec.CorruptTileError:
            return None
        return binding["run"]

    def current_generation(self) -> str:
        """This handle's generation (read from meta.json once if the handle was built by hand)."""
        if self.generation is None:
            self.generation = BigMatrix.open(self.store, self.key).generation
        return self.generation

    def _check_binding(self, binding: dict | None, si: int, sj: int, where: str, classify: bool = True) -> None:
        """Refuse a tile that is not block (si, sj) of this generation of this matrix."""
        if binding is None:
            raise codec.StaleTileError(f"{where}: the tile carries no binding (written by an older numpywren); "
                                       "store the matrix again")
        if binding["matrix"] != self.key or binding["block"] != [si, sj]:
            raise codec.StaleTileError(f"{where}: the tile is block {tuple(binding['block'] or ())} of matrix "
                                       f"{binding['matrix']!r} (copied or moved there), not this one")
        gen = self.current_generation()
        if binding["gen"] == gen:
            return
        if classify:
            try:
                now = BigMatrix.open(self.store, self.key).generation
            except (KeyError, ValueError):
                now = None
            if now == binding["gen"]:
                raise codec.InputChangedError(
                    f"{where}: matrix {self.key!r} was rewritten (generation {gen} -> {now}) while it was "
                    f"being read; open it again (BigMatrix.open) or rerun the job on the new contents")
        raise codec.StaleTileError(f"{where}: the tile was written by run {binding['run']!r} for generation "
                                   f"{binding['gen']} of the matrix, but this is generation {gen}: another run "
                                   f"wrote into this matrix; recompute it")

    def block_exists(self, i: int, j: int) -> bool:
        return self.store.exists(self.tile_key(i, j))

    def stored_blocks(self) -> list[tuple[int, int]]:
        """Block indices (stored orientation) that must exist for the matrix to be complete."""
        rows, cols = -(-self._shape[0] // self._tile_shape[0]), -(-self._shape[1] // self._tile_shape[1])
        return [(i, j) for i in range(rows) for j in range(cols) if not (self.symmetric and i < j)]

    def missing_blocks(self) -> list[tuple[int, int]]:
        """Stored block indices with no tile yet (one listing, not one request per tile)."""
        present = set(self.store.list(f"{self.key}/tiles/"))
        return [ij for ij in self.stored_blocks() if stored_tile_key(self.key, *ij) not in present]

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
        # Imports inside these methods, on purpose: ``A @ B`` is sugar on the data type for an operation
        # of the layer above it (numpywren.linalg and numpywren.elementwise import this module).
        return _ew().matmul(self, other)

    # -- internals ---------------------------------------------------------------------------
    @property
    def _meta_key(self) -> str:
        return f"{self.key}/meta.json"

    def _layout(self) -> dict:
        """What the tiles look like (everything in meta.json but the generation)."""
        return {"format": FORMAT, "version": FORMAT_VERSION, "shape": list(self._shape),
                "tile_shape": list(self._tile_shape), "dtype": self.dtype.name,
                "symmetric": self.symmetric}

    def _meta(self) -> dict:
        return {**self._layout(), "generation": self.current_generation()}

    # -- plain-data handles (the tile-task wire format; see numpywren.protocol) -------------------
    def to_ref(self) -> dict:
        """This handle as JSON-safe data: a task carries matrices like this, never pickled.

        Cached per (key, generation, orientation): every task of a job carries the same few handles.
        """
        ident = (self.key, self.current_generation(), self.transposed)
        cached = self.__dict__.get("_ref")
        if cached is None or cached[0] != ident:
            ref = {"store": self.store.url, "key": self.key, "shape": list(self._shape),
                   "tile": list(self._tile_shape), "dtype": self.dtype.name, "sym": self.symmetric,
                   "t": self.transposed, "gen": self.generation}
            self._ref = cached = (ident, ref)
        return cached[1]

    @classmethod
    def from_ref(cls, ref: dict) -> "BigMatrix":
        """Rebuild a handle from :meth:`to_ref` data; every field is validated by the constructor."""
        if not isinstance(ref, dict) or not isinstance(ref.get("gen"), str):
            raise ValueError(f"malformed matrix reference {ref!r}")
        if "zarr" in ref and cls is BigMatrix:  # a zarr array read in place (numpywren.zarr_io)
            from numpywren.zarr_io import ZarrMatrix

            return ZarrMatrix.from_ref(ref)
        return cls(ref["store"], ref["key"], ref["shape"], ref["tile"], ref["dtype"], symmetric=bool(ref["sym"]),
                   transposed=bool(ref["t"]), generation=ref["gen"])

    def __eq__(self, other) -> bool:
        return (isinstance(other, BigMatrix) and self.store.url == other.store.url and self.key == other.key
                and self.transposed == other.transposed)

    def __hash__(self) -> int:
        return hash((self.store.url, self.key, self.transposed))

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

    def astype(self, dtype) -> "BigMatrix":
        """A copy in ``dtype`` (float32 or float64), computed on the workers."""
        return _ew().unary("copy", self, dtype=dtype)

    def copy(self, out=None) -> "BigMatrix":
        """A copy in native tiles (of a view, or of a zarr-backed matrix), computed on the workers."""
        return _ew().unary("copy", self, out=out)

    def transpose(self) -> "BigMatrix":
        return self.T

    def sum(self, axis=None):
        """Sum of all elements (a numpy scalar) or along ``axis`` (a numpy 1-D array), in this dtype."""
        return _ew().total(self, "sum", axis)

    def mean(self, axis=None):
        return _ew().total(self, "mean", axis)

    def max(self, axis=None):
        return _ew().total(self, "max", axis)

    def min(self, axis=None):
        return _ew().total(self, "min", axis)

    def norm(self):
        """The Frobenius norm."""
        return _ew().total(self, "norm")

    def diagonal(self, offset: int = 0) -> np.ndarray:
        return _ew().diagonal(self, offset)

    def trace(self, offset: int = 0):
        return self.dtype.type(self.diagonal(offset).sum(dtype=self.dtype))

    def keep(self) -> "BigMatrix":
        """Make an operator's result permanent (otherwise deleted when its last handle goes)."""
        return _ew().keep(self)

    @classmethod
    def from_zarr(cls, array_or_url) -> "BigMatrix":
        """An existing 2-D zarr array (v3 or v2) as an input, read in place by the workers (numpywren.zarr_io)."""
        from numpywren.zarr_io import from_zarr

        return from_zarr(array_or_url)

    def to_zarr(self, url, executor=None, **options) -> "BigMatrix":
        """Write this matrix as a zarr v3 array at ``url`` (tile = chunk) on the workers; return it opened."""
        from numpywren.zarr_io import to_zarr

        return to_zarr(self, url, executor, **options)

    def __getitem__(self, key) -> np.ndarray:
        """``A[r0:r1, c0:c1]``, ``A[i]``, ``A[i, j]``: numpy, reading only the tiles covered."""
        return _ew().getitem(self, key)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return _ew().to_array(self, dtype, copy)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        return _ew().array_ufunc(self, ufunc, method, inputs, kwargs)

    def __array_function__(self, func, types, args, kwargs):
        return _ew().array_function(func, args, kwargs)

    def __repr__(self) -> str:
        t = ".T" if self.transposed else ""
        sym = ", symmetric" if self.symmetric else ""
        return (f"BigMatrix({self.key!r}{t}, shape={self.shape}, tile_shape={self.tile_shape}, "
                f"dtype={self.dtype.name}{sym}, store={self.store.url!r})")


def _ew():
    import numpywren.elementwise

    return numpywren.elementwise


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


def _generate_block(ij: tuple[int, int], matrix: BigMatrix, fn: Callable) -> tuple[int, int]:
    """Worker side of from_function: make one tile and write it."""
    i, j = ij
    block = np.asarray(fn(i, j))
    if not np.can_cast(block.dtype, matrix.dtype, casting="same_kind"):
        raise TypeError(f"from_function: fn({i}, {j}) returned dtype {block.dtype}, which does not convert "
                        f"safely to the matrix dtype {matrix.dtype}")
    matrix.put_block(i, j, block.astype(matrix.dtype, copy=False), run="from_function")  # a retry may rewrite it
    return ij
