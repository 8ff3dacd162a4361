"""``numpywren`` / ``python -m numpywren``: demo, bench, predict, deploy, teardown, layer builds.

Each command lives in its own module exposing ``add_arguments(parser)`` and
``run(args) -> int``; this file only routes to them (imported lazily so that
``numpywren demo`` never pays for boto3 or matplotlib).
"""
from __future__ import annotations

import argparse
import importlib
import re
import sys

from numpywren.budget import BudgetExceededError
from numpywren.storage import StoreError

#: command -> (module, help). The module provides add_arguments_<cmd> or add_arguments, and run_<cmd> or run.
COMMANDS = {
    "demo": ("numpywren.demo", "multiply two matrices through the store on local workers and check against numpy"),
    "bench": ("benchmarks.cli", "run a benchmark (gemm, scaling, io, kernel, ...) and write CSV + PNG"),
    "deploy": ("numpywren.deploy", "create or update the AWS Lambda function, layer and IAM role"),
    "teardown": ("numpywren.deploy", "remove what deploy created"),
    "layer": ("numpywren.deploy", "build the AWS Lambda layer zip"),
    "predict": ("numpywren.predict", "predict a job's time, GFLOPS, traffic, cost and bound at cloud scale "
                                     "(simulated; nothing runs)"),
    "calibrate": ("numpywren.calibrate", "measure the deployed Lambda function (invokes, kernels, S3) and write a "
                                         "profile for predict --platform FILE (prints its cost ceiling; --yes)"),
    "store": ("numpywren.gc", "store maintenance: 'store gc' removes what finished or dead runs left"),
}


def plain(text: str) -> str:
    """Docstring text without reStructuredText markup: ``x`` and :role:`x` become x."""
    text = re.sub(r":[a-z]+(?::[a-z]+)?:`~?([^`]+)`", r"\1", text)
    return re.sub(r"``([^`]+)``", r"\1", text)


class PlainHelpFormatter(argparse.HelpFormatter):
    """argparse help with the RST markup of docstrings removed (they are reused as descriptions)."""

    def _format_text(self, text: str) -> str:
        return super()._format_text(plain(text))

    def _expand_help(self, action) -> str:
        return plain(super()._expand_help(action))


#: user errors: one line on stderr, no traceback (a refused or stopped budget is one: it names the cost)
USER_ERRORS = (ValueError, TypeError, KeyError, OSError, ImportError, StoreError, BudgetExceededError)


def _entry(module, name: str, command: str):
    return getattr(module, f"{name}_{command}", None) or getattr(module, name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="numpywren", description=__doc__.splitlines()[0],
                                     formatter_class=PlainHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    argv = sys.argv[1:] if argv is None else argv
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for command, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(command, help=help_text, description=help_text, formatter_class=PlainHelpFormatter)
        if command == chosen:  # only import the module of the command being run
            module = importlib.import_module(module_name)
            _entry(module, "add_arguments", command)(p)
            p.set_defaults(_run=_entry(module, "run", command))
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except Exception as e:
        # bad input or setup (a value out of range, no such file, an unreachable store, no AWS credentials,
        # access denied, a missing optional dependency): one line, no traceback. A benchmark's own failure
        # keeps its traceback (it is a bug to report), except a missing extra.
        user = (ImportError,) if args.command == "bench" else USER_ERRORS
        if isinstance(e, user) or (args.command != "bench" and type(e).__module__.startswith("botocore")):
            message = " ".join(str(e).split()) or type(e).__name__
            parser.exit(2, f"numpywren {args.command}: error: {message}\n")
        raise


if __name__ == "__main__":
    sys.exit(main())
