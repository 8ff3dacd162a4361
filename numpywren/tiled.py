"""A matrix's tiles in a store: keys, block geometry, reading and writing bound tiles.

:class:`TiledMatrix` is the handle a worker gets for each matrix a tile task names (rebuilt from the
task spec's plain-data reference, see numpywren.protocol): what a tile runner needs and nothing of the
driver's. :class:`numpywren.matrix.BigMatrix` is the same handle with the driver's side added
(creation, whole-matrix I/O, the array-library surface).

Layout under the matrix's key (readable on purpose)::

    <key>/meta.json          shape, tile_shape, dtype, symmetric, format version, generation
    <key>/tiles/<hh>/<i>_<j> one tile per block, in the codec of numpywren.tile; ``<hh>`` is a
                             2-hex-digit hash of ``<i>_<j>`` spreading a matrix's tiles over 256 key
                             prefixes S3 can partition on (5,500 GETs/s per partition; a fresh bucket
                             has one); one listing under
                             ``<key>/tiles/`` still finds them all

Every (re)creation of a matrix gives it a new random *generation*, recorded
in meta.json; a handle remembers the generation it opened, and every tile is
bound (under its checksum) to matrix key, generation, block index and the run
that wrote it. Reading a tile checks that binding against the handle, so a
tile copied from elsewhere, left by another run, or read while the matrix is
being rewritten is an error (numpywren.tile.StaleTileError or
InputChangedError), never a value. ``A.T`` is a view that swaps block indices
and transposes tiles on read; ``A.H`` (complex) also conjugates them, and ``A.conj()`` only conjugates.
A *symmetric* matrix stores only the tiles with ``i >= j``; the others read as the transpose of their
mirror. A *Hermitian* matrix (complex; meta.json ``"hermitian": true``) stores the same tiles, and the
others read as the conjugate transpose of their mirror (a real Hermitian matrix is symmetric).
"""
from __future__ import annotations

import json
import operator
import zlib
from typing import Iterator

import numpy as np

from numpywren import tile as codec
from numpywren.storage import KeyNotFoundError, Store, open_store

FORMAT = "numpywren.matrix"
JOB_RECORD = "job.json"  # beside meta.json: what computed the matrix, and the run (numpywren.jobs)


def stored_tile_key(key: str, si: int, sj: int) -> str:
    """Key of stored tile (si, sj) of matrix ``key``: under a hash partition of the block index."""
    name = f"{si}_{sj}"
    return f"{key}/tiles/{zlib.crc32(name.encode()) & 0xFF:02x}/{name}"


FORMAT_VERSION = 3  # 2: meta.json has a generation and tiles are bound to it; 3: tiles under hash prefixes
#: Complex matrices need no new format version: meta.json's ``dtype`` is numpy's name and each tile's header its
#: ``dtype.str`` (``<c16``), both of which always named any dtype; matrices stored by older versions (real)
#: read unchanged, and an older numpywren refuses a complex matrix by its dtype (never misreads it).
SUPPORTED_DTYPES = ("float32", "float64", "complex64", "complex128")
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
    if dt.name not in SUPPORTED_DTYPES:
        numpys = f"array type {dt} is unsupported in linalg (as numpy.linalg says): " if dt.kind in "fc" else ""
        raise TypeError(f"{numpys}dtype {dt} is not supported; use one of {', '.join(SUPPORTED_DTYPES)}")
    return dt


