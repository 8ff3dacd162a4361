"""Futures whose results live in the store, and ``wait`` in PyWren's shape."""
from __future__ import annotations

import threading
import time
from typing import Iterable, Sequence

from numpywren import protocol
from numpywren.protocol import RemoteError, RemoteExitError, WorkerDiedError  # noqa: F401 - re-exported
from numpywren.serialize import loads
from numpywren.storage import KeyNotFoundError, Store

ALL_COMPLETED = "ALL_COMPLETED"
ANY_COMPLETED = "ANY_COMPLETED"
ALWAYS = "ALWAYS"  # return at once with whatever is done (one poll)


#: Outcomes the driver could not write to the store either (the store itself failing), by
#: result key: this process's futures read them here, so they end instead of waiting forever.
_unwritable_outcomes: dict[str, dict] = {}


def record_unwritable_outcome(result_key: str, payload: dict) -> None:
    _unwritable_outcomes[result_key] = payload


class Future:
    """The result of one remote call: ``result()`` reads it from the store.

    Futures are cheap handles: the worker writes ``result_key`` once and the
    future only reads it, so any number of drivers may hold the same future.
    """

    def __init__(self, store: Store, event: dict, wakeup: threading.Event | None = None):
        self.store = store
        self.callset = event["callset"]
        self.call = event["call"]
        self.kind = event["kind"]
        self.result_key = event["result"]
        self.event = event
        self.wakeup = wakeup  # set by an executor that knows when a call ended (polling stays the truth)
        #: True while an executor tracks this call and marks it present when it ends (the Lambda
        #: executor, from done-markers): ``wait`` then reads no store for it until then.
        self.tracked = False
        self._present = False
        self._payload: dict | None = None
        self._executor = None  # the executor that delivered the call (for cancel), set by it

    def __getstate__(self) -> dict:
        # A future read elsewhere polls the store, and cannot cancel: the executor stays here.
        return {**self.__dict__, "wakeup": None, "_executor": None, "tracked": False}

    # -- state ------------------------------------------------------------
    def done(self) -> bool:
        if self._payload is None and (self._present or not self.tracked):
            self._fetch()
        return self._payload is not None

    def _fetch(self) -> bool:
        try:
            data = self.store.get(self.result_key)
        except KeyNotFoundError:
            self._payload = _unwritable_outcomes.get(self.result_key)
            return self._payload is not None
        try:
            self._payload = protocol.decode_result(self.kind, data)
        except Exception as exc:  # noqa: BLE001 - e.g. the value's class is missing here
            self._payload = {"ok": False, "exception": None, "type": type(exc).__name__,
                             "message": f"the call's result cannot be unpickled on the driver: {exc}",
                             "traceback": ""}
        return True

    def _mark_present(self) -> None:
        """Called by ``wait`` after a listing showed the result key exists."""
        if self._payload is None:
            self._fetch()

    def _ended(self, payload: dict | None = None) -> None:
        """Called by the executor tracking this call once its outcome is in the store (or recorded);
        ``payload``: the outcome itself, if the executor already has it decoded (``decode_result``)."""
        if payload is not None and self._payload is None:
            self._payload = payload
        self._present = True

    def succeeded(self) -> bool:
        """True if the call finished and returned a value (a method, as in PyWren)."""
        return self.done() and self._payload["ok"]

    def errored(self) -> bool:
        """True if the call finished with an error (cancelled and lost calls included)."""
        return self.done() and not self._payload["ok"]

    def cancel(self) -> bool:
        """Cancel the call, as PyWren's futures do: ``result()`` then raises CancelledError saying so.

        A call not yet started is dropped. A running call runs to its end on its worker (nothing here
        can stop it) but its outcome is discarded: this future is done, cancelled. False if the call
        already ended, or if this future was unpickled away from its executor (it cannot cancel).
        """
        if self._executor is None or self.done():
            return False
        if self._executor._cancel_call(self.event):
            return True
        self._payload = {"ok": False, "exception": None, "type": "CancelledError", "traceback": "",
                         "message": f"call {self.callset}/{self.call} was cancelled while it was running "
                                    "(Future.cancel); its outcome is discarded"}
        return True

    @property
    def stats(self) -> dict:
        """Timing and identity of the run (worker id, start, end, seconds)."""
        return self._payload.get("stats", {}) if self.done() else {}

    # -- results ----------------------------------------------------------
    def result(self, timeout: float | None = None, throw_except: bool = True):
        """Block until the call finished; return its value or re-raise its exception.

        A remote exception is re-raised as its own type with the remote
        traceback attached as a note (shown by Python after the local one).
        """
        if not self.done():
            wait([self], ALL_COMPLETED, timeout=timeout)
            if not self.done():
                raise TimeoutError(f"call {self.callset}/{self.call} not finished after {timeout} s")
        payload = self._payload
        if payload["ok"]:
            return payload["value"]
        if not throw_except:
            return None
        raise self.exception()

    def exception(self) -> Exception | None:
        """The call's exception; a remote BaseException (SystemExit, KeyboardInterrupt...) comes
        back as RemoteExitError or RemoteError, so that it never ends or interrupts the driver."""
        if not self.done() or self._payload["ok"]:
            return None
        payload = self._payload
        exc = None
        if self.kind == "call" and payload.get("exception"):  # a pickle result: unpickled anyway
            try:
                exc = loads(payload["exception"])
            except Exception:  # noqa: BLE001 - the exception's class is missing on the driver
                exc = None
        header = f"Remote traceback (call {self.callset}/{self.call}):\n"
        if isinstance(exc, SystemExit):
            exc = RemoteExitError(f"call {self.callset}/{self.call} exited with code {exc.code} (sys.exit): "
                                  + (f"non-zero return code {exc.code}" if exc.code not in (None, 0)
                                     else "no result"), exc.code)
        elif not isinstance(exc, Exception):  # a tile result, an unrebuildable or a BaseException: by name only
            exc = protocol.rebuild_error(payload)
        exc.__notes__ = [header + payload.get("traceback", "")]  # what add_note does (3.11+)
        return exc

    def __repr__(self) -> str:
        state = "pending" if self._payload is None else ("done" if self._payload["ok"] else "failed")
        return f"<Future {self.callset}/{self.call} {state}>"


