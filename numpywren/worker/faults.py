"""Fault injection for tests: make chosen tile tasks crash, hang, stall or raise, on the worker side.

Set ``NUMPYWREN_FAULTS`` in the workers' environment (``LocalExecutor(faults=...)``
does it for local workers; on Lambda it is a function environment variable).
The spec is a ``;``-separated list of rules, each ``kind[:key=value]...``::

    crash:task=*/C0_1:attempt=1      the worker process exits at once (os._exit), like a killed Lambda
    hang:task=*/C1_*:seconds=30      the task sleeps (default 3600 s), like a stuck or lost invocation
    spin:task=*/C1_1:seconds=5       the task computes (a busy loop on one core, default 1 s), then runs normally:
                                     a long task on time, not a stalled one (numpywren.backups)
    delay:seconds=0.2                every task sleeps, then runs normally (to widen race windows)
    error:task=*/sum1-0              the task raises InjectedFault (a normal, retryable failure)
    freeze:task=*/C1_1:at=received   the worker process stops itself (SIGSTOP), as a frozen or lost worker
                                     (process workers only)

Keys: ``task`` a glob on the task id (default ``*``), ``attempt`` the 1-based
attempt number the rule applies to (default every attempt), ``at`` the point:
``received`` (the event arrived, before the lease is claimed),
``start`` (after the lease is claimed, before any input is read; default) or
``written`` (after the output tile is written, before the result is reported:
the retry then finds the tile and skips it) or ``read`` (before each input tile read, so a ``delay``
there makes a slow reader whose progress shows it: numpywren.worker.progress; process workers, or the
worker's own thread), ``seconds`` for hang, delay and spin.
Every matching rule fires, in order. Without the variable nothing is checked.
"""
from __future__ import annotations

import contextvars
import fnmatch
import os
import signal
import threading
import time
from dataclasses import dataclass
from functools import lru_cache

ENV_VAR = "NUMPYWREN_FAULTS"
KINDS = ("crash", "hang", "delay", "error", "freeze", "spin")
POINTS = ("received", "start", "written", "read")


class InjectedFault(RuntimeError):
    """Raised by an ``error`` rule."""


class InjectedCrash(BaseException):
    """A ``crash`` rule in a worker that is a thread (numpywren.executors.inline): it cannot exit the
    process, so it unwinds past ``handle`` (which catches only Exception and SystemExit) and its
    executor reports the call as a dead worker's, with no result written by the worker."""


#: The fault spec of the call running in this context (set per call by the inline executor's threads);
#: worker processes read ``$NUMPYWREN_FAULTS`` instead.
spec_in_context: contextvars.ContextVar[str | None] = contextvars.ContextVar("numpywren_faults", default=None)


@dataclass(frozen=True)
class Rule:
    kind: str
    task: str = "*"
    attempt: int | None = None
    at: str = "start"
    seconds: float | None = None

    def matches(self, task_id: str, attempt: int, at: str) -> bool:
        return (self.at == at and (self.attempt is None or self.attempt == attempt)
                and fnmatch.fnmatchcase(task_id, self.task))


def parse(spec: str) -> tuple[Rule, ...]:
    """Parse a fault spec (see the module docstring); errors name the bad rule."""
    rules = []
    for text in filter(None, (part.strip() for part in spec.split(";"))):
        kind, *pairs = text.split(":")
        if kind not in KINDS:
            raise ValueError(f"fault rule {text!r}: unknown kind {kind!r} (use one of {', '.join(KINDS)})")
        fields: dict = {}
        for pair in pairs:
            key, sep, value = pair.partition("=")
            if not sep or key not in ("task", "attempt", "at", "seconds"):
                raise ValueError(f"fault rule {text!r}: bad field {pair!r} (use task=, attempt=, at=, seconds=)")
            fields[key] = value
        try:
            if "attempt" in fields:
                fields["attempt"] = int(fields["attempt"])
            if "seconds" in fields:
                fields["seconds"] = float(fields["seconds"])
        except ValueError as e:
            raise ValueError(f"fault rule {text!r}: {e}") from None
        if fields.get("at", "start") not in POINTS:
            raise ValueError(f"fault rule {text!r}: at= must be one of {', '.join(POINTS)}")
        rules.append(Rule(kind, **fields))
    return tuple(rules)


@lru_cache(maxsize=4)
def _rules(spec: str) -> tuple[Rule, ...]:
    return parse(spec)


def inject(task_id: str, attempt: int, at: str) -> None:
    """Apply the rules of ``$NUMPYWREN_FAULTS`` (or of this call's context) that match this task, attempt and point."""
    in_thread = spec_in_context.get()
    spec = in_thread if in_thread is not None else os.environ.get(ENV_VAR)
    if not spec:
        return
    for rule in _rules(spec):
        if not rule.matches(task_id, attempt, at):
            continue
        if rule.kind == "crash":
            if in_thread is not None:
                raise InjectedCrash(f"injected crash in task {task_id!r} (attempt {attempt}, at {at})")
            os._exit(70)  # no cleanup, no result: exactly what a killed worker leaves behind
        if rule.kind == "freeze":
            if in_thread is not None:
                raise ValueError("a freeze fault stops the whole process: use it with process workers only")
            # the whole process stops (until SIGCONT or SIGKILL); sent to this thread, so that this thread
            # stops at once (sent to the process, it may run on a little while another thread takes it)
            signal.pthread_kill(threading.get_ident(), signal.SIGSTOP)
            continue
        if rule.kind == "error":
            raise InjectedFault(f"injected error in task {task_id!r} (attempt {attempt}, at {at})")
        if rule.kind == "spin":
            end = time.monotonic() + (rule.seconds if rule.seconds is not None else 1.0)
            while time.monotonic() < end:
                pass
            continue
        time.sleep(rule.seconds if rule.seconds is not None else (3600.0 if rule.kind == "hang" else 1.0))
