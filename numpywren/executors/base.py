"""The PyWren-shaped executor API shared by every backend.

An executor puts the function and each call's arguments into the store, sends
one small event per call to its backend (``_invoke``), and hands back futures.
A backend only has to deliver events to ``numpywren.worker.handle``.
"""
from __future__ import annotations

import abc
import hashlib
import time
import uuid
from typing import Any, Callable, Iterable

from numpywren.futures import ALL_COMPLETED, ANY_COMPLETED, Future, wait
from numpywren.serialize import dumps
from numpywren.storage import Store, open_store
from numpywren.worker import EVENT_VERSION

JOBS_PREFIX = "jobs"


class Executor(abc.ABC):
    """Runs Python functions on stateless workers; the store is the only shared state."""

    def __init__(self, store: "Store | str | None" = None):
        self.store = open_store(store)
        self.session = uuid.uuid4().hex[:10]
        self._callsets = 0
        self._jobs: list[str] = []
        self._wakeup = None  # a threading.Event set when a call ends, for backends that know (local)

    # -- backend ------------------------------------------------------------
    @abc.abstractmethod
    def _invoke(self, event: dict) -> None:
        """Deliver one event to a worker (asynchronously)."""

    @property
    @abc.abstractmethod
    def workers(self) -> int:
        """How many calls can run at once (used to size task graphs)."""

    def shutdown(self) -> None:
        """Release the backend's resources (worker processes, clients)."""

    # -- API ------------------------------------------------------------------
    def call_async(self, fn: Callable, *args: Any, **kwargs: Any) -> Future:
        """Run ``fn(*args, **kwargs)`` on a worker; return its future."""
        job = self._new_job()
        func_key = self._put_function(job, fn)
        return self._submit(job, func_key, 0, args, kwargs)

    def map(self, fn: Callable, iterable: Iterable, extra_args: tuple = (),
            extra_kwargs: dict | None = None) -> list[Future]:
        """Run ``fn(item, *extra_args, **extra_kwargs)`` for every item; one future each.

        The function is stored once and shared by all calls of the map.
        """
        job = self._new_job()
        func_key = self._put_function(job, fn)
        return [self._submit(job, func_key, i, (item, *extra_args), extra_kwargs or {})
                for i, item in enumerate(iterable)]

    def get_all_results(self, futures: Iterable[Future], timeout: float | None = None,
                        progress: bool | None = False, desc: str = "calls") -> list:
        """Wait for all futures and return their values in order (raises the first error).

        ``progress=True`` shows a bar of completed calls (``None``: only on a terminal).
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
                raise TimeoutError(f"call {f.job}/{f.call} not finished after {timeout} s "
                                   f"({pending} of {len(futures)} calls unfinished)")
            results.append(f.result())
        return results

    def cleanup(self, jobs: Iterable[str] | None = None) -> None:
        """Delete the objects (functions, args, results) of ``jobs``, default all of this executor's."""
        jobs = list(self._jobs if jobs is None else jobs)
        for job in jobs:
            self.store.delete_prefix(f"{JOBS_PREFIX}/{job}/")
        self._jobs = [j for j in self._jobs if j not in set(jobs)]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.shutdown()

    # -- internals -------------------------------------------------------------
    def _new_job(self) -> str:
        job = f"{self.session}-{self._callsets:05d}"
        self._callsets += 1
        self._jobs.append(job)
        return job

    def _put_function(self, job: str, fn: Callable) -> str:
        data = dumps(fn)
        key = f"{JOBS_PREFIX}/{job}/func-{hashlib.sha1(data).hexdigest()[:16]}.pkl"
        self.store.put(key, data)
        return key

    def _submit(self, job: str, func_key: str, index: int, args: tuple, kwargs: dict) -> Future:
        call = f"{index:05d}"
        prefix = f"{JOBS_PREFIX}/{job}"
        args_key = f"{prefix}/args/{call}.pkl"
        self.store.put(args_key, dumps((tuple(args), dict(kwargs))))
        event = {"v": EVENT_VERSION, "store": self.store.url, "job": job, "call": call,
                 "func": func_key, "args": args_key, "result": f"{prefix}/results/{call}.pkl"}
        future = Future(self.store, job, call, event["result"], event, wakeup=self._wakeup)
        self._invoke(event)
        return future


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
