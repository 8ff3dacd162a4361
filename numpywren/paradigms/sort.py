"""A BSP sort (TeraSort-style) on stateless workers, with the shuffle going through the store.

Records are fixed-width, 100 bytes like the sort benchmark's: an 8-byte unsigned
key and a 92-byte payload (:data:`RECORD`). Input and output are objects holding
raw records back to back. Three supersteps, each one ``executor.map``:

1. **sample**: tasks read some input chunks and return random keys; the driver
   picks ``num_partitions - 1`` splitters at the sample's quantiles;
2. **partition**: task ``m`` reads chunk ``m``, finds each record's range with
   ``np.searchsorted(splitters, key, side="right")`` and writes range ``p`` to
   ``jobs/<job>/shuffle/<m>/<p>``;
3. **merge**: task ``p`` reads range ``p`` from every chunk, sorts it by key
   (stable, so ties keep input order) and writes output partition ``p``.

Output partition ``p`` holds keys in ``[splitter[p-1], splitter[p])``, so the
concatenation of the partitions in order is the sorted input.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from numpywren.api import get_executor
from numpywren import protocol
from numpywren.executors.base import Executor
from numpywren.storage import Store, open_store

RECORD = np.dtype([("key", "<u8"), ("payload", "V92")])
RECORD_BYTES = RECORD.itemsize  # 100


@dataclass
class SortResult:
    """What :func:`sort_records` produced, with per-superstep wall times."""

    output_keys: list[str]
    records: int
    bytes: int
    splitters: np.ndarray
    partition_records: list[int]
    checksum: int  # order-independent checksum of the output records (see record_checksum)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def mb_per_s(self) -> float:
        return self.bytes / 1e6 / max(self.seconds.get("total", 0.0), 1e-9)


# -- records ---------------------------------------------------------------------------------------
def decode_records(data: bytes, name: str = "object") -> np.ndarray:
    """A stored object's bytes as a read-only RECORD array (no copy)."""
    if len(data) % RECORD_BYTES:
        raise ValueError(f"{name} holds {len(data)} bytes, not a whole number of {RECORD_BYTES}-byte records")
    return np.frombuffer(data, dtype=RECORD)


def encode_records(records: np.ndarray) -> memoryview:
    return memoryview(np.ascontiguousarray(records).view(np.uint8))


def random_records(count: int, seed=0) -> np.ndarray:
    """``count`` records with uniform random keys and random payloads."""
    rng = np.random.default_rng(seed)
    out = np.empty(count, dtype=RECORD)
    out["key"] = rng.integers(0, np.iinfo(np.uint64).max, size=count, dtype=np.uint64, endpoint=True)
    raw = out.view(np.uint8).reshape(count, RECORD_BYTES)
    raw[:, 8:] = np.frombuffer(rng.bytes(count * (RECORD_BYTES - 8)), dtype=np.uint8).reshape(count, RECORD_BYTES - 8)
    return out


_MIX = np.uint64(0x100000001B3)  # FNV-1a 64-bit prime


