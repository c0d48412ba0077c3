"""Fetch images safely: from a URL (SSRF-hardened) or from S3.

URL rules: ``http``/``https`` only; the host is resolved once and EVERY resolved address is checked before
any connection (see ``addresses``); the connection goes to the checked address (no second DNS lookup, so no
DNS rebinding) with the Host header and TLS SNI/certificate check still using the name; every redirect is
checked the same way, at most ``max_redirects`` of them; the body is capped while streaming, whatever
Content-Length says; connect, read and total timeouts apply. The total deadline holds against a source that
trickles bytes (each of which would reset a read timeout): a watchdog shuts the connection down when it
passes. Proxy environment variables are ignored.

Errors are marked retryable (see ``errors``) when the source is only failing for now: a timeout, a connection
failure, HTTP 429/5xx, S3 5xx / SlowDown / throttling; a 4xx, a missing object or a bad TLS certificate is
permanent.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

from binsight.gateway.addresses import IPAddress, check_address, parse_ip
from binsight.gateway.errors import (
    BadRequest,
    Forbidden,
    GatewayError,
    NotFound,
    TooLarge,
    UpstreamError,
    UpstreamTimeout,
)
from binsight.gateway.settings import FetchPolicy

REDIRECT_STATUSES = {301, 302, 303, 307, 308}
# S3 error codes that mean "try again later" (botocore already retried them, with backoff, before we see them).
S3_TRANSIENT_CODES = {
    "SlowDown",
    "ServiceUnavailable",
    "InternalError",
    "RequestTimeout",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
}
CHUNK = 64 * 1024
USER_AGENT = "binsight-gateway/1"


@dataclass(frozen=True)
class Target:
    """A parsed, validated URL."""

    scheme: str
    host: str
    port: int
    path: str


@dataclass
class Fetched:
    """Bytes of a fetched object plus what its source said about it."""

    data: bytes
    content_type: str = ""
    metadata: dict[str, str] = field(default_factory=dict)


def parse_target(url: str) -> Target:
    """Validate ``url`` (http/https, a host, no credentials) and split it."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise BadRequest(f"invalid URL {url[:200]!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise BadRequest(f"only http and https URLs are fetched, got {scheme or 'no scheme'!r}")
    if not parts.hostname:
        raise BadRequest(f"the URL {url[:200]!r} has no host")
    if parts.username is not None or parts.password is not None:
        raise BadRequest("URLs with user:password@ credentials are not fetched")
    path = urlunsplit(("", "", parts.path or "/", parts.query, ""))
    return Target(scheme, parts.hostname, port or (443 if scheme == "https" else 80), path)


def resolve(host: str, port: int) -> list[IPAddress]:
    """All addresses ``host`` resolves to (a literal IP resolves to itself without DNS)."""
    literal = parse_ip(host)
    if literal is not None:
        return [literal]
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise BadRequest(
            f"cannot resolve host {host[:200]!r}: {getattr(exc, 'strerror', None) or exc}", code="unresolvable_host"
        ) from None
    addresses: list[IPAddress] = []
    for info in infos:
        ip = parse_ip(str(info[4][0]))
        if ip is not None and ip not in addresses:
            addresses.append(ip)
    if not addresses:
        raise BadRequest(f"host {host!r} has no IP address", code="unresolvable_host")
    return addresses


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection to a fixed, already-checked IP; the Host header still names the host.

    A watchdog shuts the socket down at ``deadline`` (a ``time.monotonic()`` value), which ends any blocked
    read; :attr:`expired` then says why the connection broke.
    """

    def __init__(self, host: str, port: int, ip: IPAddress, policy: FetchPolicy, deadline: float) -> None:
        left = max(0.01, deadline - time.monotonic())
        super().__init__(host, port, timeout=min(policy.connect_timeout, left))
        self._ip = str(ip)
        self._read_timeout = policy.read_timeout
        self._deadline = deadline
        self._watchdog: threading.Timer | None = None
        self.expired = False

    def _open_socket(self) -> socket.socket:
        sock = socket.create_connection((self._ip, self.port), self.timeout)
        sock.settimeout(min(self._read_timeout, max(0.01, self._deadline - time.monotonic())))
        self._watchdog = threading.Timer(max(0.0, self._deadline - time.monotonic()), self._expire, (sock,))
        self._watchdog.daemon = True
        self._watchdog.start()
        return sock

    def _expire(self, sock: socket.socket) -> None:
        self.expired = True
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)

    def connect(self) -> None:
        self.sock = self._open_socket()

    def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        super().close()


class _PinnedHTTPSConnection(_PinnedHTTPConnection):
    """HTTPS to a fixed IP with SNI and certificate verification against the host name."""

    default_port = 443

    def __init__(self, host: str, port: int, ip: IPAddress, policy: FetchPolicy, deadline: float) -> None:
        super().__init__(host, port, ip, policy, deadline)
        self._context = ssl.create_default_context()

    def connect(self) -> None:
        self.sock = self._context.wrap_socket(self._open_socket(), server_hostname=self.host)


def fetch_url(url: str, policy: FetchPolicy) -> Fetched:
    """GET ``url`` under ``policy``: address checks on every hop, capped body, timeouts.

    Raises:
        GatewayError: 400 bad URL / too many redirects, 403 refused address, 404 not found at the source,
            413 over ``max_bytes``, 502 source unreachable or erroring, 504 source timeout.
    """
    deadline = time.monotonic() + policy.total_timeout
    current = url
    for _hop in range(policy.max_redirects + 1):
        target = parse_target(current)
        addresses = resolve(target.host, target.port)
        for ip in addresses:
            check_address(ip, target.host, policy)
        conn, response = _open(target, addresses, policy, deadline)
        try:
            if response.status in REDIRECT_STATUSES:
                location = response.getheader("Location")
                if not location:
                    raise UpstreamError(
                        f"{target.host} answered HTTP {response.status} without a Location", code="source_error"
                    )
                current = urljoin(current, location)
                continue
            if response.status in (404, 410):
                raise NotFound(f"{target.host} answered HTTP {response.status}: the image does not exist")
            if response.status != 200:
                raise UpstreamError(
                    f"{target.host} answered HTTP {response.status}",
                    code="source_error",
                    retryable=response.status == 429 or response.status >= 500,
                )
            data = _read_capped(response, policy.max_bytes, deadline, target.host)
            if conn.expired:
                raise TimeoutError
            return Fetched(data, content_type=response.getheader("Content-Type", ""))
        except TimeoutError:
            raise _too_slow(target.host, policy) from None
        except (OSError, http.client.HTTPException) as exc:
            if conn.expired:
                raise _too_slow(target.host, policy) from None
            raise UpstreamError(
                f"reading from {target.host} failed: {exc}", code="source_error", retryable=True
            ) from None
        finally:
            conn.close()
    raise BadRequest(f"more than {policy.max_redirects} redirects", code="too_many_redirects")


def _too_slow(host: str, policy: FetchPolicy) -> UpstreamTimeout:
    return UpstreamTimeout(f"{host} did not send the image within {policy.total_timeout:g} s", code="source_timeout")


def _open(
    target: Target, addresses: list[IPAddress], policy: FetchPolicy, deadline: float
) -> tuple[_PinnedHTTPConnection, http.client.HTTPResponse]:
    cls = _PinnedHTTPSConnection if target.scheme == "https" else _PinnedHTTPConnection
    last: Exception | None = None
    for ip in addresses:
        if time.monotonic() >= deadline:
            raise _too_slow(target.host, policy)
        conn = cls(target.host, target.port, ip, policy, deadline)
        try:
            conn.request(
                "GET",
                target.path,
                headers={"User-Agent": USER_AGENT, "Accept": "image/*", "Accept-Encoding": "identity"},
            )
            return conn, conn.getresponse()
        except TimeoutError:
            conn.close()
            raise UpstreamTimeout(f"{target.host} did not answer in time", code="source_timeout") from None
        except ssl.SSLError as exc:
            conn.close()
            raise UpstreamError(f"TLS with {target.host} failed: {exc}", code="source_error") from None
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            if conn.expired:
                raise _too_slow(target.host, policy) from None
            last = exc
    reason = last.strerror if isinstance(last, OSError) and last.strerror else type(last).__name__
    raise UpstreamError(f"cannot connect to {target.host}: {reason}", code="source_unreachable", retryable=True)


def _read_capped(response: http.client.HTTPResponse, max_bytes: int, deadline: float, host: str) -> bytes:
    declared = (response.getheader("Content-Length") or "").strip()
    if declared.isascii() and declared.isdigit() and len(declared) < 19 and int(declared) > max_bytes:
        raise TooLarge(f"{host} declares {int(declared)} bytes, over the {max_bytes}-byte limit")
    buffer = bytearray()
    while True:
        if time.monotonic() > deadline:
            raise UpstreamTimeout(f"{host} is sending the image too slowly", code="source_timeout")
        chunk = response.read1(CHUNK)  # returns what one read gives: a trickle cannot hold it for 64 KB
        if not chunk:
            break
        buffer += chunk
        if len(buffer) > max_bytes:
            raise TooLarge(f"the image from {host} is over the {max_bytes}-byte limit")
    return bytes(buffer)


def fetch_s3(bucket: str, key: str, max_bytes: int, s3_client: Any) -> Fetched:
    """Download ``s3://bucket/key`` with a size cap (ContentLength first, then while streaming).

    Raises:
        GatewayError: 404 missing object or bucket, 403 access denied, 413 over ``max_bytes``, 502/504 S3
            errors and timeouts (retryable when S3 was only busy or unreachable).
    """
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        ReadTimeoutError,
    )

    where = f"s3://{bucket}/{key}"
    try:
        response = s3_client.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        raise _s3_error(exc, where) from None
    except (ConnectTimeoutError, ReadTimeoutError):
        raise UpstreamTimeout(f"S3 did not answer in time for {where}", code="s3_timeout") from None
    except (EndpointConnectionError, ConnectionClosedError) as exc:
        raise UpstreamError(f"cannot reach S3 for {where}: {exc}", code="s3_error", retryable=True) from None
    except BotoCoreError as exc:  # no credentials, bad parameters …: retrying cannot help
        raise UpstreamError(f"cannot read {where}: {exc}", code="s3_error") from None
    body = response["Body"]
    try:
        length = response.get("ContentLength")
        if isinstance(length, int) and length > max_bytes:
            raise TooLarge(f"{where} is {length} bytes, over the {max_bytes}-byte limit")
        buffer = bytearray()
        while chunk := body.read(CHUNK):
            buffer += chunk
            if len(buffer) > max_bytes:
                raise TooLarge(f"{where} is over the {max_bytes}-byte limit")
    except ReadTimeoutError:
        raise UpstreamTimeout(f"S3 stalled while sending {where}", code="s3_timeout") from None
    except (BotoCoreError, OSError) as exc:  # the stream broke off midway
        raise UpstreamError(f"reading {where} failed: {exc}", code="s3_error", retryable=True) from None
    finally:
        body.close()
    metadata = {str(k).lower(): str(v) for k, v in (response.get("Metadata") or {}).items()}
    return Fetched(bytes(buffer), content_type=response.get("ContentType", ""), metadata=metadata)


def _s3_error(exc: Any, where: str) -> GatewayError:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code in ("NoSuchKey", "NoSuchBucket", "404", "NotFound") or status == 404:
        what = "bucket" if code == "NoSuchBucket" else "object"
        return NotFound(f"{where}: no such {what}")
    if code in ("AccessDenied", "403", "Forbidden") or status == 403:
        return Forbidden(
            f"{where}: access denied (the function's role needs s3:GetObject, and s3:ListBucket to tell a "
            "missing key from a forbidden one)",
            code="access_denied",
        )
    transient = code in S3_TRANSIENT_CODES or (isinstance(status, int) and status >= 500)
    return UpstreamError(
        f"{where}: S3 answered {code or status}: {error.get('Message', '')}", code="s3_error", retryable=transient
    )
