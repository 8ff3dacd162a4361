"""CLI polish: help without reStructuredText markup, the benchmark's prog, user errors in one line."""
from __future__ import annotations

import pytest

from benchmarks import common
from numpywren.cli import main, plain


def _run(capsys, *argv):
    with pytest.raises(SystemExit) as info:
        main(list(argv))
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def test_plain_strips_rst():
    assert plain("``A @ B`` via :func:`numpywren.matmul` and :class:`~numpywren.jobs.Plan`") == \
        "A @ B via numpywren.matmul and numpywren.jobs.Plan"


@pytest.mark.parametrize("argv", [["--help"], ["bench", "--help"], ["store", "--help"], ["demo", "--help"],
                                  ["bench", "gemm", "--help"], ["bench", "chain", "--help"]])
def test_help_has_no_rst_markup(capsys, monkeypatch, argv):
    monkeypatch.setattr(common, "PROG", common.PROG)
    code, out, _ = _run(capsys, *argv)
    assert code == 0 and "``" not in out and ":func:" not in out
    if argv[0] == "bench" and len(argv) == 3:
        assert out.startswith(f"usage: numpywren bench {argv[1]} ")


def test_user_errors_are_one_line(capsys, monkeypatch):
    monkeypatch.setattr(common, "PROG", common.PROG)
    for argv in (["store", "gc", "--store", "s3://"], ["bench", "gemm", "--sizes", "x"]):
        code, _, err = _run(capsys, *argv)
        lines = [line for line in err.splitlines() if "error:" in line]
        assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
