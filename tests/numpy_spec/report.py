"""Run numpy's and scipy's own linalg test files against numpywren and count the outcomes by function and cause.

    PYTHONPATH=$PWD python -m tests.numpy_spec.report [--out table.md] [--log calls.jsonl] [-k EXPR]
        [--only nodes.txt --over earlier.jsonl]

The test files are the installed packages' own (located through
``numpy.__file__`` / ``scipy.__file__``, never copied here). A test counts
for the function of its first failing stand-in call (else its first call);
tests that call none of the stand-ins are not counted. A failure's cause is,
in order: the function is missing from numpywren; a feature of its inputs
(stacked 3-D, non-numeric dtype, float16/longdouble); a wrong
answer (an independent check failed, see ``verify``); what numpywren's error
says (keyword, lapack_driver, assume_a, qr mode, wide matrix, complex: complex
inputs count as "complex" only when numpywren's error says so, since complex
matrices are supported); the other
features (empty, 0-D, wide); otherwise the error's type, or, when numpywren
returned and the test's own check failed, "overwrite_a/b buffer reuse" (scipy's
tests of ``overwrite_*`` assert that the input buffer was reused) or "test assertion".
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile

import numpy
import scipy

#: (package, test file under its linalg/tests/)
TARGETS = [("numpy", "test_linalg.py"), ("scipy", "test_basic.py"), ("scipy", "test_decomp_lu.py"),
           ("scipy", "test_decomp_cholesky.py"), ("scipy", "test_decomp.py")]
ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_files() -> list[str]:
    roots = {"numpy": numpy.__file__, "scipy": scipy.__file__}
    return [str(pathlib.Path(roots[pkg]).parent / "linalg" / "tests" / name) for pkg, name in TARGETS]


def run(paths: list[str], log: str, extra: list[str] = (), timeout: float | None = None) -> int:
    """Run pytest on ``paths`` (files or node ids) with the plugin; one JSON line per test goes to ``log``."""
    env = {**os.environ, "NUMPYWREN_SPEC_LOG": log,
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    cmd = [sys.executable, "-m", "pytest", "-p", "tests.numpy_spec.plugin", "-q", "-p", "no:cacheprovider",
           "-W", "ignore::pytest.PytestUnknownMarkWarning", "--tb=no", "--no-header", "-rN", *extra, *paths]
    return subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, timeout=timeout).returncode


def records(log: str) -> list[dict]:
    with open(log) as f:
        return [json.loads(line) for line in f if line.strip()]


_MESSAGES = [("lapack_driver", "lapack_driver"), ("pivoting=True", "qr pivoting"),
             ("a layout the band reduction does not take", "svd: one row of non-square tiles"),
             ("lu: the matrix must be square", "lu of a non-square matrix"),
             ("lu_factor: the matrix must be square", "lu of a non-square matrix"),
             ("generalized problem", "eigh(a, b) generalized"), ("unexpected options ['assume_a'", "inv assume_a"),
             ("not a recognized matrix structure", "assume_a='banded'"), ("unexpected keyword", "keyword"), ("unexpected options", "keyword"), ("unsupported keyword", "keyword"),
             ("wider than tall", "wide matrix"), ("'complete' or 'raw'", "qr mode"), ("mode must be", "qr mode"),
             ("assume_a", "assume_a"), ("complex", "complex"), ("stacked", "stacked"), ("3-D", "stacked")]


def classify(record: dict) -> tuple[str, str]:
    """(function, cause) of one test record; cause "pass" for a passing test."""
    calls = record["calls"]
    failing = [c for c in calls if c.get("error")]
    function = (failing or calls)[0]["function"]
    if record["outcome"] in ("passed", "xpassed"):
        return function, "pass"
    if record["outcome"] in ("skipped", "xfailed"):
        return function, record["outcome"]
    if any(c.get("error_type") == "MissingFunction" for c in calls):
        return next(c["function"] for c in calls if c.get("error_type") == "MissingFunction"), "missing function"
    feats = {f for c in (failing or calls) for f in c["features"]}
    if "stacked" in feats:
        return function, "stacked"
    if any(f.startswith("dtype ") for f in feats):   # before float16/longdouble: either input alone fails
        return function, "non-numeric dtype"
    if "float16/longdouble" in feats:
        return function, "float16/longdouble"
    if any(str(c.get("error", "")).startswith("wrong answer") for c in calls):
        return function, "wrong answer"
    error = failing[0]["error"] if failing else ""
    for needle, cause in _MESSAGES:
        if needle in error:
            return function, cause
    test = record["nodeid"].split("::", 1)[-1]
    if not failing:   # numpywren answered every call: what the test checked beyond the answer
        if "overwrite" in test.split("::")[-1]:   # scipy checks that the input buffer was reused
            return function, "overwrite_a/b buffer reuse"
        for needle, cause in _ASSERTIONS:
            if re.search(needle, test):
                return function, cause
    for feature in ("empty shape", "0-D input", "wide"):
        if feature in feats:
            return function, "wide matrix" if feature == "wide" else feature
    if failing:
        return function, f"error: {failing[0].get('error_type')}"
    return function, "test assertion"


#: what scipy's tests check beyond the answer numpywren returned (each an entry of the compatibility guide)
_ASSERTIONS = [(r"^TestQR::test_shape_dtype", "qr(mode='r') is numpy's R, not scipy's (R,)"),
               (r"^TestQR::test_\w+_(left|right)$", "qr's signs (qr_multiply)"),
               (r"ill_cond", "no LinAlgWarning"),
               (r"^TestDet::test_sample_compatible_dtype_input", "det's dtype is numpy's"),
               (r"^TestLU::test_old_lu_smoke_tests", "lu's pivots of a singular matrix")]


def table(recs: list[dict]) -> tuple[str, dict]:
    counted = [r for r in recs if r["calls"]]
    by = collections.Counter(classify(r) for r in counted)
    functions = sorted({f for f, _ in by})
    causes = ["pass"] + sorted({c for _, c in by} - {"pass"}, key=lambda c: -sum(v for (_, k), v in by.items()
                                                                                     if k == c))
    header = "| function | " + " | ".join(causes) + " | total |"
    lines = [header, "|" + "---|" * (len(causes) + 2)]
    for f in functions:
        row = [by.get((f, c), 0) for c in causes]
        lines.append(f"| {f} | " + " | ".join(str(v) for v in row) + f" | {sum(row)} |")
    totals = [sum(by.get((f, c), 0) for f in functions) for c in causes]
    lines.append("| **all** | " + " | ".join(str(v) for v in totals) + f" | {sum(totals)} |")
    wrong = sum(1 for r in counted for c in r["calls"] if str(c.get("error", "")).startswith("wrong answer"))
    summary = {"tests": len(recs), "counted": len(counted), "passed": by_cause(by, "pass"),
               "wrong_answers": wrong, "checked_answers": sum(1 for r in counted for c in r["calls"]
                                                              if c.get("verified") is True)}
    return "\n".join(lines), summary


def by_cause(by: collections.Counter, cause: str) -> int:
    return sum(v for (_, c), v in by.items() if c == cause)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write the markdown table here too")
    parser.add_argument("--log", help="keep the per-test JSON lines here (default: a temporary file)")
    parser.add_argument("-k", dest="keyword", help="pytest -k expression (a subset)")
    parser.add_argument("--only", help="a file of node ids (one a line, from a --log): run just these")
    parser.add_argument("--over", help="a --log of an earlier full run: count its records, each replaced by "
                                       "this run's record of the same test (the table says so)")
    args = parser.parse_args(argv)
    log = args.log or tempfile.mktemp(suffix=".jsonl", prefix="numpy-spec-")
    if os.path.exists(log):
        os.remove(log)
    site = pathlib.Path(numpy.__file__).parents[1]   # logged node ids are relative to the packages' folder
    paths = ([str(site / p) if not p.startswith("/") else p for p in pathlib.Path(args.only).read_text().split("\n")
              if p.strip()] if args.only else test_files())
    run(paths, log, ["-k", args.keyword] if args.keyword else [])
    recs = records(log)
    if args.over:   # this run's records replace the earlier run's of the same tests
        fresh = {r["nodeid"]: r for r in recs}
        recs = [fresh.pop(r["nodeid"], r) for r in records(args.over)] + list(fresh.values())
    text, summary = table(recs)
    head = (f"numpy {numpy.__version__}, scipy {scipy.__version__}: {summary['counted']} of {summary['tests']} "
            f"tests call a numpywren stand-in; {summary['passed']} pass; {summary['checked_answers']} answers "
            f"checked independently, {summary['wrong_answers']} wrong.")
    print(head + "\n\n" + text)
    if args.out:
        pathlib.Path(args.out).write_text(head + "\n\n" + text + "\n")
    if not args.log:
        os.remove(log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
