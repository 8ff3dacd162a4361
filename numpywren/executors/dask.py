"""dask.distributed as the backend: each call's event is one dask task that runs ``worker.handle``.

The cluster only delivers events: the worker function, the store protocol and
the results are the same as on local processes or Lambda, so the store must be
one every dask worker can reach (S3, or a filesystem they all mount). Anything
dask runs on (Kubernetes via dask-kubernetes, HPC schedulers via dask-jobqueue,
hosted dask) then runs numpywren with no code per platform.

The rules this backend keeps:

* one task per dask worker thread, and ``blas_threads`` BLAS threads in each
  worker process (set on its first call: threadpoolctl for the libraries
  already loaded, the usual environment variables for those loaded later);
* tasks are submitted with ``pure=False`` and no dask ``retries``: retrying is
  numpywren's job (its scheduler's retries and leases), so that work is never
  repeated behind its back. A worker that dies mid-call is the exception dask
  decides on: its scheduler re-runs the task up to
  ``distributed.scheduler.allowed-failures`` times (default 3; a repeated
  event, which the protocol tolerates), then reports ``KilledWorker``, which
  the call's future gets as WorkerDiedError. Set it to 0 on the scheduler to
  leave every retry to numpywren;
* ``cancel`` drops calls that have not started: every worker is told first
  (a worker refuses to start a cancelled call), then dask cancels the tasks
  no worker had started. A running call is never cut off, so no write of it
  lands after its future ended;
* ``task_timeout`` is **not enforced by killing** (dask cannot stop a running
  thread): it sizes the leases, so a tile task silent for longer is declared
  lost and re-issued by the scheduler while the stuck call runs on; a
  ``map`` call just keeps running (use ``result(timeout=...)``). The call
  sees it in ``current_context().remaining_seconds()``.
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from concurrent.futures import CancelledError

try:
    import distributed
except ImportError:  # pragma: no cover - depends on the installed extras
    raise ImportError('the dask executor needs dask.distributed: pip install "numpywren[dask]"') from None

from numpywren import protocol
from numpywren.executors.base import Executor, check_options
from numpywren.executors.blas import limit_blas_threads
from numpywren.futures import WorkerDiedError
from numpywren.storage import Store

logger = logging.getLogger(__name__)

WAKEUP_SECONDS = 0.02  # see DaskExecutor._wake
SHUTDOWN_GRACE_SECONDS = 5.0  # how long shutdown lets running calls finish before closing the client


class DaskExecutor(Executor):
    """Runs calls as tasks of a dask.distributed cluster.

    Give the scheduler's ``address`` ("tcp://host:8786"; the executor opens and
    later closes its own client) or an existing ``client`` (left open). ``workers``
    defaults to the cluster's worker threads, asked each time it is read (a
    cluster may scale). ``store`` must be reachable from every dask worker.
    """

    reports_completions = True  # every dask future's done callback reports its call

    def __init__(self, address: str | None = None, *, client: "distributed.Client | None" = None,
                 store: "Store | str | None" = None, workers: int | None = None, blas_threads: int = 1,
                 task_timeout: float | None = None):
        if (address is None) == (client is None):
            raise ValueError("DaskExecutor needs exactly one of address='tcp://...' or client=<distributed.Client>")
        check_options(workers, blas_threads, task_timeout)
        super().__init__(store)
        self._own_client = client is None
        self.client = client if client is not None else distributed.Client(address, set_as_default=False)
        self.blas_threads = blas_threads
        self.task_timeout = task_timeout
        self._workers = workers
        self.wakeup = threading.Event()
        self._lock = threading.Lock()
        self._pending: dict[str, tuple[dict, distributed.Future]] = {}  # dask key -> (event, task)
        self._by_callset: dict[str, set[str]] = {}  # callset -> dask keys of its pending tasks
        self._closed = False
        self._last_wakeup = 0.0

    @property
    def workers(self) -> int:
        if self._workers is not None:
            return self._workers
        return max(1, sum(self.client.nthreads().values()))

    @property
    def worker_memory_mb(self) -> float | None:
        """A call's share of its dask worker's memory limit, the smallest over the workers (None: no limit)."""
        workers = self.client.scheduler_info().get("workers", {}).values()
        shares = [w["memory_limit"] / max(1, w.get("nthreads", 1)) / 2 ** 20 for w in workers
                  if w.get("memory_limit")]
        return min(shares) if shares else None

    def _invoke(self, event: dict) -> None:
        if self._closed:
            raise RuntimeError("this executor has been shut down")
        if self.task_timeout is not None:
            event = protocol.with_timeout(event, self.task_timeout)  # counted from the call's start
        task = self.client.submit(run_event, event, self.blas_threads, pure=False, retries=0)
        with self._lock:
            self._pending[task.key] = (event, task)
            self._by_callset.setdefault(event["callset"], set()).add(task.key)
        task.add_done_callback(self._task_ended)

    def _task_ended(self, task: "distributed.Future") -> None:
        """Dask's callback thread: make sure the call's outcome is in the store, then report it."""
        with self._lock:
            event, _ = self._pending.pop(task.key, (None, None))
            if event is None:
                return
            keys = self._by_callset[event["callset"]]
            keys.discard(task.key)
            if not keys:
                del self._by_callset[event["callset"]]
        try:
            if task.status == "finished":  # the worker wrote the outcome (a refused call: CancelledError)
                return self._call_ended(event)
            where = f"call {event['callset']}/{event['call']}"
            if task.status == "error":
                try:
                    exc = task.exception()
                except Exception as lost:  # noqa: BLE001 - the client closed meanwhile
                    exc = lost
                what = ("its dask worker died" if isinstance(exc, distributed.KilledWorker)
                        else "its dask task failed (the worker could not write the outcome)")
                return self.record_failure(event, WorkerDiedError(f"{where}: {what}: {exc!r}"), worker="dask")
            why = ("the executor shut down while it was pending or running (a running call may still "
                   "finish on its worker)" if self._closed else "it was cancelled before it started")
            self.record_failure(event, CancelledError(f"{where}: {why}"), worker="dask")
        finally:
            self._wake()

    def _wake(self) -> None:
        """Wake ``futures.wait`` at most every WAKEUP_SECONDS: each wakeup re-reads the pending results
        (a listing), and one per completion would starve dask's client thread of the GIL in a big map.
        A completion that is not woken for is seen by wait's own poll (at most 0.2 s later)."""
        now = time.monotonic()
        if now - self._last_wakeup >= WAKEUP_SECONDS:
            self._last_wakeup = now
            self.wakeup.set()

    def cancel(self, callsets) -> int:
        """Drop the calls of ``callsets`` that no worker has started; return how many."""
        callsets = list(callsets)
        with self._lock:
            pending = {self._pending[k][0]["result"]: self._pending[k][1]
                       for c in callsets for k in self._by_callset.get(c, ())}
        return self._drop(callsets, pending)

    def _cancel_call(self, event: dict) -> bool:
        with self._lock:
            found = [task for e, task in (self._pending[k] for k in self._by_callset.get(event["callset"], ()))
                     if e["result"] == event["result"]]
        return bool(found) and self._drop([event["result"]], {event["result"]: found[0]}) == 1

    def _drop(self, names: list[str], pending: dict) -> int:
        """Tell every worker never to start ``names`` (callsets or result keys), then cancel at dask the
        tasks none had started. If a worker does not answer, only its refusal protects the calls."""
        if not pending:
            return 0
        answers = self.client.run(mark_cancelled, names, on_error="return")
        started: set[str] = set()
        for answer in answers.values():
            if isinstance(answer, BaseException):
                logger.warning("a dask worker did not take the cancellation (%r): its calls are refused "
                               "when they start, not cancelled at dask", answer)
                return 0
            started.update(answer)
        drop = [task for key, task in pending.items() if key not in started]
        self.client.cancel(drop)
        return len(drop)

    def shutdown(self) -> None:
        """Drop calls not yet started (their futures fail as cancelled), give running ones
        ``SHUTDOWN_GRACE_SECONDS`` to finish, then close our client (a user's client stays open)."""
        if self._closed:
            return
        with self._lock:
            callsets = list(self._by_callset)
        try:
            self.cancel(callsets)
            with self._lock:
                running = [task for _, task in self._pending.values()]
            deadline = time.monotonic() + SHUTDOWN_GRACE_SECONDS
            while any(not task.done() for task in running) and time.monotonic() < deadline:
                time.sleep(0.05)
        except Exception as exc:  # noqa: BLE001 - the cluster may be gone already, or the grace is over
            logger.warning("shutting down with calls still pending: %r", exc)
        self._closed = True
        super().shutdown()
        if self._own_client:
            self.client.close()


