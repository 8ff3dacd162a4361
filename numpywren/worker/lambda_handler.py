"""AWS Lambda's entry point (``numpywren.worker.lambda_handler.handler``): the local workers' ``handle``.

Security boundary: an event comes from whoever may invoke the function, so it is
not trusted. A deployed function serves exactly one store, ``$NUMPYWREN_STORE``
(set by ``numpywren deploy``): an event naming any other store (another bucket,
prefix, endpoint or region, or a ``file://`` URL), or keys outside ``jobs/`` of
it, is refused with :class:`ForeignStoreError` before any store is touched (no
result is written: its key is the event's). An accepted event runs against the
deployment's store, never the event's URL. On Lambda without ``NUMPYWREN_STORE``
every event is refused. Off Lambda (tests, local harnesses) the check applies
when ``NUMPYWREN_STORE`` is set.

**Stale events** are dropped: an event whose ``not_after`` time (set by the
executor when it invoked, see numpywren.executors.aws_lambda) has passed when
the handler starts was queued by Lambda longer than the driver waits for it
to start; the driver has re-invoked it or is gone. Such an event runs nothing
and writes nothing (its result key may belong to a newer invocation, and a
store that moved on must not see a late write); the handler logs one warning
line and returns ``{"ok": False, "stale": True}``. The function's maximum event
age (set low by ``numpywren deploy``) makes Lambda itself drop most of them.

**Probe events** (``{"v": 3, "kind": "probe", "store": ..., "nonce": <hex>}``, sent by
``numpywren deploy``, RequestResponse) check that a freshly deployed function
reaches its store before any job relies on it: the handler writes (conditional
write, as leases do), reads, lists and deletes one key, ``jobs/probe-<nonce>/probe``
(named by the handler, not the event), in the deployed store only, under the
same store check as every event, and answers which step failed and whether S3
denied it (IAM changes take seconds to reach S3: deploy retries those).

**Memory**: Lambda kills a sandbox that outgrows the function's memory ("Runtime exited with error:
signal: killed", ``Runtime.OutOfMemory``), which leaves no result: to the driver that is a lost call,
re-invoked, and killed again. So on Lambda the handler limits its process's data segment (``RLIMIT_DATA``,
private writable memory: tiles, kernels' workspaces) to the function's memory less ``CODE_RESERVE_MB``
(mapped code and libraries, which count against the sandbox but not against that limit), plus the address
space already reserved but never touched (which counts against the limit but not the sandbox): a task that
outgrows it fails with ``MemoryError``, reported under its result key like any error, and the scheduler
stops the job at once naming the worker's memory (retrying on a worker of the same size cannot help).

Lambda's context supplies the remaining time, so a call that cannot finish is
reported as ``TaskDeadlineError`` under its result key instead of being cut.
The overrunning call's thread would otherwise thaw with the sandbox and run on
inside the next invocation, so after such a report the process exits and
Lambda starts a clean sandbox. BLAS threads come from the function's
environment (set by ``numpywren deploy``).
"""
from __future__ import annotations

import logging
import os
import re
import threading
import time
from functools import lru_cache
from urllib.parse import parse_qs, urlparse

from numpywren.protocol import EVENT_VERSION, JOBS, probe_key, validate_event
from numpywren.worker.handler import handle

log = logging.getLogger(__name__)

EVENT_KEYS = {"call": ("func", "args", "result"), "tile": ("result",), "probe": ()}
PROBE = "probe"
#: S3 error codes meaning "not allowed" (what a role whose permissions have not propagated yet meets).
DENIED_CODES = frozenset({"AccessDenied", "403", "AccessDeniedException", "AllAccessDisabled"})


class ForeignStoreError(PermissionError):
    """The event names a store, or keys, that this deployed function does not serve: refused, nothing touched."""


def stray_calls() -> list[threading.Thread]:
    """Call threads still running after their handler returned (overran their deadline)."""
    return [t for t in threading.enumerate() if t.name == "numpywren-call" and t.is_alive()]


def store_identity(url: str) -> tuple[str, str, str | None, str | None]:
    """(bucket, prefix, endpoint, region) that ``open_store(url)`` would use here; ValueError if not ``s3://``."""
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"{url!r} is not an s3://bucket/prefix URL")
    query = {k: v[0] for k, v in parse_qs(parsed.query).items()}
    endpoint = (query.get("endpoint") or os.environ.get("NUMPYWREN_S3_ENDPOINT")
                or os.environ.get("AWS_ENDPOINT_URL"))
    region = query.get("region") or os.environ.get("AWS_DEFAULT_REGION")
    return parsed.netloc, parsed.path.strip("/"), endpoint.rstrip("/") if endpoint else None, region


