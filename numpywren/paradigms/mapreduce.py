"""MapReduce on stateless workers: the shuffle is a set of objects in the store.

Map task ``m`` runs ``mapper(inputs[m])``, optionally combines values per key,
hash-partitions the pairs into ``num_reducers`` buckets and writes each non-empty
bucket to ``jobs/<job>/shuffle/<m>/<r>``. Reduce task ``r`` reads bucket ``r`` of
every mapper that wrote one (the driver knows which from the map results, so no
listing is needed), groups values by key and calls ``reducer(key, values)``.
Nothing but the store connects the two phases, exactly as on AWS Lambda + S3.
"""
from __future__ import annotations

import numbers
import pickle
import zlib
from collections.abc import Callable, Hashable, Iterable
from functools import partial
from typing import Any

from numpywren.api import get_executor
from numpywren import protocol
from numpywren.executors.base import Executor
from numpywren.serialize import dumps, loads
from numpywren.storage import Store, open_store

Mapper = Callable[[Any], Iterable[tuple[Hashable, Any]]]
Reducer = Callable[[Hashable, list], Any]


def stable_hash(key: Hashable) -> int:
    """A hash that is the same in every process (Python's ``hash`` of str/bytes is salted per process).

    Keys that compare equal hash equal, as dict keys must: ``1``, ``1.0``, ``True``
    and ``np.int64(1)`` share a bucket (numeric hashes are not salted), str and bytes
    use crc32, tuples combine their items. Other keys hash their pickle, so they must
    pickle deterministically.
    """
    if isinstance(key, str):
        return zlib.crc32(key.encode("utf-8", "surrogatepass"))
    if isinstance(key, (bytes, bytearray)):
        return zlib.crc32(key)
    if key is None:
        return 0
    if isinstance(key, numbers.Number):
        return hash(key) & 0xFFFFFFFF
    if isinstance(key, tuple):
        h = 0x345678
        for item in key:
            h = ((h ^ stable_hash(item)) * 1000003) & 0xFFFFFFFF
        return h ^ len(key)
    return zlib.crc32(pickle.dumps(key, protocol=4))