def _poll(pending: Sequence[Future]) -> None:
    """Refresh the state of pending futures with one listing per job."""
    by_job: dict[tuple[int, str], list[Future]] = {}
    for f in pending:
        if f.tracked:  # its executor says when it ended: read it then, never list for it
            if f._present:
                f._mark_present()
            continue
        prefix = f.result_key.rpartition("/")[0] + "/"
        by_job.setdefault((id(f.store), prefix), []).append(f)
    for (_sid, prefix), futures in by_job.items():
        store = futures[0].store
        if len(futures) <= 2:  # a direct read is cheaper than a listing
            for f in futures:
                f._mark_present()
            continue
        present = set(store.list(prefix))
        for f in futures:
            if f.result_key in present or f.result_key in _unwritable_outcomes:
                f._mark_present()


def wait(futures: Iterable[Future], return_when: str = ALL_COMPLETED,
         timeout: float | None = None, poll_interval: float = 0.002,
         max_poll_interval: float = 0.2) -> tuple[list[Future], list[Future]]:
    """Wait for futures; return ``(done, not_done)`` like ``concurrent.futures.wait``.

    ``return_when`` is ALL_COMPLETED, ANY_COMPLETED or ALWAYS (one poll, no
    waiting). Polling starts fast and backs off, so short calls return quickly
    and long ones cost few store requests.

    Parameters
    ----------
    futures : iterable of Future
        Futures of any maps and executors.
    return_when : str, default ALL_COMPLETED
        ``ALL_COMPLETED``, ``ANY_COMPLETED`` or ``ALWAYS``.
    timeout : float, optional
        Seconds to wait at most; ``None`` waits as long as it takes.
    poll_interval : float, default 0.002
        First polling interval, in seconds.
    max_poll_interval : float, default 0.2
        Longest polling interval, in seconds.

    Returns
    -------
    done : list of Future
        The completed futures.
    not_done : list of Future
        The others.
    """
    if return_when not in (ALL_COMPLETED, ANY_COMPLETED, ALWAYS):
        raise ValueError(f"return_when must be ALL_COMPLETED, ANY_COMPLETED or ALWAYS, not {return_when!r}")
    futures = list(futures)
    deadline = None if timeout is None else time.monotonic() + timeout
    interval = poll_interval
    not_done = futures
    # Each round looks only at the futures still pending (a long wait on many futures must not cost
    # O(all of them) per completion), and at their wakeups only when they come from several executors.
    all_wakeups = {id(f.wakeup): f.wakeup for f in futures if f.wakeup is not None}
    while True:
        not_done = [f for f in not_done if f._payload is None]
        if not_done:
            _poll(not_done)
            not_done = [f for f in not_done if f._payload is None]
        if (return_when == ALWAYS or not not_done
                or (return_when == ANY_COMPLETED and len(not_done) < len(futures))
                or (deadline is not None and time.monotonic() >= deadline)):
            return [f for f in futures if f._payload is not None], [f for f in futures if f._payload is None]
        sleep = interval if deadline is None else min(interval, max(0.0, deadline - time.monotonic()))
        wakeups = all_wakeups if len(all_wakeups) <= 1 else \
            {id(f.wakeup): f.wakeup for f in not_done if f.wakeup is not None}
        if len(wakeups) == 1:  # one local executor: sleep until one of its calls ends, or the poll is due
            wakeup = next(iter(wakeups.values()))
            if wakeup.wait(sleep):
                wakeup.clear()
                interval = poll_interval
                continue
        else:
            time.sleep(sleep)
        interval = min(interval * 1.5, max_poll_interval)


