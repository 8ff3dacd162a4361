"""S3 (or any S3-compatible endpoint) as the store, through boto3."""
from __future__ import annotations

import email.utils
import platform
import random
import threading
import time
from contextlib import contextmanager
from datetime import datetime
from typing import Iterable, Iterator
from urllib.parse import urlencode

import boto3
import botocore
import botocore.session
import botocore.utils
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from numpywren.storage.base import (KeyNotFoundError, ObjectInfo, Payload, Store, StoreError, as_parts, check_key,
                                    store_error)

#: S3 asks for less: retried by botocore's retry modes as throttling, and counted (see throttled_requests).
SLOW_DOWN_CODES = frozenset({"SlowDown", "503", "RequestLimitExceeded", "Throttling", "ThrottlingException"})
_throttled = [0]
_throttled_lock = threading.Lock()


def throttled_requests() -> int:
    """S3 answers in this process that said "slow down" (each one retried by botocore, with backoff)."""
    return _throttled[0]


def _count_throttle(response=None, **kwargs) -> None:
    """botocore ``needs-retry`` hook: count SlowDown answers (returns None: botocore decides the retry)."""
    parsed = response[1] if isinstance(response, tuple) and len(response) > 1 else None
    if isinstance(parsed, dict) and parsed.get("Error", {}).get("Code", "") in SLOW_DOWN_CODES:
        with _throttled_lock:
            _throttled[0] += 1


def parse_timestamp(value):
    """botocore's timestamp parser, fast for S3's ISO 8601 times (a listing has one per key, and dateutil
    costs ~0.1 ms each: the driver's largest cost per listed done-marker); anything else goes to botocore's."""
    try:
        if isinstance(value, str) and value[:4].isdigit():
            return datetime.fromisoformat(value)  # listings: "2026-11-26T13:00:00.000Z" -> aware UTC datetime
        if isinstance(value, str) and value.endswith(" GMT"):
            return email.utils.parsedate_to_datetime(value)  # headers: "Thu, 26 Nov 2026 13:00:00 GMT"
    except (TypeError, ValueError):
        pass
    return botocore.utils.parse_timestamp(value)


#: One User-Agent for numpywren's clients, fixed: botocore otherwise rebuilds it for every request, twice,
#: sanitizing each character (~15% of a small request's CPU on the driver).
USER_AGENT = (f"numpywren Botocore/{botocore.__version__} "
              f"Python/{platform.python_version()} {platform.system()}/{platform.release()}")
#: Retries with adaptive backoff are botocore's job; we only choose the budget.
RETRY_CONFIG = Config(retries={"max_attempts": 10, "mode": "adaptive"}, max_pool_connections=32,
                      user_agent=USER_AGENT)
#: Seconds before retrying a conditional PUT that met 409 ConditionalRequestConflict (a concurrent write of
#: the same key in flight; AWS documents it as "retry the request"), jittered by 0.5..1.5x.
CONFLICT_DELAYS = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6)
_sleep = time.sleep
#: Opening a store checks the bucket once, quickly: a wrong URL should fail in seconds.
CHECK_CONFIG = Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=3, read_timeout=10)


