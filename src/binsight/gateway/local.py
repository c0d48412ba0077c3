"""A local HTTP front for the handler, standing in for API Gateway (HTTP API, payload v2).

``POST /predict`` with a JSON body (``{"url" | "s3_uri" | "bucket"+"key" | "image_b64", "expected_quantity"}``)
or a raw image body (``Content-Type: image/jpeg`` …) becomes a v2 proxy event, goes through the very same
``handle`` as in Lambda, and the proxy response's statusCode, headers and body are written back.
``GET /health`` answers ``{"status": "ok"}``. Standard library only (``http.server``).
"""

from __future__ import annotations

import base64
import json
import logging
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from binsight.gateway.handler import handle
from binsight.gateway.settings import GatewaySettings

log = logging.getLogger("binsight.gateway.local")
MAX_REQUEST_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit
TEXT_TYPES = ("application/json", "text/")
ROUTES = ("/predict",)


class LocalContext:
    """The parts of a Lambda context the handler reads."""

    function_name = "binsight-gateway-local"

    def __init__(self, request_id: str, timeout_s: float) -> None:
        self.aws_request_id = request_id
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def build_v2_event(method: str, target: str, headers: dict[str, str], body: bytes, source_ip: str) -> dict[str, Any]:
    """An API Gateway HTTP API (payload 2.0) proxy event for one HTTP request."""
    parts = urlsplit(target)
    lowered = {k.lower(): v for k, v in headers.items()}
    content_type = lowered.get("content-type", "").lower()
    text = None
    if content_type.startswith(TEXT_TYPES):
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            text = None
    request_id = str(uuid.uuid4())
    return {
        "version": "2.0",
        "routeKey": f"{method} {parts.path}",
        "rawPath": parts.path,
        "rawQueryString": parts.query,
        "headers": lowered,
        "queryStringParameters": dict(parse_qsl(parts.query)) or None,
        "requestContext": {
            "http": {"method": method, "path": parts.path, "protocol": "HTTP/1.1", "sourceIp": source_ip},
            "requestId": request_id,
            "stage": "$default",
            "timeEpoch": int(time.time() * 1000),
        },
        "body": text if text is not None else base64.b64encode(body).decode("ascii"),
        "isBase64Encoded": text is None,
    }


def make_server(host: str, port: int, settings: GatewaySettings, timeout_s: float = 60.0) -> ThreadingHTTPServer:
    """A ready (bound, not yet serving) local gateway; ``port=0`` picks a free port."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "binsight-gateway"
        timeout = 30  # seconds per socket read: a client that stalls mid-request loses its connection
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if urlsplit(self.path).path == "/health":
                self._send(200, {"Content-Type": "application/json"}, json.dumps({"status": "ok"}).encode())
            else:
                self._error(404, "not_found", "GET /health, or POST /predict")

        def do_POST(self) -> None:  # noqa: N802
            if urlsplit(self.path).path not in ROUTES:
                self._error(404, "not_found", f"no route {urlsplit(self.path).path}; POST /predict")
                return
            length = self.headers.get("Content-Length")
            if length is None or not length.isdigit():
                self._error(411, "length_required", "send a Content-Length header")
                return
            if int(length) > MAX_REQUEST_BYTES:
                self._error(413, "too_large", f"the request is over {MAX_REQUEST_BYTES} bytes")
                return
            body = self.rfile.read(int(length))
            event = build_v2_event("POST", self.path, dict(self.headers.items()), body, self.client_address[0])
            context = LocalContext(event["requestContext"]["requestId"], timeout_s)
            response = handle(event, context, settings=settings)
            payload = response.get("body", "")
            data = base64.b64decode(payload) if response.get("isBase64Encoded") else payload.encode("utf-8")
            self._send(response.get("statusCode", 500), response.get("headers", {}), data)

        def _error(self, status: int, code: str, message: str) -> None:
            rid = str(uuid.uuid4())
            body = {"error": {"code": code, "message": message, "request_id": rid}}
            self._send(status, {"Content-Type": "application/json", "X-Request-Id": rid}, json.dumps(body).encode())

        def _send(self, status: int, headers: dict[str, Any], data: bytes) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, str(value))
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
            log.debug("%s %s", self.client_address[0], format % args)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


def serve(host: str, port: int, settings: GatewaySettings) -> None:
    """Serve until interrupted (Ctrl-C stops cleanly)."""
    server = make_server(host, port, settings)
    bound_host, bound_port = server.server_address[:2]
    log.info("binsight gateway listening on http://%s:%s (POST /predict)", bound_host, bound_port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