class TiledMatrix:
    """A tiled matrix in a store, as a handle: geometry, tile keys, bound tile reads and writes."""

    _repr_name = "TiledMatrix"

    def __init__(self, store: "Store | str", key: str, shape, tile_shape, dtype,
                 symmetric: bool = False, transposed: bool = False, generation: str | None = None,
                 hermitian: bool = False, conjugated: bool = False):
        self.store = open_store(store)
        self.key = key.strip("/")
        self._shape = _normalize_shape(shape)          # stored orientation
        self._tile_shape = _normalize_tile_shape(tile_shape, self._shape)
        _check_size(self.key, self.store, self._shape, self._tile_shape)
        self.dtype = _normalize_dtype(dtype)
        complex_ = self.dtype.kind == "c"   # for real numbers, Hermitian is symmetric and conjugating is nothing
        self.symmetric = bool(symmetric or hermitian)
        self.hermitian = bool(hermitian) and complex_
        self.transposed = bool(transposed)
        self.conjugated = bool(conjugated) and complex_
        #: The generation this handle reads and writes (None: read from meta.json on first use).
        self.generation = generation
        if self.symmetric and (self._shape[0] != self._shape[1] or self._tile_shape[0] != self._tile_shape[1]):
            raise ValueError("a symmetric matrix needs a square shape and square tiles")

    @classmethod
    def open(cls, store, key: str) -> "TiledMatrix":
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
                       symmetric=meta.get("symmetric", False), generation=meta["generation"],
                       hermitian=meta.get("hermitian", False))
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            raise ValueError(f"{key!r} in {store.url} is not a numpywren matrix of format version "
                             f"{FORMAT_VERSION}: its meta.json is unreadable ({e!r})") from None

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
    def T(self) -> "TiledMatrix":
        """The transpose, as a view: same tiles, swapped block indices."""
        view = type(self).__new__(type(self))
        view.__dict__.update(self.__dict__, transposed=not self.transposed)
        return view

    @property
    def H(self) -> "TiledMatrix":
        """The conjugate transpose, as a view: same tiles, swapped block indices, conjugated on read
        (``A.T`` for a real matrix)."""
        return self.T.conj()

    def conj(self) -> "TiledMatrix":
        """The complex conjugate, as a view (tiles conjugated on read); a real matrix itself."""
        if self.dtype.kind != "c":
            return self
        view = type(self).__new__(type(self))
        view.__dict__.update(self.__dict__, conjugated=not self.conjugated)
        return view

    conjugate = conj

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
        data, where = self._stored_buffer(i, j, si, sj)
        block, binding = codec.decode_with_binding(data, where=where)
        self._check_binding(binding, si, sj, where)
        self._check_form(block.shape, block.dtype, si, sj, where)
        return self._oriented(block, flip, self._reads_conjugate(i, j))

    def get_block_rows(self, i: int, j: int):
        """Block (i, j) as ``(first row, rows)`` pieces for a kernel that reads it once row by row: the
        checksum is computed piece by piece just before each is handed on (one pass over memory instead of
        two), and a failed checksum raises **after** the last piece (codec.decode_rows), so a result
        computed from the pieces may be used only once the iteration ended. A view that reads the tile
        transposed or conjugated, and a subclass with its own reading, give the whole checked block."""
        (si, sj), flip = self.stored_index(i, j)
        if flip or self._reads_conjugate(i, j) or type(self).get_block is not TiledMatrix.get_block:
            return iter([(0, self.get_block(i, j))])
        data, where = self._stored_buffer(i, j, si, sj)
        binding, shape, dtype, pieces = codec.decode_rows(data, where=where)
        self._check_binding(binding, si, sj, where)
        self._check_form(shape, dtype, si, sj, where)
        return pieces

    def _stored_buffer(self, i: int, j: int, si: int, sj: int):
        """The stored bytes of block (i, j) (stored index (si, sj)), and how errors name them."""
        key = stored_tile_key(self.key, si, sj)
        try:
            data = self.store.get_buffer(key)
        except KeyNotFoundError:
            raise KeyNotFoundError(f"block ({i}, {j}) of {self!r} has not been written "
                                   f"(no object {key!r})") from None
        return data, f"block ({si}, {sj}) of matrix {self.key!r} ({key})"

    def _check_form(self, shape, dtype, si: int, sj: int, where: str) -> None:
        (r, c), (tr, tc) = self._shape, self._tile_shape  # the stored orientation
        expected = (min(tr, r - si * tr), min(tc, c - sj * tc))
        if tuple(shape) != expected or dtype != self.dtype:
            raise codec.CorruptTileError(f"{where}: expected shape {expected} and dtype {self.dtype}, found "
                                         f"{tuple(shape)} {dtype} (a tile left from another matrix?)")

    def _reads_conjugate(self, i: int, j: int) -> bool:
        """Whether block (i, j) of this view is the conjugate of what is stored: a conjugated view, or the
        mirrored triangle of a Hermitian matrix (both: conjugated twice, so not)."""
        if self.hermitian:
            si, sj = (j, i) if self.transposed else (i, j)
            return self.conjugated != (si < sj)
        return self.conjugated

    @staticmethod
    def _oriented(block: np.ndarray, flip: bool, conj: bool) -> np.ndarray:
        """A stored tile as this view reads it (transposed view; conjugated copy)."""
        block = block.T if flip else block
        return np.conj(block) if conj else block

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
        stored = self._oriented(block, flip, self._reads_conjugate(i, j))   # its own inverse
        key, data = stored_tile_key(self.key, si, sj), codec.encode(stored, binding)
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
            self.generation = TiledMatrix.open(self.store, self.key).generation
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
                now = TiledMatrix.open(self.store, self.key).generation
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

    # -- internals ---------------------------------------------------------------------------
    @property
    def _meta_key(self) -> str:
        return f"{self.key}/meta.json"

    def _layout(self) -> dict:
        """What the tiles look like (everything in meta.json but the generation)."""
        layout = {"format": FORMAT, "version": FORMAT_VERSION, "shape": list(self._shape),
                  "tile_shape": list(self._tile_shape), "dtype": self.dtype.name,
                  "symmetric": self.symmetric}
        if self.hermitian:   # only complex matrices have the field: a real one's meta.json is as before
            layout["hermitian"] = True
        return layout

    def _meta(self) -> dict:
        return {**self._layout(), "generation": self.current_generation()}

    # -- plain-data handles (the tile-task wire format; see numpywren.protocol) -------------------
    def to_ref(self) -> dict:
        """This handle as JSON-safe data: a task carries matrices like this, never pickled.

        The layout fields have meta.json's names. Cached per (key, generation, orientation): every
        task of a job carries the same few handles.
        """
        ident = (self.key, self.current_generation(), self.transposed, self.conjugated)
        cached = self.__dict__.get("_ref")
        if cached is None or cached[0] != ident:
            ref = {"store": self.store.url, "key": self.key, "shape": list(self._shape),
                   "tile_shape": list(self._tile_shape), "dtype": self.dtype.name, "symmetric": self.symmetric,
                   "transposed": self.transposed, "generation": self.generation}
            if self.dtype.kind == "c":
                ref.update(hermitian=self.hermitian, conjugated=self.conjugated)
            self._ref = cached = (ident, ref)
        return cached[1]

    @classmethod
    def from_ref(cls, ref: dict) -> "TiledMatrix":
        """Rebuild a handle from :meth:`to_ref` data; every field is validated by the constructor."""
        if not isinstance(ref, dict) or not isinstance(ref.get("generation"), str):
            raise ValueError(f"malformed matrix reference {ref!r}")
        if "zarr" in ref:  # never a native handle for a zarr array's reference
            raise ValueError(f"{ref.get('key')!r} is a zarr array's reference: numpywren.zarr_tiles.ZarrTiles "
                             f"rebuilds it (numpywren.worker.ops.load_matrix)")
        try:
            return cls(ref["store"], ref["key"], ref["shape"], ref["tile_shape"], ref["dtype"],
                       symmetric=bool(ref["symmetric"]), transposed=bool(ref["transposed"]),
                       generation=ref["generation"], hermitian=bool(ref.get("hermitian")),
                       conjugated=bool(ref.get("conjugated")))
        except KeyError as e:
            raise ValueError(f"malformed matrix reference: no {e} in {ref!r}") from None

    def __eq__(self, other) -> bool:
        return (isinstance(other, TiledMatrix) and self.store.url == other.store.url and self.key == other.key
                and self.transposed == other.transposed and self.conjugated == other.conjugated)

    def __hash__(self) -> int:
        return hash((self.store.url, self.key, self.transposed, self.conjugated))

    def __repr__(self) -> str:
        t = {(True, False): ".T", (True, True): ".H", (False, True): ".conj()"}.get(
            (self.transposed, self.conjugated), "")
        sym = ", hermitian" if self.hermitian else ", symmetric" if self.symmetric else ""
        return (f"{self._repr_name}({self.key!r}{t}, shape={self.shape}, tile_shape={self.tile_shape}, "
                f"dtype={self.dtype.name}{sym}, store={self.store.url!r})")
