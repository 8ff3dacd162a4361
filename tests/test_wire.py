"""numpywren.protocol is the whole wire: every event field an executor or worker sets is declared and validated there."""
import ast
from pathlib import Path

import pytest

from numpywren import protocol

PACKAGE = Path(protocol.__file__).resolve().parent


def _event_fields_set(tree: ast.AST) -> set[str]:
    """String keys stored into something named ``event``/``events``/``*.event``, or put beside ``**event``."""
    def is_event(node) -> bool:
        name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""
        return name in ("event", "queued") or name.endswith("_event")

    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AugAssign)):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                if (isinstance(target, ast.Subscript) and is_event(target.value)
                        and isinstance(target.slice, ast.Constant) and isinstance(target.slice.value, str)):
                    found.add(target.slice.value)
        elif isinstance(node, ast.Dict) and any(k is None and is_event(v) for k, v in zip(node.keys, node.values)):
            found.update(k.value for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in
              ("update", "setdefault") and is_event(node.func.value)):
            found.update(kw.arg for kw in node.keywords if kw.arg)
            if node.func.attr == "setdefault" and node.args and isinstance(node.args[0], ast.Constant):
                found.add(node.args[0].value)
    return found


def test_every_event_field_an_executor_or_worker_sets_is_declared_in_protocol():
    declared = set(protocol.OPTIONAL_FIELDS).union(*protocol.EVENT_FIELDS.values())
    files = sorted((PACKAGE / "executors").glob("*.py")) + sorted((PACKAGE / "worker").glob("*.py"))
    assert len(files) > 10
    seen = {}
    for path in files:
        for field in _event_fields_set(ast.parse(path.read_text())):
            seen.setdefault(field, []).append(path.name)
    undeclared = {f: where for f, where in seen.items() if f not in declared}
    assert not undeclared, f"event fields set outside numpywren.protocol's declaration: {undeclared}"
    assert {"done", "not_after"} <= set(seen)  # the scan sees what the executors set today (timeout: with_timeout)


def test_the_scan_catches_an_undeclared_field():
    code = 'def f(event):\n    event["tier"] = 1\n    return {**event, "speed": 2}\n'
    assert _event_fields_set(ast.parse(code)) == {"tier", "speed"}


def _tile_event(**extra):
    event = protocol.tile_event("file:///tmp/x", "s-1/0", "0", {"op": "gemm"})
    return {**event, **extra}


def test_validate_event_refuses_an_undeclared_field_and_names_it():
    with pytest.raises(ValueError, match=r"unknown fields \['speed'\]"):
        protocol.validate_event(_tile_event(speed=2))


@pytest.mark.parametrize("field, bad", [("timeout", 0), ("timeout", -1.0), ("timeout", "5"), ("timeout", True),
                                        ("deadline", "soon"), ("not_after", False), ("env", {"A": 1}),
                                        ("done", "yes")])
def test_validate_event_checks_each_optional_field(field, bad):
    with pytest.raises(ValueError, match="malformed numpywren event"):
        protocol.validate_event(_tile_event(**{field: bad}))


def test_every_optional_field_is_accepted_when_well_formed():
    protocol.validate_event(_tile_event(timeout=2.5, deadline=1e9, not_after=1e9, done=True, env={"A": "1"}))
    call = protocol.call_event("file:///tmp/x", "s-1/0", "0", "f", "a", args_at=(0, 3))
    protocol.validate_event(protocol.with_timeout(call, 3))


def test_one_deadline_helper_counts_the_timeout_from_the_start_of_the_call():
    event = protocol.with_timeout(_tile_event(), 5)
    assert protocol.call_deadline(event, 100.0) == 105.0
    assert protocol.call_deadline(_tile_event(), 100.0) is None
    assert protocol.call_deadline({**event, "deadline": 42.0}, 100.0) == 42.0
    assert protocol.with_timeout(_tile_event(), None) == _tile_event()


def test_task_lease_names_the_lease_without_the_caller_reading_the_spec():
    spec = {"id": "C/C0_0", "op": "gemm", "run": "r-1", "attempt": 2, "out": {"@": [0, 0, 0]},
            "m": [{"store": "file:///tmp/s"}]}
    event = protocol.tile_event("file:///tmp/s", "s-1/0", "0", spec)
    assert protocol.task_lease(event) == ("file:///tmp/s", protocol.lease_key("r-1", "C/C0_0", 2))
    assert protocol.task_lease(protocol.tile_event("file:///tmp/s", "s-1/0", "0", {**spec, "op": "scan"})) is None
    assert protocol.task_lease(protocol.call_event("file:///tmp/s", "s-1/0", "0", "f", "a")) is None


def test_a_report_names_its_run_and_job_is_a_deprecated_alias():
    from numpywren.scheduler import Report

    report = Report(run="matmul-1", workers=2)
    assert report.run == "matmul-1"
    with pytest.warns(DeprecationWarning, match="Report.run"):
        assert report.job == "matmul-1"


def test_a_task_value_crosses_exactly_and_a_malformed_one_is_refused():
    """protocol.encode_value / decode_value: a block returned in a JSON result (VALUE_PARAM) comes back bit for
    bit (NaN, inf, complex), with its run and generation; a wrong dtype, shape or body is a ValueError."""
    import json

    import numpy as np

    block = np.array([[1.5], [np.nan], [-np.inf], [2.0 ** -1074]])
    for dtype in ("float64", "float32", "complex128", "complex64"):
        b = (block * (1 + 2j) if dtype.startswith("complex") else block).astype(dtype)
        value = json.loads(json.dumps(protocol.encode_value(b, "sum-1", "g7")))
        got, run, gen = protocol.decode_value(value, dtype, (4, 1))
        assert got.dtype == b.dtype and got.tobytes() == b.tobytes() and (run, gen) == ("sum-1", "g7")
    value = protocol.encode_value(block, "sum-1", "g7")
    for bad, match in (((value, "float32", (4, 1)), "expected float32"), ((value, "float64", (2, 2)), "shape"),
                       (({**value, "data": value["data"][:-4]}, "float64", (4, 1)), "malformed task value"),
                       (({**value, "data": "!!"}, "float64", (4, 1)), "malformed task value"),
                       (({"dtype": "float64"}, "float64", (4, 1)), "malformed task value")):
        with pytest.raises(ValueError, match=match):
            protocol.decode_value(*bad)
    with pytest.raises(ValueError, match="larger than a value may be"):
        protocol.encode_value(np.zeros((protocol.VALUE_MAX_BYTES // 8 + 1, 1)), "sum-1", "g7")
