"""The worker side: everything a worker process, thread or Lambda function runs, and nothing else.

``handler`` (``handle(event)``, identical on every backend), ``lambda_handler`` (AWS Lambda's entry point),
``process`` (a local worker process's entry point), ``ops`` (the allow-list of tile operations), the tile
runners (``tasks`` and ``*_tasks``), ``leases`` and ``faults``. This package imports only
numpywren.protocol, numpywren.serialize, the tile codec (numpywren.tile), the stores and ``blocks/``: never
the DAG, matrices, jobs, the scheduler or executors (tests/test_imports.py checks it).

Importing the package loads nothing; ``numpywren.worker.handle`` and ``current_context`` load the handler.
"""
__all__ = ["handle", "current_context"]


def __getattr__(name):
    if name in __all__:
        from numpywren.worker import handler

        return getattr(handler, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