def record_checksum(records: np.ndarray) -> int:
    """An order-independent checksum of a multiset of records: the sum mod 2**64 of a per-record hash.

    Equal for any permutation of the same records, and (with high probability)
    different if any byte of any record changed, was lost or duplicated.
    """
    words = np.ascontiguousarray(records).view(np.uint32).reshape(len(records), RECORD_BYTES // 4)
    h = np.full(len(records), 0xCBF29CE484222325, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(words.shape[1]):
            h = (h ^ words[:, j].astype(np.uint64)) * _MIX
            h ^= h >> np.uint64(29)
        return int(h.sum(dtype=np.uint64))


def combine_checksums(values) -> int:
    return sum(int(v) for v in values) % 2**64


# -- input generation ----------------------------------------------------------------------------
def write_random_records(store: Store | str, prefix: str, total_mb: float, num_chunks: int,
                         executor: Executor | None = None, seed: int = 0) -> tuple[list[str], int]:
    """Have workers write about ``total_mb`` MB of random records as ``num_chunks`` objects.

    Returns the keys and the checksum of all records written (to verify a sort without reading them back).
    """
    if num_chunks < 1 or total_mb <= 0:
        raise ValueError(f"need num_chunks >= 1 and total_mb > 0, got {num_chunks} and {total_mb}")
    ex = get_executor(executor)
    store = open_store(store)
    per_chunk = max(1, int(total_mb * 1e6 / RECORD_BYTES / num_chunks))
    keys = [f"{prefix}/{i:05d}" for i in range(num_chunks)]
    futures = ex.map(partial(_write_chunk, store=store, count=per_chunk, seed=seed), list(enumerate(keys)))
    try:
        checksums = ex.get_all_results(futures)
    finally:
        ex.cleanup([futures[0].callset])
    return keys, combine_checksums(checksums)


def _write_chunk(item: tuple[int, str], store: Store, count: int, seed: int) -> int:
    i, key = item
    records = random_records(count, seed=[seed, i])
    store.put(key, encode_records(records))
    return record_checksum(records)


# -- the sort --------------------------------------------------------------------------------------
def sort_records(input_keys: list[str], output_prefix: str, num_partitions: int | None = None,
                 executor: Executor | None = None, store: Store | str | None = None,
                 samples_per_chunk: int = 1000, max_sample_chunks: int = 16, seed: int = 0,
                 cleanup: bool = True) -> SortResult:
    """Sort the records of the objects ``input_keys`` into ``num_partitions`` objects under ``output_prefix``.

    ``num_partitions`` defaults to the number of input chunks. Splitters come from
    ``samples_per_chunk`` random keys of each of at most ``max_sample_chunks``
    evenly spaced chunks (TeraSort samples a few splits too: it saves a full pass).
    Output objects are ``<output_prefix>/<p:05d>``; every one is written, even if empty.
    """
    input_keys = list(input_keys)
    if not input_keys:
        raise ValueError("sort_records needs at least one input object")
    num_partitions = len(input_keys) if num_partitions is None else int(num_partitions)
    if num_partitions < 1:
        raise ValueError(f"num_partitions must be at least 1, got {num_partitions}")
    if samples_per_chunk < 1 or max_sample_chunks < 1:
        raise ValueError("samples_per_chunk and max_sample_chunks must be at least 1")
    ex = get_executor(executor)
    store = open_store(store) if store is not None else ex.store
    shuffle = protocol.scratch_key(protocol.new_id("sort"), "shuffle")
    output_prefix = output_prefix.rstrip("/")
    seconds: dict[str, float] = {}
    jobs: list[str] = []

    def superstep(name, fn, items):
        t0 = time.perf_counter()
        futures = ex.map(fn, items)
        jobs.append(futures[0].callset)
        values = ex.get_all_results(futures)
        seconds[name] = time.perf_counter() - t0
        return values

    start = time.perf_counter()
    try:
        picks = np.unique(np.linspace(0, len(input_keys) - 1, min(max_sample_chunks, len(input_keys))).round()
                          .astype(int))
        samples = superstep("sample", partial(_sample_task, store=store, count=samples_per_chunk, seed=seed),
                            [(int(i), input_keys[i]) for i in picks])
        splitters = choose_splitters(np.concatenate(samples), num_partitions)
        counts = superstep("partition", partial(_partition_task, store=store, splitters=splitters, prefix=shuffle),
                           list(enumerate(input_keys)))
        counts = np.array(counts, dtype=np.int64).reshape(len(input_keys), num_partitions)
        items = [(p, [int(m) for m in np.flatnonzero(counts[:, p])], f"{output_prefix}/{p:05d}")
                 for p in range(num_partitions)]
        merged = superstep("merge", partial(_merge_task, store=store, prefix=shuffle), items)
    finally:
        if cleanup:
            t0 = time.perf_counter()
            store.delete_prefix(shuffle.rpartition("/")[0] + "/")
            ex.cleanup(jobs)
            seconds["cleanup"] = time.perf_counter() - t0
    seconds["total"] = time.perf_counter() - start
    for p in range(1, num_partitions):  # a cheap guard on the partitioning itself
        lo, hi = merged[p - 1], merged[p]
        if lo["count"] and hi["count"] and lo["max"] > hi["min"]:
            raise AssertionError(f"sort partitions {p - 1} and {p} overlap: {lo['max']} > {hi['min']}")
    records = sum(r["count"] for r in merged)
    return SortResult(output_keys=[it[2] for it in items], records=records, bytes=records * RECORD_BYTES,
                      splitters=splitters, partition_records=[r["count"] for r in merged],
                      checksum=combine_checksums(r["checksum"] for r in merged), seconds=seconds)


def choose_splitters(sample: np.ndarray, num_partitions: int) -> np.ndarray:
    """``num_partitions - 1`` keys at the sample's quantiles (ascending; repeats allowed for skewed keys)."""
    sample = np.sort(np.asarray(sample, dtype=np.uint64))
    if sample.size == 0:  # nothing to learn from: everything lands in the last partition
        return np.zeros(num_partitions - 1, dtype=np.uint64)
    positions = (np.arange(1, num_partitions) * sample.size) // num_partitions
    return sample[positions]


def _sample_task(item: tuple[int, str], store: Store, count: int, seed: int) -> np.ndarray:
    i, key = item
    keys = decode_records(store.get(key), key)["key"]
    if keys.size <= count:
        return keys.copy()
    rng = np.random.default_rng([seed, i])
    return keys[rng.choice(keys.size, size=count, replace=False)]


def _partition_task(item: tuple[int, str], store: Store, splitters: np.ndarray, prefix: str) -> list[int]:
    """Split chunk ``m`` into key ranges; write each non-empty range; return the record count per range."""
    m, key = item
    records = decode_records(store.get(key), key)
    parts = np.searchsorted(splitters, records["key"], side="right")
    order = np.argsort(parts, kind="stable")  # group by range, keeping input order inside a range
    counts = np.bincount(parts, minlength=len(splitters) + 1)
    grouped = records[order]
    bounds = np.concatenate([[0], np.cumsum(counts)])
    for p in np.flatnonzero(counts):
        store.put(f"{prefix}/{m:05d}/{p:05d}", encode_records(grouped[bounds[p]:bounds[p + 1]]))
    return counts.tolist()


def _merge_task(item: tuple[int, list[int], str], store: Store, prefix: str) -> dict:
    """Read key range ``p`` from every chunk that has some, sort by key, write output partition ``p``."""
    p, maps, out_key = item
    pieces = [decode_records(store.get(f"{prefix}/{m:05d}/{p:05d}"), f"shuffle piece {m}/{p}") for m in maps]
    records = np.concatenate(pieces) if pieces else np.empty(0, dtype=RECORD)
    records = records[np.argsort(records["key"], kind="stable")]
    store.put(out_key, encode_records(records))
    keys = records["key"]
    return {"count": int(records.size), "checksum": record_checksum(records),
            "min": int(keys[0]) if keys.size else None, "max": int(keys[-1]) if keys.size else None}
