"""The executor contract every backend implements, and the PyWren-shaped API built on it.

A backend only delivers events (numpywren.protocol) to ``numpywren.worker.handle``
somewhere. The contract, explicit here rather than discovered with getattr:

* ``workers``: how many calls run at once (sizes task graphs and submission windows);
* ``task_timeout``: seconds a call may run, **counted from when a worker starts
  it** (never queueing or worker start-up), or None; the scheduler's lost-task
  detection and Lambda's deadline rely on this one definition;
* ``_invoke(event)``: deliver one event, asynchronously;
* ``cancel(callsets)``: drop calls not yet started (their futures fail as cancelled);
* ``stop(callsets)`` and ``stops_calls``: cancel, and end the calls already running where the backend can
  (``stops_calls``: local processes are killed); True if none of them can write anything any more when it
  returns. The scheduler calls it as a run ends if attempts are still out and the backend ``stops_calls`` (a
  beaten backup then leaves nothing behind), and after a failure. Lambda cannot stop an invocation: its late
  keys (a lease, a result) are fenced out (a run id no one waits for) and ``numpywren store gc`` removes them;
* ``backup_could_win(result_key)``: False when a backup of that running call cannot finish first (numpywren.backups;
  local workers share this machine's cores: one computing runs as fast as its backup would); ``stalled(result_key)``:
  True when the backend knows the call does not progress (a backup is then started even for a long task);
* ``wakeup``: a ``threading.Event`` the backend sets when a call ends, so
  ``futures.wait`` sleeps on it instead of polling (None: poll the store);
* ``reports_completions``: True if the backend calls ``_call_ended(event)``
  for every call it delivered once its outcome is in the store (or recorded
  by ``record_failure``). ``submit_tasks(..., on_done=callback)`` then hands
  each finished future to ``callback`` (O(1) per completion, whatever the
  number in flight); otherwise the scheduler polls its futures;
* ``clock()``: the time the scheduler measures timeouts and backoff with
  (a simulated backend runs a virtual clock);
* ``tracks_calls``, ``call_started(result_key)`` and ``call_progress(result_key)``:
  a backend that knows when each call started (and what progress it last
  reported) and never loses one (simulated) says so, and the scheduler asks it
  instead of listing and reading leases (numpywren.liveness);
* ``worker_memory_mb``: the memory one call may use (None: unknown); a plan
  whose largest task needs more is refused before it runs (numpywren.memory);
* ``predicted_seconds(spec)``: how long a task should run on this backend, if
  it has a model (simulated), else None (numpywren.backups then estimates);
* ``shutdown()``.

Words (the same everywhere): an executor's *session* holds its *callsets*; a
callset is one batch of calls (one ``map``, or the tile tasks a run submits),
PyWren's term; a *run* is one execution of a plan (numpywren.jobs, its id is
``Report.run``); a *job* is what the user asked for (an operation into its
outputs), recorded in each output's job record with the run executing it.
"""
from __future__ import annotations

import abc
import functools
import hashlib
import numbers
import queue
import threading
import time
from typing import Any, Callable, Iterable

from numpywren import protocol
from numpywren.futures import ALL_COMPLETED, Future, get_all_results, record_unwritable_outcome, wait
from numpywren.heartbeat import Heartbeat
from numpywren.serialize import dumps
from numpywren.storage import Store, open_store



def check_options(workers: int | None = None, blas_threads: int = 1, task_timeout: float | None = None) -> None:
    """The option checks every backend shares, once, with one-line errors naming the option."""
    for name, value in (("workers", workers), ("blas_threads", blas_threads)):
        if value is None and name == "workers":
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"{name} must be an int, got {value!r}")
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    if task_timeout is not None:
        if isinstance(task_timeout, bool) or not isinstance(task_timeout, numbers.Real):
            raise TypeError(f"task_timeout must be a number of seconds or None, got {task_timeout!r}")
        if not task_timeout > 0:  # NaN too
            raise ValueError(f"task_timeout must be positive, got {task_timeout}")


