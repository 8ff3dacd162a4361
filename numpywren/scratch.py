"""Scratch freed after its last reader: a plan's intermediate tiles leave the store once no task needs them.

A plan's scratch (the SVD/eig reduction's panel factors, LU's records, CAQR's V and T) lives under
``jobs/<run>/scratch/`` (numpywren.jobs). Kept until the run ends, it is every intermediate tile of the
plan at once: 37.4 GB for the singular values of a 16384^2 matrix at tile 2048. The plan knows who reads
each tile (numpywren.memory.read_refs), so the driver deletes a scratch tile as soon as every task reading
it has been accepted, whatever the operation (:class:`ScratchTiles`, driven by numpywren.scheduler).

Exact under retries, backups and resume:

* A tile is deleted once the last of its readers was **accepted** (its result taken by the scheduler). An
  accepted task is never run again, so no attempt whose result counts reads the tile afterwards; an attempt
  still running (a beaten backup, a lost attempt answering late) may fail to read it, and its result is
  ignored anyway.
* A resumed run treats a task whose scratch output has only done readers as done
  (``scheduler._already_done``): the rule that freed the tile, so a resumed run never needs a freed tile.
  That needs every reader's completion to be found again by a resume, from its stored output tile: a tile
  one of whose readers has none (a task returning its block as a value, protocol.VALUE_PARAM, such as a
  reduction's combine; a task writing a zarr chunk; a task writing under another owner's scratch prefix,
  which a new call puts elsewhere: :func:`found_again`) is kept, since a resumed run runs that reader again.
* Never freed here: output tiles, a tile nobody reads, a tile written by more than one task, a tile with a
  reader whose completion a resume cannot see (above). The end of the run removes every scratch matrix as
  before (and a late attempt that writes a freed tile again only delays its removal to then).

Deletes run on one background thread (a store request each, batched), so the scheduler's loop never waits
for them; a failed delete is logged and left to the end of the run.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable

from numpywren.memory import block_bytes, read_refs, side_outputs
from numpywren import protocol
from numpywren.protocol import VALUE_PARAM

log = logging.getLogger(__name__)


def _place(matrix, i: int, j: int) -> tuple[str, str, str]:
    """Where block (i, j) of ``matrix`` (or of a view of it) is stored: (store URL, matrix key, tile key)."""
    return matrix.store.url, matrix.key, matrix.tile_key(i, j)


def _written(task) -> list[tuple[tuple[str, str, str], int]]:
    """(place, nominal bytes) of every tile ``task`` writes: its output tile and its side outputs' tiles."""
    matrix, i, j = task.output
    tiles = [(_place(matrix, i, j), block_bytes(task.output))]
    for m in side_outputs(task):
        tiles += [(_place(m, si, sj), block_bytes((m, si, sj))) for si, sj in m.stored_blocks()]
    return tiles


def leaves_a_tile(task) -> bool:
    """Whether a resume finds ``task`` done from its stored output tile (``scheduler._already_done``): not a
    task returning its block as a value, nor one writing into another format (a zarr chunk)."""
    matrix = task.output[0]
    return (not (task.params or {}).get(VALUE_PARAM) and getattr(matrix, "prepare_output", None) is None
            and task.output_key.startswith(f"{matrix.key}/tiles/"))


def found_again(task, scratch: set) -> bool:
    """Whether a resume, a new call building the plan again, finds ``task``'s output where this run put it: a
    final output (the caller names it again) or this run's scratch (``scratch``: (store URL, key) of the plan's
    matrices, bound to the run) written by a task with no side outputs; not a matrix under another owner's
    scratch prefix (the panel records ``solve`` keeps under its call's own key, new at each call:
    numpywren.decomp_lu._CallScratch)."""
    matrix = task.output[0]
    if not protocol.is_scratch_key(matrix.key):
        return True
    # a scratch output: found again as done only from its readers (scheduler._already_done), which a task
    # writing other tiles too does not get (their readers may not be done): it runs again
    return (matrix.store.url, matrix.key) in scratch and not protocol.has_side_outputs(task.params)