class S3Store(Store):
    """Objects live under ``s3://bucket/prefix/``.

    S3 PUTs are atomic per object, and put_if_absent uses S3's conditional
    write (``If-None-Match: *``), so leases work without any other service.
    """

    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str | None = None,
                 region: str | None = None, check: bool = True):
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url
        self.region = region
        query = {k: v for k, v in (("endpoint", endpoint_url), ("region", region)) if v}
        self.url = f"s3://{bucket}/{self.prefix}" + (f"?{urlencode(query)}" if query else "")
        self._client = None
        self._client_lock = threading.Lock()
        if check:
            self._check_bucket()

    @property
    def client(self):
        # One client per store, shared by threads: boto3 clients are thread-safe
        # (sessions are not), and creating one costs tens of milliseconds.
        if self._client is None:
            with self._client_lock:
                if self._client is None:
                    self._client = self._make_client(RETRY_CONFIG)
        return self._client

    def _make_client(self, config: Config):
        session = botocore.session.get_session()
        session.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=parse_timestamp)
        client = boto3.session.Session(botocore_session=session).client(
            "s3", endpoint_url=self.endpoint_url, region_name=self.region, config=config)
        client.meta.events.register("needs-retry.s3", _count_throttle, unique_id="numpywren-count-throttle")
        return client

    def _probe(self, client, prefix: str) -> list:
        """Keys listed under ``prefix`` (at most one). A prefix listing, never HeadBucket: numpywren's
        deployed role may list only its own prefix, and that is also how missing keys are told apart."""
        reply = client.list_objects_v2(Bucket=self.bucket, Prefix=prefix, MaxKeys=1)
        return [obj["Key"] for obj in reply.get("Contents", ())]

    def _absent(self, error: ClientError, key: str) -> bool:
        """Does ``error`` (from a read of ``key``) mean the key does not exist?

        S3 answers 404 for a missing key only to callers allowed to list the
        bucket; a role that may list just its prefix gets 403 instead, so a 403
        is checked with a listing of the key itself.
        """
        code = _code(error)
        if code in ("NoSuchKey", "404", "NotFound"):
            return True
        if code in ("403", "AccessDenied"):
            try:
                return self._key(key) not in self._probe(self.client, self._key(key))
            except (ClientError, BotoCoreError):
                return False
        return False

    def _check_bucket(self) -> None:
        try:
            self._probe(self._make_client(CHECK_CONFIG), f"{self.prefix}/" if self.prefix else "")
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            if code in ("404", "NoSuchBucket", "NotFound"):
                raise StoreError(f"bucket {self.bucket!r} does not exist ({self.url})") from None
            raise StoreError(f"cannot access bucket {self.bucket!r} ({self.url}): {e}") from None
        except EndpointConnectionError as e:
            raise StoreError(f"cannot reach the S3 endpoint for {self.url}: {e}") from None
        except BotoCoreError as e:  # no credentials, bad region, ...
            raise StoreError(f"cannot open {self.url}: {e}") from None

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def fits(self, key: str) -> bool:
        return len(self._key(key).encode()) <= 1024  # S3's limit on a key, the store's prefix included

    def _body(self, data: Payload) -> bytes:
        if isinstance(data, (bytes, bytearray)):
            return data
        return b"".join(as_parts(data))  # boto3 wants one body; the network costs more than this copy

    @contextmanager
    def _errors(self, operation: str, key: str):
        """Turn whatever botocore raises into a StoreError naming the operation, key and store."""
        try:
            yield
        except (ClientError, BotoCoreError) as e:
            raise store_error(operation, key, self.url, e) from e

    def get(self, key: str, _operation: str = "get") -> bytes:
        with self._errors(_operation, key):
            try:
                return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
            except ClientError as e:
                if self._absent(e, key):
                    raise KeyNotFoundError(f"no object {key!r} in {self.url}") from None
                raise

    def get_buffer(self, key: str) -> bytes:
        return self.get(key, "get_buffer")

    def get_head(self, key: str, size: int) -> tuple[bytes, int]:
        with self._errors("get_head", key):
            try:
                reply = self.client.get_object(Bucket=self.bucket, Key=self._key(key), Range=f"bytes=0-{size - 1}")
            except ClientError as e:
                if self._absent(e, key):
                    raise KeyNotFoundError(f"no object {key!r} in {self.url}") from None
                if _code(e) == "InvalidRange":  # an empty object
                    return b"", 0
                raise
            total = reply.get("ContentRange", "").rpartition("/")[2]
            data = reply["Body"].read()
            return data, int(total) if total.isdigit() else len(data)

    def put(self, key: str, data: Payload) -> None:
        with self._errors("put", key):
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=self._body(data))

    def put_if_absent(self, key: str, data: Payload) -> bool:
        """False only on 412 PreconditionFailed (the key exists); 409 ConditionalRequestConflict means a
        concurrent write to the key was in progress, and AWS says to retry: it is retried (CONFLICT_DELAYS),
        and if it persists it is a StoreError, never "already exists" (a lease would look taken)."""
        with self._errors("put_if_absent", key):
            for delay in (*CONFLICT_DELAYS, None):
                try:
                    self.client.put_object(Bucket=self.bucket, Key=self._key(key),
                                           Body=self._body(data), IfNoneMatch="*")
                    return True
                except ClientError as e:
                    if _code(e) == "PreconditionFailed":
                        return False
                    if _code(e) != "ConditionalRequestConflict" or delay is None:
                        raise
                    _sleep(delay * (0.5 + random.random()))

    def exists(self, key: str) -> bool:
        with self._errors("exists", key):
            try:
                self.client.head_object(Bucket=self.bucket, Key=self._key(key))
                return True
            except ClientError as e:
                if not self._absent(e, key):
                    raise
            # A HEAD answers 404 with no body for a missing bucket too: only a listing tells.
            self._probe(self.client, self._key(key))
            return False

    def delete(self, key: str) -> None:
        with self._errors("delete", key):
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def delete_many(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        for start in range(0, len(keys), 1000):  # S3's batch limit
            batch = keys[start:start + 1000]
            with self._errors("delete_many", batch[0]):
                response = self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": [{"Key": self._key(k)} for k in batch], "Quiet": True})
            errors = response.get("Errors") or []  # a batch succeeds as a request even when keys fail
            if errors:
                first, strip = errors[0], len(self.prefix) + 1 if self.prefix else 0
                raise StoreError(f"delete_many {first.get('Key', '')[strip:]!r} in {self.url} failed: "
                                 f"{first.get('Code')}: {first.get('Message')}"
                                 + (f" (and {len(errors) - 1} more keys)" if len(errors) > 1 else ""))

    def list(self, prefix: str = "") -> Iterator[str]:
        return (info.key for info in self._list("list", prefix))

    def list_after(self, prefix: str, start_after: str) -> Iterator[str]:
        return (info.key for info in self._list("list", prefix, start_after))

    def list_info(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return self._list("list_info", prefix)

    def _list(self, operation: str, prefix: str, start_after: str = "") -> Iterator[ObjectInfo]:
        strip = len(self.prefix) + 1 if self.prefix else 0
        full = f"{self.prefix}/{prefix}" if self.prefix else prefix
        extra = {"StartAfter": self._key(start_after)} if start_after else {}
        with self._errors(operation, prefix):
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full, **extra):
                for obj in page.get("Contents", ()):
                    yield ObjectInfo(obj["Key"][strip:], obj["Size"], obj["LastModified"].timestamp(),
                                     obj["ETag"].strip('"'))


def _code(error: ClientError) -> str:
    return error.response.get("Error", {}).get("Code", "")
