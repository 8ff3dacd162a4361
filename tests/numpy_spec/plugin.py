"""pytest plugin: run numpy's and scipy's own linalg tests with numpywren behind numpy.linalg / scipy.linalg.

Load it explicitly, only for those files (``python -m pytest -p tests.numpy_spec.plugin <numpy's file>``;
``tests.numpy_spec.report`` does it): for each test, the names through which
the test module reaches numpy.linalg's and scipy.linalg's functions of
:data:`wrappers.NUMPY` / :data:`wrappers.SCIPY` are replaced by stand-ins
(its ``linalg`` global by a proxy module, its own ``from scipy.linalg import
...`` names), restored after the test. The libraries themselves are
untouched: numpy's and scipy's internals and numpywren's own tile kernels
call the real functions. With
``$NUMPYWREN_SPEC_LOG`` set, one JSON line per test (outcome, the stand-ins'
calls, the failure) is appended there for the report.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile

import pytest

from tests.numpy_spec import wrappers

_LIBRARIES = {"numpy": ("numpy.linalg", wrappers.NUMPY), "scipy": ("scipy.linalg", wrappers.SCIPY)}


def pytest_configure(config):
    from numpywren.executors.inline import InlineExecutor
    from numpywren.storage import LocalStore

    root = tempfile.mkdtemp(prefix="numpywren-spec-")
    store = LocalStore(root)
    wrappers.CONTEXT.update(store=store, executor=InlineExecutor(2, store), root=root)


def pytest_unconfigure(config):
    if wrappers.CONTEXT.get("executor") is not None:
        wrappers.CONTEXT["executor"].shutdown()
        shutil.rmtree(wrappers.CONTEXT["root"], ignore_errors=True)


def _source(module) -> str | None:
    name = getattr(module, "__name__", "")
    return next((lib for lib in _LIBRARIES if name == lib or name.startswith(lib + ".")), None)


@pytest.fixture(autouse=True)
def _numpywren_behind_linalg(request, monkeypatch):
    """Replace, in the test's module only, the names that reach numpy.linalg / scipy.linalg functions.

    The libraries' own module attributes stay untouched: numpywren's tile kernels call numpy.linalg and
    scipy.linalg too, and must get the real functions. numpy's test file reaches them as ``linalg.<name>``
    (its global ``linalg`` becomes a proxy module), scipy's as names imported from scipy.linalg.
    """
    module = getattr(request, "module", None)
    source = _source(module)
    wrappers.CALLS.clear()
    if source is None:
        yield
        return
    import importlib
    import types

    library = importlib.import_module(_LIBRARIES[source][0])
    proxy = types.ModuleType(library.__name__)
    proxy.__dict__.update({k: v for k, v in vars(library).items() if not k.startswith("__")})
    for name, spec in _LIBRARIES[source][1].items():
        original = getattr(library, name)
        stand_in = wrappers.make(source, original, spec)
        setattr(proxy, name, stand_in)
        for attr, value in list(vars(module).items()):
            if value is original:
                monkeypatch.setattr(module, attr, stand_in)
    for attr, value in list(vars(module).items()):
        if value is library:
            monkeypatch.setattr(module, attr, proxy)
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    path = os.environ.get("NUMPYWREN_SPEC_LOG")
    state = item.stash.setdefault(_STATE, {"outcome": "passed", "failure": None})
    if report.failed and state["failure"] is None:
        state["outcome"] = "failed"
        excinfo = call.excinfo
        state["failure"] = (f"{excinfo.typename}: {str(excinfo.value)[:300]}" if excinfo is not None
                            else report.longreprtext[-300:])
    elif report.skipped and state["outcome"] == "passed":
        state["outcome"] = "xfailed" if hasattr(report, "wasxfail") else "skipped"
    if report.passed and hasattr(report, "wasxfail"):
        state["outcome"] = "xpassed"
    if call.when == "call":
        state["calls"] = [dict(c) for c in wrappers.CALLS]
    if call.when == "teardown" and path:
        record = {"nodeid": item.nodeid, "source": _source(getattr(item, "module", None)),
                  "outcome": state["outcome"], "failure": state["failure"], "calls": state.get("calls", [])}
        with open(path, "a") as f:
            f.write(json.dumps(record, default=str) + "\n")


_STATE = pytest.StashKey[dict]()
