"""The public entry points: executors, and the default executor that operations share."""
from __future__ import annotations

import atexit
import contextvars
import os
from contextlib import contextmanager

from numpywren.executors.base import Executor
from numpywren.storage import Store

_default: Executor | None = None
#: the executor of ``with numpywren.using(ex):`` (operators such as ``A + B`` take no executor argument)
_current: contextvars.ContextVar = contextvars.ContextVar("numpywren_executor", default=None)


BACKENDS = ("local", "lambda", "dask", "lithops")


def executor(backend: str = "local", /, store: "Store | str | None" = None, **options) -> Executor:
    """Create an executor, PyWren style: ``ex = numpywren.executor(); ex.map(f, xs)``.

    ``backend`` is ``"local"`` (worker processes on this machine, the default),
    ``"lambda"`` (AWS Lambda; needs ``function_name`` and an S3 store), ``"dask"``
    (a dask.distributed cluster: ``address=`` or ``client=``) or ``"lithops"``
    (Lithops' FunctionExecutor: ``backend=``, ``storage=``, ``config=``).
    ``$NUMPYWREN_BACKEND`` overrides the default backend. ``backend`` is positional
    only: ``backend=`` among the options is Lithops' own (``executor("lithops", backend="gcp_functions")``).

    Parameters
    ----------
    backend : {"local", "lambda", "dask", "lithops"}, default "local"
        Where the workers run (positional only).
    store : Store or str, optional
        The store every worker reaches; default the default store.
    **options
        The backend's own options, e.g. ``workers`` (local), ``function_name`` and ``max_concurrency``
        (lambda), ``address`` or ``client`` (dask), ``backend`` and ``storage`` (lithops).

    Returns
    -------
    Executor
        A new executor; use it in a ``with`` block or call ``shutdown()``.

    Raises
    ------
    ValueError
        An unknown backend.
    """
    backend = os.environ.get("NUMPYWREN_BACKEND", backend) if backend == "local" else backend
    if backend == "local":
        from numpywren.executors.local import LocalExecutor

        return LocalExecutor(store=store, **options)
    if backend == "lambda":
        from numpywren.executors.aws_lambda import LambdaExecutor

        return LambdaExecutor(store=store, **options)
    if backend == "dask":
        from numpywren.executors.dask import DaskExecutor

        return DaskExecutor(store=store, **options)
    if backend == "lithops":
        from numpywren.executors.lithops import LithopsExecutor

        return LithopsExecutor(store=store, **options)
    raise ValueError(f"unknown backend {backend!r}: use one of {', '.join(BACKENDS)}")


def default_executor(**options) -> Executor:
    """PyWren's name: a new executor of the default backend (``"local"``, or ``$NUMPYWREN_BACKEND``).

    Parameters
    ----------
    **options
        As for :func:`executor`.

    Returns
    -------
    Executor
        A new executor of the default backend.
    """
    return executor(**options)


def get_executor(ex: Executor | None = None) -> Executor:
    """``ex`` if given, else a shared default executor started on first use.

    Parameters
    ----------
    ex : Executor, optional
        Returned as is when given.

    Returns
    -------
    Executor
        ``ex``, else the executor of an enclosing ``using`` block, else the shared default.
    """
    global _default
    if ex is not None:
        return ex
    if _current.get() is not None:
        return _current.get()
    if _default is None:
        _default = executor()
        atexit.register(_default.shutdown)
    return _default


@contextmanager
def using(ex: Executor):
    """Run operations that take no ``executor=`` (``A + B``, ``A.sum()``, ``A[...]`` on big slices) on ``ex``.

    Parameters
    ----------
    ex : Executor
        The executor operations without ``executor=`` use inside the block.

    Yields
    ------
    Executor
        ``ex``.

    Raises
    ------
    TypeError
        ``ex`` is not an executor.
    """
    if not isinstance(ex, Executor):
        raise TypeError(f"using() takes an executor, got {type(ex).__name__}")
    token = _current.set(ex)
    try:
        yield ex
    finally:
        _current.reset(token)
