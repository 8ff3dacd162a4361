"""Count the store requests of a job's final check (numpywren.verification), for the simulator's model.

A matmul whose output has more tiles than ``VERIFY_ON_WORKERS_ABOVE`` runs on in-process workers
(``InlineExecutor``: the worker code of every backend, in threads, so one counting store sees the
driver's and the workers' requests); every request made while ``numpywren.jobs._verify`` runs is counted
by kind:

* ``tile_requests``: requests on output tiles (each tile's header read, by the workers or the driver);
* ``worker_batch_requests`` / ``driver_batch_requests``: requests on the verification calls' results from a
  worker's thread (it writes its batch's result) / from the driver (it reads and deletes it);
* ``fixed_requests``: the rest (the job record, meta.json, the listing of stored tiles, the callset's
  cleanup), whatever the number of tiles;
* ``driver_polls``: the driver's reads of a result not written yet (waiting: how many depends on timing,
  not on the job; the model times waiting, not these requests);
* ``heartbeats``: liveness beats (``jobs/<owner>/heartbeat``, every 60 s) that happen to fall while the
  check runs: timing, not verification.

Only the job's own store is counted: requests other stores make meanwhile in this process (a heartbeat
thread of another session or of the temporaries registry, an earlier test's executor still cleaning up)
are not the check's. Counting them made a full-suite run of tests/test_predict.py see 2 "fixed" requests
too many once (2026-12-06): a full suite leaves such threads behind; a lone run has none.

``numpywren.sim_params.VERIFY_COUNTED`` holds these counts and derives the model's per-tile, per-batch and
fixed requests from them; tests/test_predict.py counts a small run again and compares.

    python -m benchmarks.verify_requests [--grid 4 24] [--workers 16]
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import tempfile
import threading

import numpy as np

from benchmarks import common
from numpywren.protocol import HEARTBEAT

#: Store methods that are one request each on S3 (delete_prefix two: a LIST, then a batch DELETE)
METHODS = ("get", "get_buffer", "get_head", "put", "put_if_absent", "exists", "delete", "list", "list_after",
           "list_info", "delete_many", "delete_prefix")
WRITES = frozenset({"put", "put_if_absent", "delete", "delete_many", "delete_prefix"})


def _kind(method: str, key, worker: bool) -> str:
    key = str(key)
    if key.endswith(f"/{HEARTBEAT}"):
        return "heartbeats"
    if "/tiles/" in key:
        return "tile_requests"
    if "/results/" in key and not method.startswith("delete_"):
        return "worker_batch_requests" if worker else "driver_batch_requests"
    return "fixed_requests"


@contextlib.contextmanager
def _counting(counts: collections.Counter, active: list, url: str):
    """The requests of the LocalStore at ``url`` counted by kind while ``active[0]`` is true (other stores'
    are not the check's: module docstring). A worker's request is one
    made on an in-process worker's thread (or a pool thread it started); a read that finds nothing is a
    driver waiting for a result (``driver_polls``: how often depends on timing, not on the job)."""
    from numpywren.storage import KeyNotFoundError, LocalStore

    originals = {m: LocalStore.__dict__.get(m) for m in METHODS}
    driver = threading.get_ident()

    def wrap(method):
        real = getattr(LocalStore, method)

        def counted(self, *args, **kwargs):
            if not active[0] or self.url != url:
                return real(self, *args, **kwargs)
            key = args[0] if args else kwargs.get("key", "")
            name = threading.current_thread().name
            worker = name.startswith("numpywren-inline") or (threading.get_ident() != driver
                                                               and name.startswith("ThreadPoolExecutor"))
            try:
                result = real(self, *args, **kwargs)
            except KeyNotFoundError:
                counts["driver_polls" if not worker and "/results/" in str(key) else
                       _kind(method, key, worker)] += 1
                raise
            counts[_kind(method, key, worker)] += 2 if method == "delete_prefix" else 1
            return result
        return counted

    for method in METHODS:
        setattr(LocalStore, method, wrap(method))
    try:
        yield
    finally:
        for method, real in originals.items():
            if real is None:
                delattr(LocalStore, method)
            else:
                setattr(LocalStore, method, real)


def count(grid: int = 24, workers: int = 16, tile: int = 8, root: str | None = None) -> dict:
    """One matmul job with a ``grid`` x ``grid`` tile output on ``workers`` in-process workers: its
    verification's requests by kind (module docstring), with its tiles and batches."""
    import numpywren
    from numpywren import jobs
    from numpywren.executors.inline import InlineExecutor
    from numpywren.matrix import IO_THREADS
    from numpywren.storage import LocalStore
    from numpywren.verification import VERIFY_ON_WORKERS_ABOVE, batch_size

    counts: collections.Counter = collections.Counter()
    active = [False]
    real_verify = jobs._verify

    def verify(*args, **kwargs):
        active[0] = True
        try:
            return real_verify(*args, **kwargs)
        finally:
            active[0] = False

    with tempfile.TemporaryDirectory() as tmp:
        store = LocalStore(root or tmp)
        n = grid * tile
        a = np.arange(n * n, dtype=float).reshape(n, n) / (n * n)
        A = numpywren.BigMatrix.from_numpy(a, tile, store, "verify-count/A")
        with InlineExecutor(workers=workers, store=store) as ex, _counting(counts, active, store.url):
            jobs._verify = verify
            try:
                C = numpywren.matmul(A, A, out="verify-count/C", executor=ex, progress=False)
            finally:
                jobs._verify = real_verify
        if not np.allclose(C.to_numpy(), a @ a, rtol=1e-12):
            raise AssertionError("the counted job computed a wrong product")
    tiles = grid * grid
    size = batch_size(tiles, workers, IO_THREADS)
    batches = -(-tiles // size) if tiles > VERIFY_ON_WORKERS_ABOVE and workers > 1 else 0  # 0: the driver reads
    return {"tiles": tiles, "batches": batches, "workers": workers,
            **{k: counts[k] for k in ("tile_requests", "worker_batch_requests", "driver_batch_requests",
                                      "fixed_requests", "driver_polls", "heartbeats")}}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--grid", type=int, nargs="+", default=[4, 24], help="output tiles per side")
    parser.add_argument("--workers", type=int, default=16, help="in-process workers")
    common.add_common_arguments(parser)


def main(argv=None) -> int:
    args = common.parse_args("verify_requests", __doc__, add_arguments, argv)
    info = common.machine_info()
    rows = [count(g, args.workers) for g in ((4, 8) if args.tiny else args.grid)]
    common.print_table(rows, [(k, k, "") for k in rows[0]], "verification's store requests")
    common.report_paths([common.write_csv("verify_requests", rows, info, args.out)])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
