"""The worker: one function, ``handle(event)``, identical on a local process, a thread and AWS Lambda.

An event (numpywren.protocol) is small JSON. A ``"tile"`` event carries a
JSON task spec that the worker runs from its allow-list of operations
(numpywren.worker.ops); a ``"call"`` event names a pickled function and arguments in
the store. The outcome (value, or error with its traceback) is written back
under ``event["result"]``; nothing else leaves the worker.
"""
from __future__ import annotations

import contextlib
import contextvars
import os
import socket
import threading
import time
from functools import lru_cache

from numpywren import protocol
from numpywren.worker.ops import run_spec
from numpywren.protocol import TaskDeadlineError
from numpywren.serialize import loads
from numpywren.storage import open_store

#: Seconds kept back from Lambda's remaining time to write the error result before the platform kills us.
DEADLINE_MARGIN_SECONDS = 2.0


@lru_cache(maxsize=16)
def _load_function(store_url: str, func_key: str):
    # A map's calls share one function object: read and unpickle it once per worker.
    return loads(open_store(store_url).get(func_key))


class _Context:
    """What a running call may ask of its worker (see :func:`current_context`)."""

    def __init__(self, event: dict, lambda_context=None, started: float | None = None):
        self.event = event
        self.lambda_context = lambda_context
        self.deadline = protocol.call_deadline(event, time.time() if started is None else started)

    def remaining_seconds(self) -> float | None:
        """Seconds left before the platform kills this worker (None when unlimited)."""
        if self.lambda_context is not None:
            return self.lambda_context.get_remaining_time_in_millis() / 1000.0
        return None if self.deadline is None else self.deadline - time.time()


#: The running call's context: context-local, so calls on threads (the inline executor) never mix.
_current: contextvars.ContextVar["_Context | None"] = contextvars.ContextVar("numpywren_call", default=None)


def current_context() -> _Context | None:
    """The context of the call this worker is running, or None outside a worker."""
    return _current.get()


def handle(event: dict, context=None, store=None) -> dict:
    """Run one call described by ``event``; return a small status dict.

    ``context`` is AWS Lambda's context object when running there (used for the
    remaining-time check), else None. ``store`` is the store to use instead of
    opening ``event["store"]`` (the Lambda handler passes its deployed store).
    """
    protocol.validate_event(event)
    kind = event["kind"]
    store = store if store is not None else open_store(event["store"])
    start = time.time()
    ctx = _Context(event, context, start)
    token = _current.set(ctx)
    try:
        if kind == "tile":
            func, args, kwargs = run_spec, (event["task"],), {}
        else:
            func = _load_function(event["store"], event["func"])
            args, kwargs = loads(protocol.call_args(event, store.get(event["args"])))
        with _environment(event.get("env")):
            payload = {"ok": True, "value": _call_within_deadline(ctx, func, args, kwargs)}
    # Every failure must reach the driver, sys.exit() in user code too (on Lambda it would leave no result).
    except (Exception, SystemExit) as exc:  # noqa: BLE001
        payload = protocol.error_payload(exc, kind)
    finally:
        _current.reset(token)
    end = time.time()
    payload["stats"] = {"worker": f"{socket.gethostname()}:{os.getpid()}", "start": start,
                        "end": end, "seconds": end - start}
    result = protocol.encode_result(kind, payload)
    store.put(event["result"], result)
    if event.get("done"):  # after the result: a marker always names a result that is there
        _put_done_marker(store, event, result)
    return {"ok": payload["ok"], "callset": event["callset"], "call": event["call"], "seconds": end - start}


def _put_done_marker(store, event: dict, result: bytes) -> None:
    """The call's done-marker, carrying a copy of a short ``result`` (see numpywren.protocol): the driver
    then needs no read of the result key. Where that name would be too long for the store (a long store
    prefix), the plain marker."""
    now = time.time()
    key = protocol.done_key(event["callset"], event["call"], now, result)
    if not store.fits(key):
        key = protocol.done_key(event["callset"], event["call"], now)
    store.put(key, b"")


@contextlib.contextmanager
def _environment(env: dict | None):
    """The call's ``extra_env`` in ``os.environ`` while it runs, then the worker's own again.

    The environment is the process's: calls running on threads of one process see each other's.
    """
    if not env:
        yield
        return
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _call_within_deadline(ctx: _Context, func, args, kwargs):
    """Run the call; on Lambda, raise TaskDeadlineError before the platform would cut it silently.

    The call runs in a thread that the handler waits for until the remaining
    time minus a margin; an overrun is then reported under the result key
    (the abandoned thread only ever writes final keys, and lambda_handler
    drops the sandbox so that it does not run on in the next invocation).
    """
    if ctx.lambda_context is None:
        return func(*args, **kwargs)
    remaining = ctx.remaining_seconds()
    budget = remaining - DEADLINE_MARGIN_SECONDS
    where = f"call {ctx.event['callset']}/{ctx.event['call']}"
    if budget <= 0:
        raise TaskDeadlineError(f"{where} not started: only {remaining:.2f} s of Lambda time left "
                                f"(margin {DEADLINE_MARGIN_SECONDS} s); raise the function timeout")
    box: dict = {}
    call_context = contextvars.copy_context()  # the thread sees this call's current_context()

    def target():
        try:
            box["value"] = call_context.run(func, *args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the handler's thread
            box["error"] = exc

    thread = threading.Thread(target=target, name="numpywren-call", daemon=True)
    thread.start()
    thread.join(budget)
    if thread.is_alive():
        raise TaskDeadlineError(f"{where} did not finish in the {budget:.2f} s left before Lambda's "
                                f"timeout (minus a {DEADLINE_MARGIN_SECONDS} s margin); raise the function "
                                f"timeout or use smaller tiles")
    if "error" in box:
        raise box["error"]
    return box["value"]
