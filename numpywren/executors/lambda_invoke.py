"""Asynchronous Lambda invokes at under half of botocore's CPU per call: the driver's main per-task cost.

botocore's client spends ~1.5 ms of CPU per ``invoke`` here (twenty event hooks,
serializing, the retry handler, parsing a reply, a URL parsed twice), about 3/4
of the driver's CPU per started task (benchmarks/lambda_driver.py). Yet an
asynchronous invoke of one function is one fixed request: a POST of the event to
the URL botocore builds for it, header ``X-Amz-Invocation-Type: Event``, answered
``202 Accepted`` with no body. ``EventInvoker`` sends the first invoke through
the client and records what it sent (a ``before-send`` hook: the URL, and the
region and service of its signature; nothing about the endpoint is re-derived
here); every later invoke is that request signed by botocore's own SigV4 signer
with the session's credentials (refreshed as botocore refreshes them) and sent on
a urllib3 connection pool. Anything but 202 (a throttle, an error, a connection
failure) sends the call again through the client, so retries, backoff, error
codes and messages are botocore's; the fast path then rests for
``REST_SECONDS``. A request that failed after it was sent may have been
accepted: as with botocore's own retries, the call can then run twice, which is
harmless (workers write only final keys; see numpywren.protocol).

The fast path is used only where it sends what the client would and behaves as
it does (``why_not_fast`` names the reason otherwise): no proxy applies to the
endpoint, no client certificate, no TCP keep-alive option, no ``adaptive`` retry
mode (its client-wide rate limiter is a hook the fast path would skip), and not
inside a Lambda function (botocore adds the trace header Lambda's recursive-loop
detection reads). TLS is verified against the CA bundle botocore would use
(``AWS_CA_BUNDLE``/``ca_bundle``, else ``REQUESTS_CA_BUNDLE``, else botocore's
default). The client must be this invoker's own: it learns from the first
asynchronous invoke the client sends.
"""
from __future__ import annotations

import logging
import os
import re
import threading
import time

import urllib3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.httpsession import get_cert_path
from botocore.utils import get_environ_proxies

log = logging.getLogger(__name__)

#: Seconds the fast path rests after Lambda refused one of its requests (the client's retries take over).
REST_SECONDS = 1.0


def ca_bundle(session) -> str:
    """The CA bundle botocore verifies TLS with: the session's ``ca_bundle`` (AWS_CA_BUNDLE), else
    REQUESTS_CA_BUNDLE, else its default (certifi's)."""
    return get_cert_path(session.get_config_variable("ca_bundle") or os.environ.get("REQUESTS_CA_BUNDLE") or True)


class EventInvoker:
    """``invoke(payload)``: one asynchronous invoke of ``function_name``; raises what ``client.invoke`` raises.

    ``session`` is the botocore session ``client`` was made from (credentials, CA bundle); timeouts, pool size
    and User-Agent are the client's.
    """

    def __init__(self, session, client, function_name: str):
        self._session, self._client, self._function = session, client, function_name
        self._url: str | None = None   # learned from the client's first asynchronous invoke ...
        self._target = ""              # ... its path and query, what the request line carries
        self._scope = ("", "")         # ... and the region and service its signature named
        self._pool = None
        self._rest_until = 0.0
        self._lock = threading.Lock()
        self.why_not_fast = self._obstacle(client)
        if self.why_not_fast:
            log.debug("asynchronous invokes go through botocore's client: %s", self.why_not_fast)
        else:
            client.meta.events.register("before-send.lambda.Invoke", self._learn)

    @staticmethod
    def _obstacle(client) -> str | None:
        """Why the fast path would not send what the client sends, or not behave as it does (None: nothing)."""
        config = client.meta.config
        if config.proxies or get_environ_proxies(client.meta.endpoint_url):
            return "a proxy applies to the Lambda endpoint"
        if config.client_cert:
            return "the client presents a certificate"
        if config.tcp_keepalive:
            return "TCP keep-alive is configured"
        if (config.retries or {}).get("mode") == "adaptive":
            return "adaptive retry mode rate-limits every request of the client"
        if "AWS_LAMBDA_FUNCTION_NAME" in os.environ:
            return "inside Lambda botocore adds the trace header of recursive-loop detection"
        return None

    def invoke(self, payload: bytes) -> bool:
        """Deliver the event; True if the fast path did, False if the client did."""
        if self._url is not None and time.monotonic() >= self._rest_until and self._send_fast(payload):
            return True
        self._client.invoke(FunctionName=self._function, InvocationType="Event", Payload=payload)
        return False

    def _learn(self, request, **_) -> None:
        """before-send hook: remember an asynchronous invoke as the client sent it (and send it unchanged)."""
        if self._url is not None or request.headers.get("X-Amz-Invocation-Type") not in ("Event", b"Event"):
            return
        auth = request.headers.get("Authorization") or b""
        scope = re.search(r"Credential=[^/,]+/\d{8}/([^/,]+)/([^/,]+)/aws4_request",
                          auth.decode() if isinstance(auth, bytes) else auth)
        if scope is None:
            return  # not signed with SigV4 as expected: stay with the client
        config = self._client.meta.config
        tls = {"ca_certs": ca_bundle(self._session)} if request.url.startswith("https:") else {}
        pool = urllib3.connection_from_url(
            request.url, maxsize=config.max_pool_connections,
            timeout=urllib3.Timeout(connect=config.connect_timeout, read=config.read_timeout), **tls)
        with self._lock:
            if self._url is None:
                self._pool, self._target = pool, urllib3.util.parse_url(request.url).request_uri
                self._scope = scope.groups()
                self._url = request.url

    def _send_fast(self, payload: bytes) -> bool:
        """Sign and send; True if Lambda accepted the event (202)."""
        request = AWSRequest("POST", self._url, data=payload, headers={
            "X-Amz-Invocation-Type": "Event", "User-Agent": self._client.meta.config.user_agent})
        credentials = self._session.get_credentials()
        if credentials is None:
            return False  # the client raises NoCredentialsError with its own message
        region, service = self._scope
        SigV4Auth(credentials.get_frozen_credentials(), service, region).add_auth(request)
        try:
            reply = self._pool.urlopen("POST", self._target, body=payload, headers=dict(request.headers.items()),
                                       retries=False, redirect=False)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            log.debug("fast invoke failed (%r): sending it through the client", exc)
            reply = None
        if reply is not None and reply.status == 202:
            return True
        if reply is not None:
            log.debug("fast invoke answered %d: sending it through the client", reply.status)
        self._rest_until = time.monotonic() + REST_SECONDS
        return False

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
