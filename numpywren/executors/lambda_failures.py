"""Lambda's own failure reports for asynchronous invokes: its on-failure destination, an S3 bucket.

An asynchronous invoke returns 202 and nothing more: if Lambda then kills the sandbox (out of memory,
``Runtime.OutOfMemory``, "Runtime exited with error: signal: killed"), no code of ours runs to say so, and
the call looks lost. Lambda reports such a failure only to the function's *on-failure destination* (SQS,
SNS, EventBridge, another function, or an S3 bucket), once its own retries are spent (``numpywren deploy``
sets them to 0). numpywren uses the store's bucket: no other service to create or to grant, and the driver
already lists that bucket. Lambda writes one JSON *invocation record* per failed event under

    aws/lambda/async/<function-name>/YYYY/MM/DD/YYYY-MM-DDTHH.MM.SS-<uuid>

(at the bucket's root: a destination is a bucket ARN, with no prefix), with the event itself
(``requestPayload``), why (``requestContext.condition``: ``RetriesExhausted``, ``EventAgeExceeded``) and the
runtime's error (``responsePayload``: ``errorType``, ``errorMessage``). Keys sort by time, so the monitor
lists from the newest it has seen (numpywren.executors.lambda_monitor), like done-markers.

What a record means for its call (``failure_error``): out of memory is a ``MemoryError`` naming the function
and its memory (permanent: the scheduler fails the job at once, as for a MemoryError inside a call); any
other runtime death a ``WorkerDiedError`` (retried like a lost call, but now, not after a sweep); an event
that aged out unrun is left to the monitor's lost-call rules (None).
"""
from __future__ import annotations

import datetime
import json

from numpywren.protocol import WorkerDiedError

#: Where Lambda writes the records of a function's failed asynchronous events in the destination bucket.
RECORDS = "aws/lambda/async/"
#: Signs of a sandbox killed for memory in a record's responsePayload.
OUT_OF_MEMORY_TYPE = "Runtime.OutOfMemory"
OUT_OF_MEMORY_MESSAGE = "Runtime exited with error: signal: killed"


def records_prefix(function_name: str) -> str:
    return f"{RECORDS}{function_name}/"


def record_key(function_name: str, when: float, uuid: str) -> str:
    """The key Lambda gives the record of an event that failed at ``when`` (epoch seconds, UTC)."""
    t = datetime.datetime.fromtimestamp(when, datetime.timezone.utc)
    return f"{records_prefix(function_name)}{t:%Y/%m/%d}/{t:%Y-%m-%dT%H.%M.%S}-{uuid}"


def records_cursor(function_name: str, when: float) -> str:
    """A key sorting before every record written at or after ``when`` (a StartAfter bound)."""
    return record_key(function_name, max(0.0, when - 1.0), "")


def bucket_arn(bucket: str) -> str:
    """The destination ARN of an S3 bucket (``DestinationConfig.OnFailure.Destination``)."""
    return f"arn:aws:s3:::{bucket}"


def parse_record(data: bytes) -> tuple[dict, str, str, str] | None:
    """(the event, condition, error type, error message) of an invocation record; None if it is not one of
    a numpywren event (the bucket is shared: anything else is not ours to interpret)."""
    try:
        record = json.loads(data)
        event = record["requestPayload"]
        condition = str(record.get("requestContext", {}).get("condition", ""))
        response = record.get("responsePayload") or {}
        if not isinstance(response, dict):
            response = {"errorMessage": str(response)}
        if not (isinstance(event, dict) and isinstance(event.get("callset"), str)
                and isinstance(event.get("call"), str) and isinstance(event.get("result"), str)):
            return None
        return event, condition, str(response.get("errorType", "")), str(response.get("errorMessage", ""))
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


def failure_error(function_name: str, memory_mb, condition: str, error_type: str,
                  message: str) -> BaseException | None:
    """What a record means for its call (see the module docstring)."""
    if condition == "EventAgeExceeded":
        return None
    what = f"{error_type}: {message}" if error_type else message
    if error_type == OUT_OF_MEMORY_TYPE or OUT_OF_MEMORY_MESSAGE in message:
        size = f"its {memory_mb:g} MB" if memory_mb else "its configured memory"
        return MemoryError(f"Lambda function {function_name!r} ran out of memory ({size}) and killed the "
                           f"call ({what}); use smaller tiles or more memory")
    return WorkerDiedError(f"Lambda reported the call failed ({condition or 'failure'}: {what})")
