"""The endpoint's front door: a small ASGI reverse proxy on the endpoint's stable port.

It forwards every request to the current model server (a ``binsight serve`` child on a private port). The
supervisor swaps the current backend atomically (one attribute assignment in the event loop), so an update
is invisible to clients: requests already sent to the old server finish there (its in-flight counter tells
the supervisor when it may stop it), new ones go to the new server.

``GET /ping`` answers 200 only when the current backend's ``/ping`` is 200; while the server is down or
restarting, every request gets a JSON 503 (SageMaker's "not ready" answer) instead of a dropped connection.
"""

from __future__ import annotations

import json
import logging
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

log = logging.getLogger("binsight.endpoint")

# Hop-by-hop headers (RFC 9110 §7.6.1) plus the ones httpx/uvicorn recompute.
_DROP_REQUEST = {"host", "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
                 "upgrade", "content-length", "accept-encoding"}  # fmt: skip
_DROP_RESPONSE = {"connection", "keep-alive", "transfer-encoding", "content-length", "server", "date"}


@dataclass(eq=False)
class Backend:
    """One ``binsight serve`` child process behind the proxy."""

    port: int
    config_name: str
    proc: subprocess.Popen | None = None
    inflight: int = 0
    started_at: float = 0.0
    log_offset: int = 0
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def _json(status: int, body: dict[str, Any]) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    data = json.dumps(body).encode()
    return status, [(b"content-type", b"application/json")], data


def unavailable(message: str) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    return _json(503, {"error": {"code": "unavailable", "message": message}})


class ReverseProxy:
    """ASGI app forwarding to ``self.backend``; the supervisor assigns a new backend to switch."""

    def __init__(self, endpoint: str, request_timeout: float = 65.0, on_error: Callable[[], None] | None = None):
        self.endpoint = endpoint
        self.backend: Backend | None = None
        self.on_error = on_error
        # retries=1 re-tries only a failed *connect* (nothing was sent), so it is safe for POST too.
        self.client = httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(retries=1),
            timeout=httpx.Timeout(request_timeout, connect=2.0),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=16, keepalive_expiry=5.0),
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        status, headers, content = await self.forward(scope, bytes(body))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})

    async def forward(self, scope: dict, body: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        backend = self.backend
        if backend is None:
            return unavailable(f"endpoint {self.endpoint!r} has no model server yet")
        if not backend.alive:
            return unavailable(f"the model server of endpoint {self.endpoint!r} is down; it is being restarted")
        path = scope.get("raw_path") or scope["path"].encode()
        query = scope.get("query_string") or b""
        url = backend.url + path.decode("latin-1") + ("?" + query.decode("latin-1") if query else "")
        headers = [(k, v) for k, v in scope["headers"] if k.decode("latin-1").lower() not in _DROP_REQUEST]
        backend.inflight += 1
        try:
            resp = await self.client.request(scope["method"], url, headers=headers, content=body)
        except httpx.HTTPError as exc:
            if self.on_error:
                self.on_error()
            log.warning("%s %s via backend :%d failed: %s", scope["method"], scope["path"], backend.port, exc)
            return unavailable(f"the model server of endpoint {self.endpoint!r} is unreachable ({type(exc).__name__})")
        finally:
            backend.inflight -= 1
        out = [(k, v) for k, v in resp.headers.raw if k.decode("latin-1").lower() not in _DROP_RESPONSE]
        return resp.status_code, out, resp.content
