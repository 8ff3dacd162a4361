"""The worker side of zarr interoperability: a zarr array's chunks as a matrix's tiles (see numpywren.zarr_io).

:class:`ZarrTiles` is the handle a worker gets for a zarr array a tile task names (rebuilt from its
reference, numpywren.protocol.load_matrix): chunk (i, j) is tile (i, j), read through numpywren's stores
and decoded with zarr's codec pipeline; a chunk whose identity changed since the driver opened the array,
or that is not the bytes a published manifest names, is an error (InputChangedError). A task's write is
fenced by the array's job record and records the digest of the bytes it wrote under its run's prefix.
numpywren.zarr_io (the driver: from_zarr, to_zarr, publishing) builds on it.
"""
from __future__ import annotations

import hashlib
import json

import numpy as np

from numpywren import protocol
from numpywren.storage import KeyNotFoundError
from numpywren.tile import InputChangedError, StaleTileError
from numpywren.tiled import JOB_RECORD, TiledMatrix

ABSENT = "-"  # the identity of a chunk that does not exist (it reads as the fill value)
CONTENT = "c:"  # an identity with this prefix is a digest of the chunk's bytes (a published manifest)


def _zarr():
    try:
        import zarr
    except ImportError:
        raise ImportError("zarr interoperability needs zarr: pip install 'numpywren[zarr]'") from None
    return zarr