def get_all_results(futures: Iterable[Future], timeout: float | None = None,
                    progress: bool | None = False, desc: str = "calls") -> list:
    """Wait for all futures (of any maps and executors) and return their values in order.

    Raises the first failed call's error, or TimeoutError naming the first
    unfinished call. ``progress=True`` shows a bar of completed calls (``None``:
    only on a terminal).

    Parameters
    ----------
    futures : iterable of Future
        Futures of any maps and executors.
    timeout : float, optional
        Seconds to wait at most.
    progress : bool, optional
        Show a progress bar (``None``: only on a terminal).
    desc : str, default "calls"
        The progress bar's label.

    Returns
    -------
    list
        The calls' values, in the order of ``futures``.

    Raises
    ------
    TimeoutError
        A call did not finish within ``timeout``.
    Exception
        The first failed call's own exception, with the remote traceback attached.
    """
    futures = list(futures)
    if progress is False:
        wait(futures, ALL_COMPLETED, timeout=timeout)
    else:
        _wait_with_bar(futures, timeout, desc, disable=None if progress is None else False)
    results = []
    for f in futures:  # in order: the first failed or unfinished call is the one reported
        if not f.done():
            pending = sum(not g.done() for g in futures)
            raise TimeoutError(f"call {f.callset}/{f.call} not finished after {timeout} s "
                               f"({pending} of {len(futures)} calls unfinished)")
        results.append(f.result())
    return results


def _wait_with_bar(futures: list[Future], timeout: float | None, desc: str, disable) -> None:
    from tqdm.auto import tqdm

    deadline = None if timeout is None else time.monotonic() + timeout
    pending = futures
    with tqdm(total=len(futures), desc=desc, unit="call", disable=disable, leave=False) as bar:
        while pending:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            done, pending = wait(pending, ANY_COMPLETED, timeout=left)
            bar.update(len(done))
            if deadline is not None and time.monotonic() >= deadline:
                return
