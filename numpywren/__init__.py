"""numpywren: serverless, distributed dense linear algebra on stateless workers and an object store.

The package loads lazily (PEP 562): ``import numpywren`` loads nothing, and a public name loads its
module on first use. A worker (``numpywren.worker``) therefore imports only what it runs: the
protocol, the tile codec, the stores and ``blocks/``, never the driver's DAG, jobs or executors
(tests/test_imports.py checks both). Every name in ``__all__`` is reachable as before.
"""
from __future__ import annotations

__version__ = "0.1.0"

#: public name -> the module that defines it (loaded on first use)
_EXPORTS = {
    "executor": "numpywren.api", "default_executor": "numpywren.api", "get_executor": "numpywren.api",
    "using": "numpywren.api",
    "Executor": "numpywren.executors", "LocalExecutor": "numpywren.executors",
    "Future": "numpywren.futures", "wait": "numpywren.futures", "get_all_results": "numpywren.futures",
    "ALL_COMPLETED": "numpywren.futures", "ANY_COMPLETED": "numpywren.futures", "ALWAYS": "numpywren.futures",
    "RemoteError": "numpywren.futures", "RemoteExitError": "numpywren.futures",
    "WorkerDiedError": "numpywren.futures",
    "BigMatrix": "numpywren.matrix", "MatrixNotFoundError": "numpywren.matrix",
    "CorruptTileError": "numpywren.tile", "StaleTileError": "numpywren.tile", "InputChangedError": "numpywren.tile",
    "matmul": "numpywren.linalg", "syrk": "numpywren.linalg", "kernel": "numpywren.kernels",
    "cholesky": "numpywren.factor", "solve_triangular": "numpywren.factor", "cho_solve": "numpywren.factor",
    "solve": "numpywren.factor", "qr": "numpywren.qr", "lstsq": "numpywren.qr",
    "svd_compressed": "numpywren.svd", "plot_timeline": "numpywren.timeline",
    "Plan": "numpywren.jobs", "compose": "numpywren.jobs", "run": "numpywren.jobs",
    "Report": "numpywren.scheduler", "JobFailedError": "numpywren.scheduler",
    "mapreduce": "numpywren.paradigms",
    "Store": "numpywren.storage", "LocalStore": "numpywren.storage", "StoreError": "numpywren.storage",
    "KeyNotFoundError": "numpywren.storage", "open_store": "numpywren.storage",
}
#: modules that install methods on BigMatrix (its operators): loaded with any driver-side name
_DRIVER = "numpywren.elementwise"

__all__ = [
    "executor", "default_executor", "get_executor", "using", "Executor", "LocalExecutor", "Future", "wait",
    "get_all_results",
    "ALL_COMPLETED", "ANY_COMPLETED", "ALWAYS", "RemoteError", "RemoteExitError", "WorkerDiedError",
    "BigMatrix", "MatrixNotFoundError", "CorruptTileError", "StaleTileError", "InputChangedError",
    "matmul", "syrk", "kernel", "cholesky", "solve_triangular", "cho_solve", "solve", "qr", "lstsq",
    "svd_compressed", "plot_timeline", "Plan", "compose", "run", "Report",
    "JobFailedError", "mapreduce",
    "Store", "LocalStore", "StoreError", "KeyNotFoundError", "open_store",
]


def __getattr__(name: str):
    from importlib import import_module

    module = _EXPORTS.get(name)
    if module is None:
        if name in ("elementwise",):  # a submodule the old eager __init__ loaded: keep `numpywren.elementwise`
            return import_module(f"numpywren.{name}")
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module), name)
    import_module(_DRIVER)  # BigMatrix's operators come with it
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