# -- the worker side (runs in the dask worker processes) ---------------------------------------------------
_state_lock = threading.Lock()
_RECENT = 1 << 16  # how many cancelled names and started calls a worker remembers
_cancelled: "collections.OrderedDict[str, None]" = collections.OrderedDict()
_started: "collections.OrderedDict[str, str]" = collections.OrderedDict()  # result key -> callset


def _remember(memory: collections.OrderedDict, key: str, value=None) -> None:
    memory[key] = value
    if len(memory) > _RECENT:
        memory.popitem(last=False)


def mark_cancelled(names: list[str]) -> list[str]:
    """Run on every worker by ``cancel``: refuse these callsets / result keys from now on; return the
    result keys among them this worker has already started (those are not dropped)."""
    names_set = set(names)
    with _state_lock:
        for name in names:
            _remember(_cancelled, name)
        return [key for key, callset in _started.items() if key in names_set or callset in names_set]


def run_event(event: dict, blas_threads: int) -> dict:
    """The dask task: run one event with ``numpywren.worker.handle`` unless it was cancelled."""
    with _state_lock:
        refused = event["callset"] in _cancelled or event["result"] in _cancelled
        if not refused:
            _remember(_started, event["result"], event["callset"])
    if refused:
        return _refuse(event)
    limit_blas_threads(blas_threads)
    from numpywren.worker.handler import handle

    return handle(event)


def _refuse(event: dict) -> dict:
    """Write a cancelled call's outcome (unless one is there already) without running it."""
    from numpywren import protocol
    from numpywren.storage import open_store

    error = CancelledError(f"call {event['callset']}/{event['call']} was cancelled before it started")
    payload = {**protocol.error_payload(error, event["kind"]), "stats": {"worker": "dask", "seconds": 0.0}}
    open_store(event["store"]).put_if_absent(event["result"], protocol.encode_result(event["kind"], payload))
    return {"ok": False, "callset": event["callset"], "call": event["call"], "cancelled": True}
