"""numpywren: serverless, distributed dense linear algebra on stateless workers and an object store.

The package loads lazily (PEP 562): ``import numpywren`` loads nothing, and a public name loads its
module on first use. A worker (``numpywren.worker``) therefore imports only what it runs: the
protocol, the tile codec, the stores and ``blocks/``, never the driver's DAG, jobs or executors
(tests/test_imports.py checks both). Every name in ``__all__`` is reachable as before.
"""
from __future__ import annotations

import sys
import types

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
    "matmul": "numpywren.gemm", "syrk": "numpywren.gemm", "herk": "numpywren.gemm", "kernel": "numpywren.kernels",
    "cholesky": "numpywren.factor", "solve_triangular": "numpywren.factor", "cho_solve": "numpywren.factor",
    "cho_factor": "numpywren.factor",
    "solve": "numpywren.decomp_lu", "qr": "numpywren.decomp_qr", "lstsq": "numpywren.fullsvd",
    "svd_compressed": "numpywren.decomp_svd", "plot_timeline": "numpywren.timeline",
    "eigh": "numpywren.decomp_eigh", "eigvalsh": "numpywren.decomp_eigh", "svd": "numpywren.fullsvd",
    "eigsh": "numpywren.krylov", "qr_multiply": "numpywren.caqr",
    "Plan": "numpywren.jobs", "compose": "numpywren.jobs", "run": "numpywren.jobs",
    "Report": "numpywren.scheduler", "JobFailedError": "numpywren.scheduler",
    "mapreduce": "numpywren.paradigms",
    "BudgetExceededError": "numpywren.budget",
    "lu_factor": "numpywren.decomp_lu", "lu_solve": "numpywren.decomp_lu", "lu": "numpywren.decomp_lu",
    "inv": "numpywren.decomp_lu", "det": "numpywren.decomp_lu", "slogdet": "numpywren.decomp_lu",
    "Store": "numpywren.storage", "LocalStore": "numpywren.storage", "StoreError": "numpywren.storage",
    "KeyNotFoundError": "numpywren.storage", "open_store": "numpywren.storage",
}
#: modules that install methods on BigMatrix (operators, reductions, slicing; from_function): loaded with any
#: public name
_INSTALLERS = ("numpywren.elementwise", "numpywren.creation", "numpywren.zarr_io", "numpywren.tiling")
#: submodules reachable as attributes, loaded on first use (``numpywren.linalg`` is numpy.linalg's namespace)
_SUBMODULES = ("elementwise", "linalg")

__all__ = [
    "executor", "default_executor", "get_executor", "using", "Executor", "LocalExecutor", "Future", "wait",
    "get_all_results",
    "ALL_COMPLETED", "ANY_COMPLETED", "ALWAYS", "RemoteError", "RemoteExitError", "WorkerDiedError",
    "BigMatrix", "MatrixNotFoundError", "CorruptTileError", "StaleTileError", "InputChangedError",
    "matmul", "syrk", "herk", "kernel", "cholesky", "solve_triangular", "cho_solve", "cho_factor", "solve", "qr", "lstsq",
    "svd_compressed", "eigh", "eigvalsh", "eigsh", "qr_multiply", "svd", "lu_factor", "lu_solve", "lu", "inv", "det", "slogdet",
    "plot_timeline", "Plan", "compose",
    "run", "Report",
    "JobFailedError", "mapreduce", "BudgetExceededError",
    "Store", "LocalStore", "StoreError", "KeyNotFoundError", "open_store",
]


def __getattr__(name: str):
    from importlib import import_module

    module = _EXPORTS.get(name)
    if module is None:
        if name in _SUBMODULES:
            return import_module(f"numpywren.{name}")
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module), name)
    for installer in _INSTALLERS:  # BigMatrix's operators and from_function come with it
        import_module(installer)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))


class _Package(types.ModuleType):
    """Importing the submodule ``numpywren.qr`` sets the package's attribute ``qr`` to that module (the import
    system does it after loading): the public function of the same name must win, as with the eager import."""

    def __setattr__(self, name, value):
        if name in _EXPORTS and isinstance(value, types.ModuleType) and value.__name__ == f"{__name__}.{name}":
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
