"""zarr interoperability: use a 2-D zarr array in place as a BigMatrix input, and write results as zarr v3.

**Reading** (:func:`from_zarr`): tile (i, j) of the matrix is chunk (i, j) of
the array. Workers read chunks through numpywren's own stores (LocalStore,
S3Store ``get``) and decode them with zarr's codec pipeline (any codecs zarr
knows, compressed or not; no fsspec or s3fs in the worker); nothing passes
through the driver. zarr chunks carry no generation, so :func:`from_zarr`
records what identifies each chunk when it is opened (one listing: the S3
ETag, or a local file's inode, size and mtime) and a worker refuses a chunk
whose identity changed since (``InputChangedError``, permanent): the same
guarantee native tiles give (numpywren.tile). A missing chunk reads as the
array's fill value, as in zarr. The identities travel in the task spec, a
short digest per chunk, which is why an input is limited to
``MAX_CHUNKS`` chunks (copy a larger one into native tiles with ``copy``... of
a re-chunked array, or re-chunk it).

**Writing** (:func:`to_zarr`): one task per tile encodes it as a chunk with
zarr's codecs (default: zarr's default compressor) and writes it through the
store; the driver writes ``zarr.json`` last, so a reader never sees a
half-written array as complete.

A URL names the array: a local path, ``file:///path/arr.zarr`` or
``s3://bucket/prefix/arr.zarr[?endpoint=...]``. The matrix's store is the
folder (prefix) holding the array, and its key the array's name, so results
of operations on it (and the jobs' leases) go next to the array, as they go
next to a native matrix.
"""
from __future__ import annotations

import hashlib
import json
import logging
import uuid
from pathlib import Path

import numpy as np

from numpywren import scheduler
from numpywren.api import get_executor
from numpywren.dag import DAG, Task
from numpywren.matrix import BigMatrix
from numpywren.storage import KeyNotFoundError, open_store
from numpywren.tile import InputChangedError

log = logging.getLogger(__name__)

#: Most chunks a zarr input may have (their identities travel in every task spec that reads it).
MAX_CHUNKS = 4096
ABSENT = "-"  # the identity of a chunk that does not exist (it reads as the fill value)


def _zarr():
    try:
        import zarr
    except ImportError:
        raise ImportError("zarr interoperability needs zarr: pip install 'numpywren[zarr]'") from None
    return zarr


def split_url(url) -> tuple:
    """(store of the folder holding the array, the array's key in it) for a URL or a zarr Array on disk."""
    zarr = _zarr()
    if isinstance(url, zarr.Array):
        root = getattr(url.store, "root", None)
        if root is None:
            raise TypeError(f"from_zarr takes a URL, or a zarr Array in a local folder; this one is in "
                            f"{type(url.store).__name__}: pass its URL (s3://bucket/prefix/array.zarr)")
        url = str(root / url.path) if url.path else str(root)
    if not isinstance(url, str) or not url.strip("/"):
        raise TypeError(f"a zarr array is named by a URL string, got {url!r}")
    if "://" not in url and not url.startswith("file:"):
        url = str(Path(url).expanduser().resolve())
    base, query = (url.split("?", 1) + [""])[:2]
    parent, _, name = base.rstrip("/").rpartition("/")
    if not name or not parent or parent.endswith(":/") or parent.endswith(":"):
        raise ValueError(f"zarr URL {url!r} must name an array inside a folder or bucket prefix "
                         "(e.g. s3://bucket/arrays/x.zarr or /data/x.zarr)")
    return open_store(parent + (f"?{query}" if query else "")), name


class ZarrMatrix(BigMatrix):
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
            now = _identity(self.store, key) if data is not None else ABSENT
            if now != expected:
                raise InputChangedError(f"chunk {key!r} of zarr array {self.key!r} in {self.store.url} changed since "
                                        "the job opened it (its identity differs); open the array again "
                                        "(BigMatrix.from_zarr) and rerun")
        block = _decode(self.zarr_meta, self.block_slices_stored(si, sj), key.rpartition(self.key + "/")[2], data)
        block = block.astype(self.dtype, copy=False)
        return block.T if flip else block

    def put_block(self, i: int, j: int, block: np.ndarray, run: str | None = None) -> None:
        """Encode block (i, j) as its chunk with zarr's codecs and write it (an all-fill chunk is deleted)."""
        (si, sj), flip = self.stored_index(i, j)
        block = np.asarray(block.T if flip else block)
        key = self.chunk_key(si, sj)
        data = _encode(self.zarr_meta, self.block_slices_stored(si, sj), key.rpartition(self.key + "/")[2], block)
        if data is None:
            self.store.delete(key)
        else:
            self.store.put(key, data)

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

    def delete(self) -> None:
        """Remove the zarr array (metadata and chunks)."""
        self.store.delete_prefix(f"{self.key}/")

    def to_ref(self) -> dict:
        return {**super().to_ref(), "zarr": {"meta": self.zarr_meta, "ids": self.zarr_ids}}

    @classmethod
    def from_ref(cls, ref: dict) -> "ZarrMatrix":
        z = ref.get("zarr")
        if not isinstance(z, dict) or not isinstance(z.get("meta"), dict):
            raise ValueError(f"malformed zarr matrix reference {ref!r}")
        ids = z.get("ids")
        if ids is not None and not (isinstance(ids, list) and all(isinstance(s, str) for s in ids)):
            raise ValueError("malformed zarr matrix reference: ids must be a list of strings")
        M = cls(ref["store"], ref["key"], z["meta"], ids, transposed=bool(ref["transposed"]))
        if ref.get("generation") != M.generation:
            raise ValueError(f"zarr matrix reference {ref['key']!r}: generation does not match its metadata")
        return M

    def __repr__(self) -> str:
        return "Zarr" + super().__repr__()