def tile_readers(dag) -> dict[tuple[str, str, str], set[str]]:
    """For every stored tile some task reads: the ids of the tasks reading it."""
    readers: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for task in dag:
        for matrix, i, j in read_refs(task):
            readers[_place(matrix, i, j)].add(task.id)
    return readers


class ScratchTiles:
    """The scratch tiles of one run of ``dag`` and who reads them; :meth:`accepted` deletes what no task needs.

    ``scratch``: the plan's scratch matrices, their keys bound to the run. ``delete=False`` only counts
    (what :func:`planned_peak` uses).
    """

    def __init__(self, dag, scratch: Iterable, delete: bool = True):
        scratch = list(scratch)
        matrices = {(m.store.url, m.key) for m in scratch}
        stores = {m.store.url: m.store for m in scratch}

        def is_scratch(place) -> bool:
            return place[:2] in matrices

        writers: dict = defaultdict(int)
        self._bytes: dict = {}
        self._writes: dict[str, list] = {}
        for task in dag:
            tiles = [(place, n) for place, n in _written(task) if is_scratch(place)]
            for place, n in tiles:
                writers[place] += 1
                self._bytes[place] = n
            self._writes[task.id] = [place for place, _ in tiles]
        self._reads: dict[str, list] = {}
        self._left: dict = {}
        resumable = {t.id for t in dag if leaves_a_tile(t) and found_again(t, matrices)}
        for place, tids in tile_readers(dag).items():
            # two writers: versions of one tile; a reader a resume would run again: kept (module docstring)
            if is_scratch(place) and writers.get(place, 0) <= 1 and tids <= resumable:
                self._left[place] = len(tids)
                for tid in tids:
                    self._reads.setdefault(tid, []).append(place)
        self._stores = stores
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="scratch-free") if delete else None
        self._pending: list = []
        self.live_bytes = self.peak_bytes = 0   # nominal bytes of accepted scratch tiles not yet freed
        self.freed_tiles = self.freed_bytes = 0

    def accepted(self, tids: Iterable[str]) -> list[tuple[str, str, str]]:
        """Tasks ``tids`` were accepted (or found done by a resume): count what they wrote, free the scratch
        tiles whose readers are now all accepted; return those tiles' places."""
        tids = list(tids)
        for tid in tids:
            for place in self._writes.get(tid, ()):
                self.live_bytes += self._bytes[place]
        self.peak_bytes = max(self.peak_bytes, self.live_bytes)
        free = []
        for tid in tids:
            for place in self._reads.pop(tid, ()):
                self._left[place] -= 1
                if not self._left[place]:
                    del self._left[place]
                    free.append(place)
        for place in free:
            self.live_bytes -= self._bytes.get(place, 0)
            self.freed_bytes += self._bytes.get(place, 0)
        self.freed_tiles += len(free)
        if free and self._pool is not None:
            self._pending.append(self._pool.submit(self._delete, free))
        return free

    def _delete(self, places: list) -> None:
        by_store = defaultdict(list)
        for url, _, key in places:
            by_store[url].append(key)
        for url, keys in by_store.items():
            try:
                self._stores[url].delete_many(keys)
            except Exception:  # noqa: BLE001 - the end of the run deletes the scratch anyway
                log.warning("could not free %d scratch tiles in %s; the end of the run removes them", len(keys),
                            url, exc_info=True)

    def close(self) -> None:
        """Wait for the deletes sent so far (the run's end deletes whatever is left)."""
        if self._pool is not None:
            for pending in self._pending:
                pending.result()
            self._pending.clear()
            self._pool.shutdown(wait=True)


def planned_peak(dag, scratch: Iterable, steps: Iterable[list[str]]) -> int:
    """Most scratch bytes held at once when the tasks finish in ``steps`` (lists of task ids finishing together:
    jobs' unit-time list schedule), freeing each tile after its last reader as a run does."""
    tiles = ScratchTiles(dag, scratch, delete=False)
    for step in steps:
        tiles.accepted(step)
    return tiles.peak_bytes
