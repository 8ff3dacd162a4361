"""How Python objects become store objects: cloudpickle, protocol 5.

cloudpickle serialises functions by value (lambdas, closures, functions defined
in ``__main__``), which is what lets a stateless worker run code it never saw.
Functions from the user's own modules (a script's helpers, a notebook's folder)
are not installed on the workers either, so those modules are shipped by value
too; installed packages (numpy, numpywren itself) are pickled by reference.
"""
from __future__ import annotations

import pickle
import sys
import sysconfig
from pathlib import Path
from typing import Any, Callable

import cloudpickle

_INSTALLED = {Path(p).resolve() for p in (sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"],
                                          sysconfig.get_paths()["stdlib"])}
_OWN = Path(__file__).resolve().parent.parent  # numpywren/ and blocks/ live here


def dumps(obj: Any) -> bytes:
    return cloudpickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


def loads(data: bytes) -> Any:
    return pickle.loads(data)


def _is_user_module(name: str) -> bool:
    module = sys.modules.get(name)
    path = getattr(module, "__file__", None)
    if module is None or path is None or name == "__main__" or name.split(".")[0] in ("numpywren", "blocks"):
        return False
    path = Path(path).resolve()
    return not any(path.is_relative_to(p) for p in _INSTALLED | {_OWN / "numpywren", _OWN / "blocks"})


def dumps_function(fn: Callable) -> bytes:
    """Pickle a function so that a worker without the user's source files can run it."""
    name = getattr(fn, "__module__", None)
    if not name or not _is_user_module(name):
        return dumps(fn)
    module = sys.modules[name]
    cloudpickle.register_pickle_by_value(module)
    try:
        return dumps(fn)
    finally:
        cloudpickle.unregister_pickle_by_value(module)