@lru_cache(maxsize=4)
def _deployed_store(bucket: str, prefix: str, endpoint: str | None, region: str | None):
    from numpywren.storage.s3 import S3Store

    # No bucket check (HeadBucket): the role may list only under its prefix, so it would be denied.
    return S3Store(bucket, prefix, endpoint_url=endpoint, region=region, check=False)


def check_event(event: dict, deployed_url: str | None):
    """The store an event may use: the deployed one, if the event names it; else ForeignStoreError.

    Returns None off Lambda when no store is deployed (the event's own store is used).
    """
    on_lambda = bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME"))
    if not deployed_url:
        if on_lambda:
            raise ForeignStoreError("refused: NUMPYWREN_STORE is not set, so this function serves no store; "
                                    "redeploy with `numpywren deploy` or set NUMPYWREN_STORE=s3://bucket/prefix "
                                    "in the function's environment")
        return None
    try:
        deployed = store_identity(deployed_url)
    except ValueError as e:
        raise ForeignStoreError(f"refused: NUMPYWREN_STORE {deployed_url!r} is not an s3://bucket/prefix URL; "
                                f"redeploy with `numpywren deploy`") from e
    url = event.get("store")
    try:
        named = store_identity(url) if isinstance(url, str) else None
    except ValueError:
        named = None
    if named != deployed:
        raise ForeignStoreError(f"refused: event store {url!r} is not this function's store {deployed_url!r} "
                                f"(bucket, prefix, endpoint and region must match); nothing was read or written")
    for field in EVENT_KEYS.get(event.get("kind"), EVENT_KEYS["call"]):
        key = event.get(field)
        parts = key.split("/") if isinstance(key, str) else [""]
        if parts[0] != JOBS or len(parts) < 2 or any(p in ("", ".", "..") for p in parts):
            raise ForeignStoreError(f"refused: event {field} key {key!r} is not under {JOBS}/ of the "
                                    f"store; nothing was read or written")
    if event.get("kind") == "tile":  # the matrices a tile task names must live in the same store
        task = event.get("task")
        refs = task.get("m") if isinstance(task, dict) else None
        for ref in refs if isinstance(refs, list) else [None]:
            url = ref.get("store") if isinstance(ref, dict) else None
            try:
                same = isinstance(url, str) and store_identity(url) == deployed
            except ValueError:
                same = False
            if not same:
                raise ForeignStoreError(f"refused: the task names a matrix in store {url!r}, not this function's "
                                        f"store {deployed_url!r}; nothing was read or written")
    return _deployed_store(*deployed)


def stale_seconds(event: dict, now: float | None = None) -> float:
    """Seconds past the event's ``not_after`` (0 if it has none or is on time)."""
    not_after = event.get("not_after")
    return 0.0 if not_after is None else max(0.0, (time.time() if now is None else now) - not_after)


#: S3 conditional writes (``If-None-Match`` on PutObject, used by leases and put_if_absent) arrived in
#: botocore 1.35.2 (its changelog: "api-change:``s3``: ... conditional writes"); 1.35.0 and 1.35.1 would send
#: ``IfNoneMatch`` nowhere: the parameter does not exist there and every task would fail on its first lease.
MIN_BOTOCORE = (1, 35, 2)


class OldSdkError(RuntimeError):
    """The runtime's botocore cannot make conditional writes: every tile task would fail."""


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for p in text.split(".")[:3]:
        m = re.match(r"\d+", p)
        if not m:
            break
        parts.append(int(m.group()))
    if not parts:
        raise ValueError(text)
    return tuple(parts) + (0,) * (3 - len(parts))


@lru_cache(maxsize=8)
def check_sdk(version: str) -> None:
    """Refuse to run with a botocore older than MIN_BOTOCORE, saying what to do."""
    try:
        have = _version(version)
    except ValueError:
        return  # a version we cannot read: let the calls themselves tell
    if have < MIN_BOTOCORE:
        raise OldSdkError(f"this Lambda runtime's botocore {version} predates S3 conditional writes "
                          f"(botocore >= {'.'.join(map(str, MIN_BOTOCORE))}), which numpywren's leases need: "
                          f"rebuild the layer with the SDK inside (numpywren layer build --with-sdk) and redeploy "
                          f"(numpywren deploy --layer-zip ...)")


