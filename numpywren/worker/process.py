"""Entry point of a local worker process: ``python -m numpywren.worker.process``.

Like a Lambda container, it receives one small JSON event at a time (a line on
stdin), says ``{"started": true}``, runs ``numpywren.worker.handle`` and answers
with a small JSON status line. Its real output goes to the store. The user's
prints go to stderr so they never corrupt the event channel.
"""
from __future__ import annotations

import json
import os
import sys


def main() -> None:
    channel = os.fdopen(os.dup(1), "w", buffering=1)
    events = os.fdopen(os.dup(0), "r")
    os.dup2(2, 1)  # print() in user code now lands on stderr
    sys.stdout = sys.stderr
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)  # input() in user code sees end of file instead of eating events
    os.close(null)
    sys.stdin = os.fdopen(0, "r", closefd=False)
    from numpywren.worker.handler import handle

    for line in events:
        if not line.strip():
            continue
        event = json.loads(line)
        # Like Lambda's, the task timeout counts from the call, not from the process start (imports): the
        # driver starts its clock when it reads "started", this worker in handle (protocol.call_deadline).
        channel.write(json.dumps({"started": True}) + "\n")
        try:
            status = handle(event)
        except Exception as exc:  # noqa: BLE001 - the store itself failed; say so
            status = {"ok": False, "callset": event.get("callset"), "call": event.get("call"),
                      "error": f"{type(exc).__name__}: {exc}"}
        channel.write(json.dumps(status) + "\n")


if __name__ == "__main__":
    main()
