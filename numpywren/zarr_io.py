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

**Writing** (:func:`to_zarr`): a plan run through ``jobs.run`` like every
operation (job record, run id, heartbeat, fencing, verification, cleanup).
One task per tile encodes it as a chunk with zarr's codecs and writes it, but
only while the array's job record names its run (a fenced write is refused),
and records the digest of the bytes it wrote under the run's prefix. The run
publishes the array last, with one write of ``zarr.json`` carrying a manifest
(the run and every chunk's content digest); :func:`from_zarr` of a published
array checks each chunk's bytes against it, so numpywren reads one run's
complete array or fails, never a mix. See docs/guide/zarr-exactness.md.

A URL names the array: a local path, ``file:///path/arr.zarr`` or
``s3://bucket/prefix/arr.zarr[?endpoint=...]``. The matrix's store is the
folder (prefix) holding the array, and its key the array's name, so results
of operations on it (and the jobs' leases) go next to the array, as they go
next to a native matrix.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

from numpywren import jobs
from numpywren.dag import DAG, Task
from numpywren.matrix import JOB_RECORD, BigMatrix
from numpywren.scheduler import JobFailedError
from numpywren.storage import KeyNotFoundError, open_store
from numpywren.tile import InputChangedError
from numpywren.zarr_tiles import ABSENT, CONTENT, ZarrTiles, _digest, _layout_of, _marker_prefix, _zarr

log = logging.getLogger(__name__)

#: Most chunks a zarr input may have (their identities travel in every task spec that reads it).
MAX_CHUNKS = 4096
#: where to_zarr records its run and the chunks' digests, in zarr.json's attributes (the manifest)
MANIFEST = "numpywren"


class TargetError(ValueError):
    """to_zarr refuses a target that is not a zarr array of its own (a native matrix, a folder of them)."""


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


class ZarrMatrix(ZarrTiles, BigMatrix):
    """A zarr array as the driver's BigMatrix: its chunk I/O is numpywren.zarr_tiles' (what workers use),
    plus its life as a run's output and its deletion."""

    # -- as the output of a run (numpywren.jobs calls these) -----------------------------------------------
    def prepare_output(self, run_id: str, overwrite: bool) -> None:
        """Make the place empty for this run: what was there is checked again (it may have changed since
        the plan was built), then ``zarr.json`` goes first (no reader takes the old array for complete),
        then the rest."""
        check_target(self.store, self.key, overwrite)
        for name in ("zarr.json", ".zarray"):
            self.store.delete(f"{self.key}/{name}")
        self.store.delete_prefix(f"{self.key}/")

    def verify_output(self, run_id: str) -> None:
        """Publish: every chunk has its digest from this run; then one write of ``zarr.json`` with the manifest."""
        digests: dict = {}
        for marker in self.store.list(_marker_prefix(run_id)):
            block, _, digest = marker[len(_marker_prefix(run_id)):].partition("/")
            if digests.setdefault(block, digest) != digest:
                raise JobFailedError(f"chunk {block} of {self.key!r} was written twice by run {run_id!r} with "
                                     "different bytes; rerun it")
        blocks = [f"{si}_{sj}" for si, sj in self.stored_blocks()]
        missing = [b for b in blocks if b not in digests]
        if missing:
            raise JobFailedError(f"{len(missing)} chunks of {self.key!r} have no record of run {run_id!r} "
                                 f"writing them (e.g. block {missing[0]}); rerun it")
        doc = dict(self.publish_doc)
        doc["attributes"] = {**doc.get("attributes", {}),
                             MANIFEST: {"run": run_id, "chunks": [digests[b] for b in blocks]}}
        self.store.put(f"{self.key}/zarr.json", json.dumps(doc).encode())

    def delete(self) -> None:
        """Remove the zarr array (metadata and chunks)."""
        self.store.delete_prefix(f"{self.key}/")


# -- public entry points ---------------------------------------------------------------------------------------
def from_zarr(array_or_url) -> ZarrMatrix:
    """A BigMatrix reading an existing 2-D zarr array (v3 or v2) in place, its chunks' identities recorded now."""
    store, key = split_url(array_or_url)
    meta, attributes = _read_meta(store, key)
    M = ZarrMatrix(store, key, meta, None)
    gi, gj = M._grid
    if gi * gj > MAX_CHUNKS:
        raise ValueError(f"zarr array {key!r} in {store.url} has {gi * gj} chunks; numpywren reads at most "
                         f"{MAX_CHUNKS} in place (their identities travel with every task): re-chunk it larger")
    manifest = attributes.get(MANIFEST) if isinstance(attributes, dict) else None
    if manifest is not None:
        return ZarrMatrix(store, key, {**meta, "run": manifest.get("run")}, _published_ids(store, key, manifest,
                                                                                           gi * gj))
    found = {info.key: _digest(info.etag, info.size) for info in store.list_info(f"{key}/")}
    ids = [found.get(M.chunk_key(i, j), ABSENT) for i in range(gi) for j in range(gj)]
    return ZarrMatrix(store, key, meta, ids)


def _published_ids(store, key: str, manifest, chunks: int) -> list:
    """The content digests of an array to_zarr published, once its job record says no other run writes it."""
    run, digests = (manifest.get("run"), manifest.get("chunks")) if isinstance(manifest, dict) else (None, None)
    if not (isinstance(run, str) and isinstance(digests, list) and len(digests) == chunks
            and all(isinstance(d, str) for d in digests)):
        raise ValueError(f"zarr array {key!r} in {store.url}: its numpywren manifest is malformed")
    try:
        record = json.loads(store.get(f"{key}/{JOB_RECORD}"))
    except (KeyNotFoundError, ValueError):
        record = None
    owner = record.get("run") if isinstance(record, dict) else None
    if owner is not None and owner != run:
        raise InputChangedError(f"zarr array {key!r} in {store.url} was published by run {run!r}, but run "
                                f"{owner!r} ({record.get('state')}) has written into it since: its chunks may be a "
                                "mix; write it again (to_zarr) once that run has ended")
    return [d if d == ABSENT else CONTENT + d for d in digests]


def to_zarr(M: BigMatrix, url, executor=None, *, overwrite: bool = False, compressors="auto",
            **options) -> "ZarrMatrix | jobs.Plan":
    """Write ``M`` as a zarr v3 array at ``url`` (tile = chunk), in parallel on the workers; return it opened.

    ``compressors`` goes to ``zarr.create_array`` (``None`` for raw chunks). An existing zarr array at
    ``url`` is an error unless ``overwrite=True``; a place holding anything else (a native matrix, a
    folder of them, other files) is always refused, never deleted. Run options (``executor``, ``workers``,
    ``compute=False``, ``retries``, ``progress``, ...) as for every operation (numpywren.jobs.run_options);
    ``resume=True`` is refused (rewrite the array instead).
    """
    zarr = _zarr()
    if not isinstance(M, BigMatrix):
        raise TypeError(f"to_zarr takes a BigMatrix, got {type(M).__name__}")
    if options.get("resume"):
        raise ValueError("to_zarr does not resume: an interrupted array is rewritten (run it again)")
    opts = jobs.run_options(executor, **options)
    store, key = split_url(url)
    if _overlap(_place(store, key), _place(M.store, M.key)):
        raise TargetError(f"to_zarr: {url!r} is (or holds, or is inside) the matrix being written ({M.key!r}); "
                          f"writing there would delete it before it is read: choose another place")
    check_target(store, key, overwrite)
    memory = zarr.storage.MemoryStore()
    zarr.create_array(store=memory, shape=M.shape, chunks=M.tile_shape, dtype=M.dtype, compressors=compressors,
                      fill_value=0.0)
    doc = json.loads(memory._store_dict["zarr.json"].to_bytes())
    Z = ZarrMatrix(store, key, _meta_from_doc(doc, 3), None)
    Z.publish_doc = doc
    dag = DAG()
    for i, j in Z.block_indices():
        rows, cols = Z.block_shape(i, j)
        dag.add(Task(f"{key}/z{i}_{j}", "elementwise", (Z, i, j), ((M, i, j),), {"op": "copy", "swap": False},
                     flops=float(rows * cols)))
    plan = jobs.Plan(dag, [jobs.Output(Z, "to_zarr", (M,), {"url": str(url)})], {}, f"to_zarr {key}",
                     opts.workers, finish=lambda: from_zarr(url))
    return opts.submit(plan, [M])


def check_target(store, key: str, overwrite: bool) -> None:
    """Refuse a place that is not a zarr array of its own: a native matrix or anything inside one (checked
    up the path), a folder holding native matrices or other files; an existing zarr array unless
    ``overwrite``. What an interrupted to_zarr left (its job record, chunks, no zarr.json) may be replaced."""
    inside = _native_ancestor(store, key)
    if inside is not None:
        raise TargetError(f"to_zarr: {key!r} in {store.url} is inside the native matrix at {inside!r}; "
                          "its tiles would be overwritten: choose another place")
    names = [k[len(key) + 1:] for k in store.list(f"{key}/")]
    if not names:
        return
    native = [n for n in names if n == "meta.json" or n.endswith("/meta.json")]
    if native:
        raise TargetError(f"to_zarr: {key!r} in {store.url} holds a native numpywren matrix ({key}/{native[0]}); "
                          "it is never deleted by to_zarr: choose another place")
    published = "zarr.json" in names or ".zarray" in names
    if published and not overwrite:
        raise FileExistsError(f"a zarr array already exists at {key!r} in {store.url}; pass overwrite=True")
    if not published and JOB_RECORD not in names:
        raise TargetError(f"to_zarr: {key!r} in {store.url} holds {len(names)} objects that are not a zarr array "
                          f"(e.g. {names[0]!r}); they are never deleted by to_zarr: choose another place")
    if JOB_RECORD in names:
        try:
            record = json.loads(store.get(f"{key}/{JOB_RECORD}"))
        except (KeyNotFoundError, ValueError):
            record = None
        if not isinstance(record, dict) or record.get("spec", {}).get("op") != "to_zarr":
            raise TargetError(f"to_zarr: {key!r} in {store.url} holds a job record of another operation; "
                              "choose another place")


def _native_ancestor(store, key: str) -> str | None:
    """The native matrix that the place ``key`` in ``store`` is inside (a folder above it up to the depth
    of a tile key holds a ``meta.json``), or None."""
    base, _, query = store.url.partition("?")
    scheme, _, path = base.partition("://")
    if scheme == "s3":
        bucket, _, prefix = path.partition("/")
        root, folders = f"s3://{bucket}" + (f"?{query}" if query else ""), prefix.split("/") if prefix else []
    else:
        root, folders = "file:///", [p for p in path.split("/") if p]
    folders += key.strip("/").split("/")[:-1]
    top = open_store(root)
    for depth in range(len(folders), max(0, len(folders) - 4), -1):
        meta = "/".join(folders[:depth] + ["meta.json"])
        if top.exists(meta):
            return "/".join(folders[:depth])
    return None


def _place(store, key: str) -> tuple[str, str]:
    """(store options, full path of ``key``): one object has one place however the store URL is split."""
    base, _, query = store.url.partition("?")
    return query, f"{base.rstrip('/')}/{key.strip('/')}"


def _overlap(a: tuple[str, str], b: tuple[str, str]) -> bool:
    return a[0] == b[0] and (a[1] == b[1] or a[1].startswith(b[1] + "/") or b[1].startswith(a[1] + "/"))


# -- zarr metadata and codecs -----------------------------------------------------------------------------------
def _read_meta(store, key: str) -> tuple[dict, dict]:
    """(what a worker needs of the array's metadata, its user attributes)."""
    for name, fmt in (("zarr.json", 3), (".zarray", 2)):
        try:
            doc = json.loads(store.get(f"{key}/{name}"))
        except KeyNotFoundError:
            continue
        except ValueError:
            raise ValueError(f"{key}/{name} in {store.url} is not valid JSON") from None
        return _meta_from_doc(doc, fmt), (doc.get("attributes") if isinstance(doc, dict) else None) or {}
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


# -- BigMatrix's zarr methods: installed here (numpywren.matrix cannot import this module, which imports it) ------
def _from_zarr_method(cls, array_or_url) -> ZarrMatrix:
    """An existing 2-D zarr array (v3 or v2) as an input, read in place by the workers (numpywren.zarr_io)."""
    return from_zarr(array_or_url)


def _to_zarr_method(self, url, executor=None, **options) -> ZarrMatrix:
    """Write this matrix as a zarr v3 array at ``url`` (tile = chunk) on the workers; return it opened."""
    return to_zarr(self, url, executor, **options)


_from_zarr_method.__name__, _to_zarr_method.__name__ = "from_zarr", "to_zarr"
BigMatrix.from_zarr = classmethod(_from_zarr_method)
BigMatrix.to_zarr = _to_zarr_method