# -- public entry points ---------------------------------------------------------------------------------------
def from_zarr(array_or_url) -> ZarrMatrix:
    """A BigMatrix reading an existing 2-D zarr array (v3 or v2) in place, its chunks' identities recorded now."""
    store, key = split_url(array_or_url)
    meta = _read_meta(store, key)
    M = ZarrMatrix(store, key, meta, None)
    gi, gj = M._grid
    if gi * gj > MAX_CHUNKS:
        raise ValueError(f"zarr array {key!r} in {store.url} has {gi * gj} chunks; numpywren reads at most "
                         f"{MAX_CHUNKS} in place (their identities travel with every task): re-chunk it larger")
    found = {info.key: _digest(info.etag, info.size) for info in store.list_info(f"{key}/")}
    ids = [found.get(M.chunk_key(i, j), ABSENT) for i in range(gi) for j in range(gj)]
    return ZarrMatrix(store, key, meta, ids)


def to_zarr(M: BigMatrix, url, executor=None, *, overwrite: bool = False, compressors="auto",
            retries: int = 2, progress: bool | None = None) -> ZarrMatrix:
    """Write ``M`` as a zarr v3 array at ``url`` (tile = chunk), in parallel on the workers; return it opened.

    ``compressors`` goes to ``zarr.create_array`` (``None`` for raw chunks). An existing array at ``url``
    is an error unless ``overwrite=True``.
    """
    zarr = _zarr()
    if not isinstance(M, BigMatrix):
        raise TypeError(f"to_zarr takes a BigMatrix, got {type(M).__name__}")
    store, key = split_url(url)
    if _overlap(_place(store, key), _place(M.store, M.key)):
        raise ValueError(f"to_zarr: {url!r} is (or holds, or is inside) the matrix being written ({M.key!r}); "
                         f"writing there would delete it before it is read: choose another place")
    meta_key = f"{key}/zarr.json"
    if store.exists(meta_key) or store.exists(f"{key}/.zarray"):
        if not overwrite:
            raise FileExistsError(f"a zarr array already exists at {key!r} in {store.url}; pass overwrite=True")
    if overwrite:
        store.delete_prefix(f"{key}/")
    memory = zarr.storage.MemoryStore()
    zarr.create_array(store=memory, shape=M.shape, chunks=M.tile_shape, dtype=M.dtype, compressors=compressors,
                      fill_value=0.0)
    doc = json.loads(memory._store_dict["zarr.json"].to_bytes())
    Z = ZarrMatrix(store, key, _meta_from_doc(doc, 3), None)
    executor = get_executor(executor)
    dag = DAG()
    for i, j in Z.block_indices():
        rows, cols = Z.block_shape(i, j)
        dag.add(Task(f"{key}/z{i}_{j}", "elementwise", (Z, i, j), ((M, i, j),), {"op": "copy", "swap": False},
                     flops=float(rows * cols)))
    run = f"zarr-{uuid.uuid4().hex[:12]}"
    report = scheduler.run(dag, executor, run=run, retries=retries, progress=progress, desc=f"to_zarr {key}")
    store.put(meta_key, json.dumps(doc).encode())  # last: the array exists once every chunk does
    result = from_zarr(url)
    result.report = report
    return result


def _place(store, key: str) -> tuple[str, str]:
    """(store options, full path of ``key``): one object has one place however the store URL is split."""
    base, _, query = store.url.partition("?")
    return query, f"{base.rstrip('/')}/{key.strip('/')}"


def _overlap(a: tuple[str, str], b: tuple[str, str]) -> bool:
    return a[0] == b[0] and (a[1] == b[1] or a[1].startswith(b[1] + "/") or b[1].startswith(a[1] + "/"))


# -- zarr metadata and codecs -----------------------------------------------------------------------------------
def _read_meta(store, key: str) -> dict:
    for name, fmt in (("zarr.json", 3), (".zarray", 2)):
        try:
            doc = json.loads(store.get(f"{key}/{name}"))
        except KeyNotFoundError:
            continue
        except ValueError:
            raise ValueError(f"{key}/{name} in {store.url} is not valid JSON") from None
        return _meta_from_doc(doc, fmt)
    raise FileNotFoundError(f"no zarr array at {key!r} in {store.url} (neither zarr.json nor .zarray)")


def _meta_from_doc(doc: dict, fmt: int) -> dict:
    """What a worker needs: the metadata document, and where its chunks are."""
    if not isinstance(doc, dict):
        raise ValueError("the zarr metadata is not a JSON object")
    doc = {k: v for k, v in doc.items() if k not in ("attributes", ".zattrs")}  # user metadata: not needed
    if fmt == 3:
        if doc.get("node_type") != "array":
            raise ValueError("the zarr node is not an array (it is a group)")
        enc = doc.get("chunk_key_encoding", {})
        sep = enc.get("configuration", {}).get("separator", "/" if enc.get("name") == "default" else ".")
        meta = {"format": 3, "doc": doc, "encoding": enc.get("name", "default"), "separator": sep}
    else:
        meta = {"format": 2, "doc": doc, "encoding": "v2", "separator": doc.get("dimension_separator") or "."}
    _layout_of(meta)
    return meta


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
        raise TypeError(f"zarr data type {dtype!r} is not supported; use float32 or float64") from None
    if dt.kind != "f" or dt.itemsize not in (4, 8):
        raise TypeError(f"zarr data type {dtype!r} is not supported; use float32 or float64")
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
