"""The executors a benchmark can run numpywren on, each with ``workers`` x 1 BLAS thread.

* ``local``: ``LocalExecutor(workers, blas_threads=1)``;
* ``dask``: a ``distributed.LocalCluster`` of ``workers`` processes x 1 thread, started
  here (its start-up is not timed), and ``DaskExecutor(client=..., blas_threads=1)``;
* ``lithops``: Lithops' localhost backend (``worker_processes`` = ``workers``),
  ``LithopsExecutor(blas_threads=1)``.

Every executor is warmed up (its worker processes started) before it is returned.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

from benchmarks import common

ENGINES = ("local", "dask", "lithops")


def engine_list(text: str) -> list[str]:
    """argparse type: comma-separated engine names."""
    import argparse

    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in ENGINES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown executor {unknown or text!r}: use {', '.join(ENGINES)}")
    return names


@contextlib.contextmanager
def open_executor(engine: str, workers: int, store) -> Iterator:
    """A warmed-up executor of ``engine`` with ``workers`` x 1 BLAS thread on ``store``."""
    with contextlib.ExitStack() as stack:
        if engine == "local":
            from numpywren import LocalExecutor

            ex = stack.enter_context(LocalExecutor(workers, store, blas_threads=1))
        elif engine == "dask":
            import numpywren

            try:
                import distributed
            except ImportError:
                raise SystemExit('--executor dask needs dask.distributed: pip install "numpywren[dask]"') from None
            cluster = stack.enter_context(distributed.LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None))
            client = stack.enter_context(distributed.Client(cluster, set_as_default=False))
            ex = stack.enter_context(numpywren.executor("dask", client=client, store=store, blas_threads=1))
        elif engine == "lithops":
            import numpywren

            config = {"lithops": {"backend": "localhost", "storage": "localhost"},
                      "localhost": {"worker_processes": workers}}
            try:
                ex = numpywren.executor("lithops", store=store, config=config, blas_threads=1)
            except ImportError as exc:
                raise SystemExit(str(exc)) from None
            stack.enter_context(ex)
        else:
            raise ValueError(f"unknown executor {engine!r}: use {', '.join(ENGINES)}")
        common.warm_up(ex)
        yield ex
