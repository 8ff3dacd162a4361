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
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

import cloudpickle

_INSTALLED = {Path(p).resolve() for p in (sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"],
                                          sysconfig.get_paths()["stdlib"])}
_OWN = Path(__file__).resolve().parent.parent  # numpywren/ and blocks/ live here


#: cloudpickle's by-value registry is global: concurrent (or nested) dumps calls count their uses
#: of each module, and only the last one to finish unregisters it.
_by_value_lock = threading.Lock()
_by_value_uses: dict[str, int] = {}


def dumps(obj: Any) -> bytes:
    """Pickle for a worker: code from the user's own (not installed) modules travels by value."""
    modules = _user_modules()
    with _by_value_lock:
        for name, module in modules.items():
            if name not in _by_value_uses:
                cloudpickle.register_pickle_by_value(module)
            _by_value_uses[name] = _by_value_uses.get(name, 0) + 1
    try:
        return cloudpickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    finally:
        with _by_value_lock:
            for name, module in modules.items():
                _by_value_uses[name] -= 1
                if not _by_value_uses[name]:
                    del _by_value_uses[name]
                    cloudpickle.unregister_pickle_by_value(module)


_user_modules_seen: list = [None, {}]  # [sys.modules' (size, last name) when scanned, the user modules then]


def _user_modules() -> dict:
    """The user's own modules now loaded; rescanned only when sys.modules changed (a map pickles
    every call's arguments: scanning hundreds of modules each time would cost more than the call)."""
    modules_now = sys.modules
    stamp = (len(modules_now), next(reversed(modules_now), None))
    if _user_modules_seen[0] != stamp:
        # cloudpickle registers a module by its __name__, so aliases in sys.modules are left out
        found = {name: m for name, m in list(modules_now.items())
                 if _is_user_module(name) and getattr(m, "__name__", None) == name}
        _user_modules_seen[:] = [stamp, found]
    return _user_modules_seen[1]


def loads(data: bytes) -> Any:
    return pickle.loads(data)


@lru_cache(maxsize=4096)
def _is_user_path(path: str) -> bool:
    resolved = Path(path).resolve()
    return not any(resolved.is_relative_to(p) for p in _INSTALLED | {_OWN / "numpywren", _OWN / "blocks"})


def _is_user_module(name: str) -> bool:
    module = sys.modules.get(name)
    path = getattr(module, "__file__", None)
    if module is None or not path or name == "__main__" or name.split(".")[0] in ("numpywren", "blocks"):
        return False
    return _is_user_path(path)
