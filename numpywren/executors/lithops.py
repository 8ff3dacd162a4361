"""Lithops as the backend: each call's event runs ``worker.handle`` through a Lithops FunctionExecutor.

Lithops brings Google Cloud Functions / Cloud Run, Azure Functions, IBM Code
Engine, AWS Batch, Kubernetes and more (its ``backend=`` and ``storage=`` and
its own config file); ``backend="localhost", storage="localhost"`` runs on
this machine with no config. numpywren's store stays the only place data and
results go, and must be reachable from the functions (S3, or a local folder
for the localhost backend); Lithops' own storage only carries its calls.

The rules this backend keeps:

* a batch of calls (a ``map``, a round of tile tasks) is one Lithops ``map``
  job, whatever its size; each call sets ``blas_threads`` BLAS threads in its
  process;
* ``task_timeout`` is Lithops' own per-call timeout (its backends stop a call
  that overruns); a call Lithops reports as failed (timed out, killed, out of
  memory) fails its future with WorkerDiedError, and numpywren's scheduler
  retries tile tasks. Lithops retries nothing by itself;
* ``cancel`` drops nothing: Lithops cannot cancel calls it dispatched, so
  calls of a cancelled batch run to their end (their results are ignored).

A driver thread watches the Lithops futures, which Lithops' job monitor
updates, and reports each call's end (``reports_completions``).
"""
from __future__ import annotations

import logging
import threading
import time

try:
    import lithops
except ImportError:  # pragma: no cover - depends on the installed extras
    raise ImportError('the lithops executor needs Lithops: pip install "numpywren[lithops]"') from None

from numpywren import protocol
from numpywren.executors.base import Executor, check_options
from numpywren.executors.blas import limit_blas_threads
from numpywren.futures import Future, WorkerDiedError
from numpywren.storage import Store

logger = logging.getLogger(__name__)

#: How often the driver thread looks at the Lithops futures (their states are set by Lithops' monitor).
WATCH_SECONDS = 0.05
_ENDED = ("Ready", "Success", "Error", "Done", "Unknown")


class LithopsExecutor(Executor):
    """Runs calls through ``lithops.FunctionExecutor(backend=..., storage=..., config=...)``.

    ``workers`` (how many calls run at once, used to size task graphs) defaults
    to the localhost backend's ``worker_processes``, else the backend's
    ``max_workers``. ``lithops_options`` go to the FunctionExecutor as they are.
    """

    reports_completions = True

    def __init__(self, store: "Store | str | None" = None, *, backend: str | None = None,
                 storage: str | None = None, config: dict | None = None, workers: int | None = None,
                 blas_threads: int = 1, task_timeout: float | None = None, **lithops_options):
        check_options(workers, blas_threads, task_timeout)
        super().__init__(store)
        self.fexec = lithops.FunctionExecutor(backend=backend, storage=storage, config=config,
                                              log_level=lithops_options.pop("log_level", None),
                                              **lithops_options)
        self.blas_threads = blas_threads
        self.task_timeout = task_timeout
        self._workers = workers or _lithops_workers(self.fexec.config)
        self.wakeup = threading.Event()
        self._lock = threading.Lock()
        self._pending: list[tuple[dict, object]] = []  # (event, Lithops future) of calls not yet ended
        self._closed = False
        self._watcher = threading.Thread(target=self._watch, name="numpywren-lithops-watch", daemon=True)
        self._watcher.start()

    @property
    def workers(self) -> int:
        return self._workers

    def _invoke(self, event: dict) -> None:
        self._invoke_batch([event])

    def _deliver_batch(self, events, on_done=None) -> list[Future]:
        """One Lithops job for the whole batch (a Lithops job per call would upload the function each time)."""
        events = list(events)
        futures = [self._future(event, on_done) for event in events]
        if events:
            self._invoke_batch(events)
        return futures

    def _invoke_batch(self, events: list[dict]) -> None:
        if self._closed:
            raise RuntimeError("this executor has been shut down")
        timeout = None
        if self.task_timeout is not None:  # the worker derives its "deadline" from it when it starts
            timeout = max(1, int(round(self.task_timeout)))
            events = [protocol.with_timeout(event, self.task_timeout) for event in events]
        # include_modules=None: Lithops ships no module files with the calls (numpywren is installed where
        # they run, as in Lambda's layer); shipping and unpacking them per job raced (an ImportError, here).
        calls = self.fexec.map(run_event, [(event, self.blas_threads) for event in events], timeout=timeout,
                               include_modules=None)
        with self._lock:
            self._pending.extend(zip(events, calls))

    def _watch(self) -> None:
        """Report every call whose Lithops future ended; a failure Lithops saw becomes the call's outcome."""
        while not self._closed:
            with self._lock:
                ended = [(e, f) for e, f in self._pending if f._state in _ENDED]
                if ended:
                    gone = {id(f) for _, f in ended}
                    self._pending = [(e, f) for e, f in self._pending if id(f) not in gone]
            for event, call in ended:
                try:
                    call.status(throw_except=False)
                    failed = call.error
                except Exception as exc:  # noqa: BLE001 - Lithops could not read the call's status
                    failed, call._exception = True, exc
                if failed:
                    self.record_failure(event, WorkerDiedError(
                        f"call {event['callset']}/{event['call']} failed in Lithops: {_lithops_error(call)}"),
                        worker="lithops")
                else:
                    self._call_ended(event)  # the worker wrote the outcome before its call ended
            if ended:
                self.wakeup.set()
            time.sleep(WATCH_SECONDS)

    def shutdown(self) -> None:
        """Stop watching; calls already dispatched run to their end on Lithops."""
        if self._closed:
            return
        self._closed = True
        super().shutdown()
        self._watcher.join(timeout=5)
        try:
            self.fexec.clean(clean_cloudobjects=False)
        except Exception as exc:  # noqa: BLE001 - cleaning Lithops' own storage is best effort
            logger.warning("could not clean Lithops' job data: %r", exc)


def _lithops_workers(config: dict) -> int:
    backend = config.get("lithops", {}).get("backend")
    section = config.get(backend, {}) if backend else {}
    if backend == "localhost":
        return int(section.get("worker_processes") or 1)
    return int(section.get("max_workers") or 1)


def _lithops_error(call) -> str:
    status = getattr(call, "_call_status", None) or {}
    exc = getattr(call, "_exception", None)
    return str(status.get("exc_info") or status.get("exception") or repr(exc) or "unknown error")


def run_event(event: dict, blas_threads: int) -> dict:
    """The Lithops function: run one event with ``numpywren.worker.handle``."""
    limit_blas_threads(blas_threads)
    from numpywren.worker.handler import handle

    return handle(event)
