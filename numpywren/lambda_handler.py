"""AWS Lambda's entry point (``numpywren.lambda_handler.handler``): the local workers' ``handle``.

Lambda's context supplies the remaining time, so a call that cannot finish is
reported as ``TaskDeadlineError`` under its result key instead of being cut.
The overrunning call's thread would otherwise thaw with the sandbox and run on
inside the next invocation, so after such a report the process exits and
Lambda starts a clean sandbox. BLAS threads come from the function's
environment (set by ``numpywren deploy``).
"""
from __future__ import annotations

import os
import threading

from numpywren.worker import handle


def stray_calls() -> list[threading.Thread]:
    """Call threads still running after their handler returned (overran their deadline)."""
    return [t for t in threading.enumerate() if t.name == "numpywren-call" and t.is_alive()]


def handler(event: dict, context=None) -> dict:
    status = handle(event, context)
    if os.environ.get("AWS_LAMBDA_FUNCTION_NAME") and stray_calls():
        os._exit(1)  # on Lambda only: the outcome is already in S3; drop this sandbox
    return status