class Executor(abc.ABC):
    """Runs Python functions and tile tasks on stateless workers; the store is the only shared state."""

    #: seconds a call may run once started (None: no limit); see the module docstring
    task_timeout: float | None = None
    #: set by backends that know when a call ends (see the module docstring)
    wakeup: threading.Event | None = None
    #: True if the backend calls ``_call_ended`` for every delivered call (see the module docstring)
    reports_completions: bool = False
    #: True if the backend knows when each call started and never loses one (see the module docstring)
    tracks_calls: bool = False
    #: memory one call may use, in MB (None: unknown); see the module docstring
    worker_memory_mb: float | None = None
    #: True if ``stop`` ends running calls, not only queued ones (see the module docstring)
    stops_calls: bool = False

    def __init__(self, store: "Store | str | None" = None):
        self.store = open_store(store)
        self.session = protocol.new_id()
        self._callsets = 0
        self._mine: list[str] = []
        self._heartbeat: Heartbeat | None = None
        self._on_done: dict[str, tuple[Future, Callable[[Future], None]]] = {}  # result key -> listener
        self._calls_in: dict[str, int] = {}  # callset -> calls submitted to it by submit_tasks

    # -- backend ------------------------------------------------------------
    @abc.abstractmethod
    def _invoke(self, event: dict) -> None:
        """Deliver one event to a worker (asynchronously)."""

    @property
    @abc.abstractmethod
    def workers(self) -> int:
        """How many calls can run at once (used to size task graphs)."""

    def cancel(self, callsets: Iterable[str]) -> int:
        """Drop the not yet started calls of ``callsets`` (their futures fail as cancelled); return how many."""
        callsets = set(callsets)
        return self._drop_queued(lambda event: event["callset"] in callsets)

    def stop(self, callsets: Iterable[str]) -> bool:
        """Cancel the calls of ``callsets`` not yet started and end those running, where the backend can; True
        if none of them writes anything after this returns. This default only cancels (False: calls
        already running finish on their own; see the module docstring)."""
        self.cancel(callsets)
        return False

    def backup_could_win(self, result_key: str) -> bool:
        """Whether a backup attempt could finish before this running call (numpywren.backups): True unless
        the backend knows better (LocalExecutor: not while the call's process computes)."""
        return True

    def stalled(self, result_key: str) -> bool:
        """Whether this running call is known not to progress (asleep, hung: LocalExecutor reads its process's
        CPU time): then a backup is worth starting whatever the model says (numpywren.backups). False when
        the backend cannot tell."""
        return False

    def _cancel_call(self, event: dict) -> bool:
        """Drop one call if it has not started (``Future.cancel``); True if dropped."""
        return self._drop_queued(lambda queued: queued["result"] == event["result"]) == 1

    def _drop_queued(self, chosen) -> int:
        """Fail the queued calls whose event ``chosen`` accepts; return how many. Backends that queue override."""
        return 0

    def shutdown(self) -> None:
        """Release the backend's resources (worker processes, clients)."""
        self._stop_heartbeat()

    # -- API ------------------------------------------------------------------
    def call_async(self, fn: Callable, *args: Any, extra_env: dict[str, str] | None = None,
                   **kwargs: Any) -> Future:
        """Run ``fn(*args, **kwargs)`` on a worker; return its future.

        ``extra_env`` (str -> str) is set in the worker's environment for the call, then restored.
        """
        env = protocol.check_env(extra_env)
        callset = self._new_callset()
        func_key = self._put_function(callset, fn)
        return self._submit_call(callset, func_key, 0, args, kwargs, env)

    def map(self, fn: Callable, iterable: Iterable, extra_args: tuple = (),
            extra_kwargs: dict | None = None, extra_env: dict[str, str] | None = None) -> list[Future]:
        """Run ``fn(item, *extra_args, **extra_kwargs)`` for every item; one future each.

        The function is stored once and shared by all calls of the map;
        ``extra_env`` is set in the worker's environment around each call.
        """
        env = protocol.check_env(extra_env)
        callset = self._new_callset()
        func_key = self._put_function(callset, fn)
        events = (self._call_event(callset, func_key, i, (item, *extra_args), extra_kwargs or {}, env)
                  for i, item in enumerate(iterable))
        return self._deliver_batch(events)

    def reduce(self, fn: Callable, futures: Iterable[Future], extra_env: dict[str, str] | None = None) -> Future:
        """PyWren's reduce: run ``fn(results)`` on a worker, ``results`` being the values of ``futures``
        in order, once they are all done; return its future.

        The driver waits for the inputs (on a thread) before it delivers the call, so a
        reduce never holds a worker while its inputs queue behind it. A failed input
        fails the reduce with that input's error.
        """
        futures = list(futures)
        env = protocol.check_env(extra_env)
        callset = self._new_callset()
        func_key = self._put_function(callset, functools.partial(_reduce_results, fn))
        return self._submit_call(callset, func_key, 0, (futures,), {}, env, after=futures)

    def submit_tasks(self, specs: Iterable[dict], on_done: Callable[[Future], None] | None = None,
                     callset: str | None = None) -> list[Future]:
        """Run tile-task specs (numpywren.dag.Task.spec): JSON in the event, JSON results, no pickles.

        ``on_done(future)`` is called (on a backend thread) when a call ends, if
        the backend ``reports_completions``; the caller must then not poll.
        ``callset`` (from :meth:`new_callset`) adds the calls to an existing
        callset, so a job submitting in many small batches keeps one.
        """
        callset = callset or self.new_callset()
        first = self._calls_in.get(callset, 0)
        events = [protocol.tile_event(self.store.url, callset, f"{index:05d}", spec)
                  for index, spec in enumerate(specs, first)]
        self._calls_in[callset] = first + len(events)
        return self._deliver_batch(events, on_done)

    def call_started(self, result_key: str) -> float | None:
        """With ``tracks_calls``: when (``clock()``) the call started, None if not yet."""
        return None

    def call_progress(self, result_key: str) -> tuple[float, float] | None:
        """With ``tracks_calls``: the call's last progress report, (seconds run, fraction of its input read)."""
        return None

    def predicted_seconds(self, spec: dict) -> float | None:
        """How long the task of ``spec`` should take on a worker, if this backend models it (else None)."""
        return None

    def clock(self) -> float:
        """Seconds on the scheduler's clock (monotonic; a simulated backend's is virtual)."""
        return time.monotonic()

    def wait_for(self, completions, timeout: float | None):
        """Block until ``completions`` (a queue.SimpleQueue fed by ``on_done``) has an item or ``timeout``
        passes; return the item or None. A simulated backend advances its clock here instead."""
        try:
            return completions.get(timeout=timeout)
        except queue.Empty:
            return None

    def get_all_results(self, futures: Iterable[Future], timeout: float | None = None,
                        progress: bool | None = False, desc: str = "calls") -> list:
        """Wait for all futures and return their values in order (see numpywren.get_all_results)."""
        return get_all_results(futures, timeout=timeout, progress=progress, desc=desc)

    def cleanup(self, callsets: Iterable[str] | None = None) -> None:
        """Delete the objects (functions, args, results) of ``callsets``, default all of this executor's."""
        callsets = list(self._mine if callsets is None else callsets)
        for callset in callsets:
            self.store.delete_prefix(protocol.callset_prefix(callset))
        gone = set(callsets)
        self._mine = [c for c in self._mine if c not in gone]
        for callset in gone:
            self._calls_in.pop(callset, None)

    def record_failure(self, event: dict, error: BaseException, worker: str = "driver") -> None:
        """Write ``error`` as the call's result, unless a result got there first (if the store
        cannot take it either, this process's futures still learn of it, from memory)."""
        payload = protocol.error_payload(error, event["kind"])
        now = time.time()
        payload["stats"] = {"worker": worker, "start": now, "end": now, "seconds": 0.0}
        try:
            self.store.put_if_absent(event["result"], protocol.encode_result(event["kind"], payload))
        except Exception as exc:  # noqa: BLE001 - the store is failing: keep the outcome in memory
            payload["message"] += f" (and the driver could not store this failure: {exc!r})"
            record_unwritable_outcome(event["result"], payload)
        self._call_ended(event)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.shutdown()

    # -- internals -------------------------------------------------------------
    def new_callset(self) -> str:
        """A new, empty callset (a batch of calls; see the module docstring)."""
        return self._new_callset()

    def _new_callset(self) -> str:
        callset = f"{self.session}/{self._callsets:05d}"
        self._callsets += 1
        self._mine.append(callset)
        if self._heartbeat is None:
            self._heartbeat = Heartbeat(self.store, self.session)
        return callset

    def _put_function(self, callset: str, fn: Callable) -> str:
        data = dumps(fn)
        key = protocol.func_key(callset, hashlib.sha1(data).hexdigest()[:16])
        self.store.put(key, data)
        return key

    def _call_event(self, callset: str, func_key: str, index: int, args: tuple, kwargs: dict,
                    env: dict | None = None) -> dict:
        """Store the call's arguments; return its event."""
        call = f"{index:05d}"
        args_key = protocol.args_key(callset, call)
        self.store.put(args_key, dumps((tuple(args), dict(kwargs))))
        return protocol.call_event(self.store.url, callset, call, func_key, args_key, env=env)

    def _submit_call(self, callset: str, func_key: str, index: int, args: tuple, kwargs: dict,
                     env: dict | None = None, after: list[Future] | None = None) -> Future:
        event = self._call_event(callset, func_key, index, args, kwargs, env)
        if after is None:
            return self._deliver(event)
        future = self._future(event)  # delivered once ``after`` are done (reduce)
        threading.Thread(target=self._invoke_after, args=(event, after), daemon=True,
                         name=f"numpywren-after-{event['callset']}").start()
        return future

    def _deliver_batch(self, events: Iterable[dict],
                       on_done: Callable[[Future], None] | None = None) -> list[Future]:
        """Deliver a batch of events (one callset); one by one as they come, unless a backend batches."""
        return [self._deliver(event, on_done) for event in events]

    def _deliver(self, event: dict, on_done: Callable[[Future], None] | None = None) -> Future:
        future = self._future(event, on_done)
        self._invoke(event)
        return future

    def _future(self, event: dict, on_done: Callable[[Future], None] | None = None) -> Future:
        """The call's future, registered for ``on_done`` (its event is delivered by the caller)."""
        future = Future(self.store, event, wakeup=self.wakeup)
        future._executor = self
        if on_done is not None and self.reports_completions:
            self._on_done[event["result"]] = (future, on_done)
        return future

    def _invoke_after(self, event: dict, futures: list[Future]) -> None:
        wait(futures, ALL_COMPLETED)
        try:
            self._invoke(event)
        except Exception as exc:  # noqa: BLE001 - e.g. the executor shut down meanwhile: the future says so
            self.record_failure(event, exc)

    def _call_ended(self, event: dict) -> None:
        """Backends call this once a call's outcome is in the store (or recorded): notify its listener."""
        listener = self._on_done.pop(event["result"], None)
        if listener is not None:
            future, on_done = listener
            on_done(future)

    def _stop_heartbeat(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.stop(delete=True)
            self._heartbeat = None


def _reduce_results(fn: Callable, futures: list[Future]):
    """On the worker: ``fn`` applied to the list of the (finished) input futures' values."""
    return fn([f.result() for f in futures])