def mapreduce(mapper: Mapper, reducer: Reducer, inputs: Iterable, num_reducers: int,
              executor: Executor | None = None, store: Store | str | None = None,
              combiner: Reducer | None = None, output: str = "dict", cleanup: bool = True,
              timeout: float | None = None) -> dict | list[dict]:
    """Run ``reducer(key, [values])`` for every key the ``mapper`` emits over ``inputs``.

    * ``mapper(input)`` yields ``(key, value)`` pairs; one map task per input (an
      input is pickled into the store, so pass store keys, not big data).
    * ``combiner(key, values) -> value``, if given, pre-reduces each map task's
      values per key before the shuffle (for associative reducers such as sums).
    * ``num_reducers`` reduce tasks each own the keys with
      ``stable_hash(key) % num_reducers == r``; values reach the reducer in input
      order (map task, then emission order).

    Returns ``{key: reducer(key, values)}``, or with ``output="partitions"`` the
    list of the ``num_reducers`` per-reducer dicts. A failing mapper or reducer
    raises its own exception with the remote traceback attached. The shuffle
    objects (and the executor's call objects) are deleted afterwards unless
    ``cleanup=False``.

    Parameters
    ----------
    mapper : callable
        ``mapper(input)`` yields ``(key, value)`` pairs.
    reducer : callable
        ``reducer(key, values)`` returns the key's result.
    inputs : iterable
        One map task per input (pickled into the store).
    num_reducers : int
        Number of reduce tasks.
    executor : Executor, optional
        Where the tasks run.
    store : Store or str, optional
        Store for the shuffle; default the executor's.
    combiner : callable, optional
        Pre-reduces each map task's values per key.
    output : {"dict", "partitions"}, default "dict"
        One dict, or one dict per reducer.
    cleanup : bool, default True
        Delete the shuffle objects afterwards.
    timeout : float, optional
        Seconds to wait for each stage at most.

    Returns
    -------
    dict or list of dict
        ``{key: reducer(key, values)}``, or one such dict per reducer.
    """
    if not isinstance(num_reducers, numbers.Integral) or num_reducers < 1:
        raise ValueError(f"num_reducers must be a positive integer, got {num_reducers!r}")
    if output not in ("dict", "partitions"):
        raise ValueError(f"output must be 'dict' or 'partitions', not {output!r}")
    for name, fn in (("mapper", mapper), ("reducer", reducer), ("combiner", combiner)):
        if fn is not None and not callable(fn):
            raise TypeError(f"{name} must be callable, got {type(fn).__name__}")
    ex = get_executor(executor)
    store = open_store(store) if store is not None else ex.store
    inputs = list(inputs)
    num_reducers = int(num_reducers)
    if not inputs:
        return {} if output == "dict" else [{} for _ in range(num_reducers)]

    prefix = protocol.scratch_key(protocol.new_id("mr"), "shuffle")
    call_jobs: list[str] = []
    try:
        map_fn = partial(_map_task, mapper=mapper, combiner=combiner, num_reducers=num_reducers,
                         store=store, prefix=prefix)
        futures = ex.map(map_fn, list(enumerate(inputs)))
        call_jobs.append(futures[0].callset)
        written = ex.get_all_results(futures, timeout=timeout)  # per map: partitions it wrote

        sources: list[list[int]] = [[] for _ in range(num_reducers)]
        for m, parts in enumerate(written):
            for r in parts:
                sources[r].append(m)
        busy = [r for r in range(num_reducers) if sources[r]]
        results: list[dict] = [{} for _ in range(num_reducers)]
        if busy:
            reduce_fn = partial(_reduce_task, reducer=reducer, store=store, prefix=prefix)
            futures = ex.map(reduce_fn, [(r, sources[r]) for r in busy])
            call_jobs.append(futures[0].callset)
            for r, part in zip(busy, ex.get_all_results(futures, timeout=timeout)):
                results[r] = part
    finally:
        if cleanup:
            store.delete_prefix(prefix.rpartition("/")[0] + "/")
            ex.cleanup(call_jobs)
    if output == "partitions":
        return results
    merged: dict = {}
    for part in results:
        merged.update(part)  # partitions hold disjoint keys
    return merged


def _shuffle_key(prefix: str, m: int, r: int) -> str:
    return f"{prefix}/{m:05d}/{r:05d}"


def _map_task(item: tuple[int, Any], mapper: Mapper, combiner: Reducer | None, num_reducers: int,
              store: Store, prefix: str) -> list[int]:
    """Worker side of one map task: returns the partitions it wrote."""
    m, value = item
    buckets: list[list] = [[] for _ in range(num_reducers)]
    pairs = mapper(value)
    if pairs is None:
        raise TypeError(f"the mapper {_name(mapper)} returned None for input {m}; "
                        "it must return an iterable of (key, value) pairs")
    if combiner is None:
        for key, val in pairs:
            buckets[stable_hash(key) % num_reducers].append((key, val))
    else:
        grouped: dict = {}
        for key, val in pairs:
            grouped.setdefault(key, []).append(val)
        for key, vals in grouped.items():
            buckets[stable_hash(key) % num_reducers].append((key, combiner(key, vals)))
    wrote = []
    for r, bucket in enumerate(buckets):
        if bucket:
            store.put(_shuffle_key(prefix, m, r), dumps(bucket))
            wrote.append(r)
    return wrote


def _reduce_task(item: tuple[int, list[int]], reducer: Reducer, store: Store, prefix: str) -> dict:
    """Worker side of one reduce task: group partition ``r`` of every source mapper and reduce it."""
    r, maps = item
    grouped: dict = {}
    for m in maps:
        for key, val in loads(store.get(_shuffle_key(prefix, m, r))):
            grouped.setdefault(key, []).append(val)
    return {key: reducer(key, vals) for key, vals in grouped.items()}


def _name(fn) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)