def _denied(exc: BaseException | None) -> bool:
    """Did S3 refuse the request (anywhere in the exception's chain of causes)?"""
    while exc is not None:
        response = getattr(exc, "response", None)
        if isinstance(response, dict) and response.get("Error", {}).get("Code") in DENIED_CODES:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def probe(event: dict, deployed_url: str | None) -> dict:
    """Write, read, list and delete ``jobs/probe-<nonce>/probe`` in the deployed store; say what failed."""
    nonce = event.get("nonce")
    if event.get("v") != EVENT_VERSION or not isinstance(nonce, str) or not re.fullmatch(r"[0-9a-f]{16,32}", nonce):
        raise ValueError("malformed numpywren probe event: needs v, store and a nonce of 16-32 hex digits")
    store = check_event(event, deployed_url)
    if store is None:  # off Lambda with no deployed store (tests): the event's own, as for any event
        from numpywren.storage import open_store

        store = open_store(event["store"])
    key, body = probe_key(nonce), nonce.encode()

    def write():
        if not store.put_if_absent(key, body):
            raise RuntimeError(f"probe key {key} already exists")

    def read():
        if store.get(key) != body:
            raise RuntimeError(f"probe key {key} read back different bytes")

    def listed():
        if key not in store.list(key.rpartition("/")[0] + "/"):
            raise RuntimeError(f"probe key {key} is missing from the listing of its folder")

    for step, action in (("write", write), ("read", read), ("list", listed), ("delete", lambda: store.delete(key))):
        try:
            action()
        except Exception as exc:  # noqa: BLE001 - the answer says what failed; deploy decides
            if step != "write":
                try:
                    store.delete(key)
                except Exception:  # noqa: BLE001 - denied too: store gc removes it later
                    pass
            return {"ok": False, "probe": nonce, "step": step, "error": f"{type(exc).__name__}: {exc}",
                    "denied": _denied(exc)}
    return {"ok": True, "probe": nonce, "store": store.url}


#: Lambda's own setting in every sandbox's environment: the function's memory, MB.
MEMORY_ENV = "AWS_LAMBDA_FUNCTION_MEMORY_SIZE"
#: Of the function's memory, what mapped code and libraries take (a worker's VmLib is about 70 MB): they count
#: against the sandbox's memory, not against RLIMIT_DATA.
CODE_RESERVE_MB = 96


def reserved_unused_bytes() -> int:
    """Data-segment address space this process has reserved but not touched (malloc arenas, thread stacks,
    BLAS buffers: VmData less RssAnon, about 200 MB after numpy's import): RLIMIT_DATA counts it, the
    sandbox's memory does not, so the limit adds it back (else the planner's bound, the function's memory
    less ``memory.RUNTIME_MB``, would be cut short by it)."""
    try:
        with open("/proc/self/status") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        return max(0, int(fields["VmData"].split()[0]) - int(fields["RssAnon"].split()[0])) * 1024
    except (OSError, KeyError, ValueError, IndexError):
        return 0


@lru_cache(maxsize=1)
def guard_memory(memory_mb: str | None) -> int | None:
    """Limit this process's data segment to the function's memory less its code (module docstring) plus what
    it has reserved but not used, once per sandbox; only ever lowers the soft limit. Returns the limit in
    bytes (None: not on Lambda)."""
    import resource

    try:
        limit = (int(memory_mb) - CODE_RESERVE_MB) * 2 ** 20 + reserved_unused_bytes()
    except (TypeError, ValueError):
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    if limit <= 0 or (soft != resource.RLIM_INFINITY and soft <= limit):
        return None if soft == resource.RLIM_INFINITY else soft
    resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))
    return limit


def handler(event: dict, context=None) -> dict:
    import botocore

    check_sdk(botocore.__version__)
    guard_memory(os.environ.get(MEMORY_ENV))
    if isinstance(event, dict) and event.get("kind") == PROBE:
        return probe(event, os.environ.get("NUMPYWREN_STORE"))
    store = check_event(event, os.environ.get("NUMPYWREN_STORE"))
    validate_event(event)
    late = stale_seconds(event)
    if late > 0:
        log.warning("dropped stale event %s/%s: started %.1f s after its not_after time; nothing run or written",
                    event["callset"], event["call"], late)
        return {"ok": False, "stale": True, "callset": event["callset"], "call": event["call"], "seconds": 0.0}
    status = handle(event, context, store=store)
    if os.environ.get("AWS_LAMBDA_FUNCTION_NAME") and stray_calls():
        os._exit(1)  # on Lambda only: the outcome is already in S3; drop this sandbox
    return status