class ZarrTiles(TiledMatrix):
    """A 2-D zarr array used in place: tile (i, j) is chunk (i, j), decoded with zarr's codecs on read."""

    def __init__(self, store, key: str, meta: dict, ids: list | None, transposed: bool = False):
        shape, chunks, dtype = _layout_of(meta)
        self.zarr_meta, self.zarr_ids = meta, ids
        # chunks larger than the array are clipped to it, as for native tiles: the grid is then 1 there
        super().__init__(store, key, shape, chunks, dtype, transposed=transposed, generation=_generation(meta, ids))

    # -- reading and writing chunks ------------------------------------------------------------------------
    def chunk_key(self, si: int, sj: int) -> str:
        meta = self.zarr_meta
        if meta["format"] == 2:
            return f"{self.key}/{si}{meta['separator']}{sj}"
        if meta["encoding"] == "v2":
            return f"{self.key}/{si}{meta['separator']}{sj}"
        return f"{self.key}/c{meta['separator']}{si}{meta['separator']}{sj}"

    def tile_key(self, i: int, j: int) -> str:
        (si, sj), _ = self.stored_index(i, j)
        return self.chunk_key(si, sj)

    def get_block(self, i: int, j: int) -> np.ndarray:
        (si, sj), flip = self.stored_index(i, j)
        key = self.chunk_key(si, sj)
        try:
            data = self.store.get(key)
        except KeyNotFoundError:
            data = None
        if self.zarr_ids is not None:
            expected = self.zarr_ids[si * self._grid[1] + sj]
            if expected.startswith(CONTENT):  # a published array: the bytes must be the publishing run's
                if data is None or CONTENT + _content_digest(data) != expected:
                    raise InputChangedError(
                        f"chunk {key!r} of zarr array {self.key!r} in {self.store.url} is not the chunk run "
                        f"{self.zarr_meta.get('run')!r} published ({'missing' if data is None else 'other bytes'}): "
                        "another writer changed the array; write it again (to_zarr) and reopen it")
            else:
                now = _identity(self.store, key) if data is not None else ABSENT
                if now != expected:
                    raise InputChangedError(f"chunk {key!r} of zarr array {self.key!r} in {self.store.url} changed "
                                            "since the job opened it (its identity differs); open the array again "
                                            "(BigMatrix.from_zarr) and rerun")
        block = _decode(self.zarr_meta, self.block_slices_stored(si, sj), key.rpartition(self.key + "/")[2], data)
        block = block.astype(self.dtype, copy=False)
        return self._oriented(block, flip, self.conjugated)

    def put_block(self, i: int, j: int, block: np.ndarray, run: str | None = None) -> None:
        """Encode block (i, j) as its chunk with zarr's codecs and write it (an all-fill chunk is deleted).

        A task's write (``run``) is fenced: it is refused (StaleTileError, not retried) unless the array's
        job record names ``run``, and the digest of what it wrote is recorded for the run's manifest."""
        (si, sj), flip = self.stored_index(i, j)
        block = np.asarray(self._oriented(block, flip, self.conjugated))
        key = self.chunk_key(si, sj)
        data = _encode(self.zarr_meta, self.block_slices_stored(si, sj), key.rpartition(self.key + "/")[2], block)
        if run is not None:
            self._check_fence(run, key)
        if data is None:
            self.store.delete(key)
        else:
            self.store.put(key, data)
        if run is not None:
            digest = ABSENT if data is None else _content_digest(data)
            self.store.put(f"{_marker_prefix(run)}{si}_{sj}/{digest}", b"")

    def _check_fence(self, run: str, key: str) -> None:
        try:
            owner = json.loads(self.store.get(f"{self.key}/{JOB_RECORD}")).get("run")
        except (KeyNotFoundError, ValueError, AttributeError):
            owner = None
        if owner != run:
            raise StaleTileError(f"chunk {key!r} of zarr array {self.key!r} in {self.store.url}: run {run!r} no "
                                 f"longer owns the array (its job record names run {owner!r}); not written")

    def block_slices_stored(self, si: int, sj: int) -> tuple[slice, slice]:
        (r, c), (tr, tc) = self._shape, self._tile_shape
        return slice(si * tr, min((si + 1) * tr, r)), slice(sj * tc, min((sj + 1) * tc, c))

    @property
    def _grid(self) -> tuple[int, int]:
        return tuple(-(-s // t) for s, t in zip(self._shape, self._tile_shape))

    # -- what differs from native tiles ----------------------------------------------------------------------------
    def written_by(self, i: int, j: int) -> str | None:
        return None  # chunks carry no binding: a retried task rewrites its (identical) chunk

    def tile_binding(self, i: int, j: int) -> dict | None:
        return None

    def missing_blocks(self) -> list:
        return []  # a missing chunk is the fill value, as in zarr

    def current_generation(self) -> str:
        return self.generation

    def to_ref(self) -> dict:
        return {**super().to_ref(), "zarr": {"meta": self.zarr_meta, "ids": self.zarr_ids}}

    @classmethod
    def from_ref(cls, ref: dict) -> "ZarrTiles":
        z = ref.get("zarr")
        if not isinstance(z, dict) or not isinstance(z.get("meta"), dict):
            raise ValueError(f"malformed zarr matrix reference {ref!r}")
        ids = z.get("ids")
        if ids is not None and not (isinstance(ids, list) and all(isinstance(s, str) for s in ids)):
            raise ValueError("malformed zarr matrix reference: ids must be a list of strings")
        M = cls(ref["store"], ref["key"], z["meta"], ids, transposed=bool(ref["transposed"]))
        M.conjugated = bool(ref.get("conjugated")) and M.dtype.kind == "c"
        if ref.get("generation") != M.generation:
            raise ValueError(f"zarr matrix reference {ref['key']!r}: generation does not match its metadata")
        return M

    def __repr__(self) -> str:
        return "Zarr" + super().__repr__()


def _marker_prefix(run: str) -> str:
    """Where a run's chunk writes record their digests (under the run's prefix: deleted with the run)."""
    return f"{protocol.owner_prefix(run)}zarr-chunks/"


def _content_digest(data) -> str:
    return hashlib.blake2b(bytes(data), digest_size=16).hexdigest()


_SUPPORTED = "use float32, float64, complex64 or complex128"


def _layout_of(meta: dict) -> tuple:
    doc = meta["doc"]
    if meta["format"] == 3:
        shape, dtype = doc.get("shape"), doc.get("data_type")
        grid = doc.get("chunk_grid", {})
        chunks = grid.get("configuration", {}).get("chunk_shape") if grid.get("name") == "regular" else None
    else:
        shape, chunks, dtype = doc.get("shape"), doc.get("chunks"), doc.get("dtype")
    if not (isinstance(shape, list) and len(shape) == 2 and isinstance(chunks, list) and len(chunks) == 2):
        raise ValueError(f"numpywren reads 2-D zarr arrays with a regular chunk grid; this one has shape {shape} "
                         f"and chunks {chunks}")
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"zarr data type {dtype!r} is not supported; {_SUPPORTED}") from None
    if (dt.kind, dt.itemsize) not in (("f", 4), ("f", 8), ("c", 8), ("c", 16)):
        raise TypeError(f"zarr data type {dtype!r} is not supported; {_SUPPORTED}")
    return tuple(shape), tuple(chunks), dt.newbyteorder("=")


def _memory_array(meta: dict, chunk: str | None, data):
    zarr = _zarr()
    from zarr.core.buffer import default_buffer_prototype

    name = "zarr.json" if meta["format"] == 3 else ".zarray"
    proto = default_buffer_prototype()
    content = {name: proto.buffer.from_bytes(json.dumps(meta["doc"]).encode())}
    if chunk is not None and data is not None:
        content[chunk] = proto.buffer.from_bytes(bytes(data))
    memory = zarr.storage.MemoryStore(content)
    return memory, zarr.open_array(store=memory, mode="r+", zarr_format=meta["format"])


def _decode(meta: dict, region: tuple, chunk: str, data) -> np.ndarray:
    """Block ``region`` of the array from its chunk's bytes (None: the chunk is absent, the fill value)."""
    _memory, array = _memory_array(meta, chunk, data)
    return np.asarray(array[region])


def _encode(meta: dict, region: tuple, chunk: str, block: np.ndarray):
    """The bytes of the chunk holding ``block`` at ``region``, with zarr's codecs (None if all fill value)."""
    memory, array = _memory_array(meta, chunk, None)
    array[region] = block
    stored = memory._store_dict.get(chunk)
    return None if stored is None else stored.to_bytes()


def _identity(store, key: str) -> str:
    for info in store.list_info(key):
        if info.key == key:
            return _digest(info.etag, info.size)
    return ABSENT


def _digest(etag: str, size: int) -> str:
    return hashlib.blake2b(f"{etag}|{size}".encode(), digest_size=8).hexdigest()


def _generation(meta: dict, ids) -> str:
    text = json.dumps([meta, ids], sort_keys=True)
    return "zarr-" + hashlib.blake2b(text.encode(), digest_size=8).hexdigest()
