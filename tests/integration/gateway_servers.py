"""Real loopback HTTP servers for the gateway tests.

``FakeEndpoint`` implements ARCHITECTURE.md's endpoint contract (``POST /invocations`` and
``/endpoints/{name}/invocations``, image or JSON bodies, expected quantity in the custom-attributes header)
and answers a prediction computed from the body size; it can answer an error status N times first, answer
an error always, or hang. ``ImageServer`` serves images, redirects, oversized and slow bodies for the URL
fetcher. Both record every request they receive. ``SlowDownS3`` is an S3-compatible server that answers every
request ``503 SlowDown`` (S3 throttling); ``moto_s3`` runs moto's real S3 server, and ``s3_bucket`` gives a boto3
client on a fresh bucket there (``set_aws_test_env`` first: dummy credentials).
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import socket
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from PIL import Image

LABELS = ["1", "2", "3", "4", "5"]


def make_jpeg(size: tuple[int, int] = (32, 24), color: tuple[int, int, int] = (200, 120, 40)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="JPEG", quality=85)
    return out.getvalue()


def make_png(size: tuple[int, int] = (16, 16)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (10, 200, 30)).save(out, format="PNG")
    return out.getvalue()


def bomb_png(width: int, height: int) -> bytes:
    """A few-dozen-byte PNG whose header declares ``width`` x ``height`` pixels (no real pixel data)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def corrupt_jpeg(size: tuple[int, int] = (64, 64)) -> bytes:
    """A JPEG cut three quarters in, inside its entropy-coded scan: the header reads fine, decoding fails."""
    out = io.BytesIO()
    Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3)).save(out, format="JPEG")
    data = out.getvalue()
    return data[: len(data) * 3 // 4]


def s3_record(key: str, bucket: str) -> dict:
    """One ``ObjectCreated:Put`` record of an S3 notification (``key`` as S3 sends it, URL-encoded)."""
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": "2024-05-01T12:00:00.000Z",
        "eventName": "ObjectCreated:Put",
        "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": bucket}, "object": {"key": key, "size": 10}},
    }


def aws_test_env(tmp_dir) -> dict[str, str]:
    """Environment variables giving boto3 dummy credentials and no config files from the user's home."""
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_CONFIG_FILE": str(tmp_dir / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_dir / "none"),
    }


def set_aws_test_env(monkeypatch, tmp_dir) -> None:
    """Put :func:`aws_test_env` into this process's environment for one test (``monkeypatch`` undoes it)."""
    for name, value in aws_test_env(tmp_dir).items():
        monkeypatch.setenv(name, value)


@contextlib.contextmanager
def s3_bucket(s3_url: str, bucket: str):
    """A boto3 S3 client on ``s3_url`` with ``bucket`` created; on exit the bucket is emptied and deleted.

    Credentials come from the environment (:func:`set_aws_test_env` first).
    """
    import boto3

    client = boto3.client("s3", endpoint_url=s3_url, region_name="us-east-1")
    client.create_bucket(Bucket=bucket)
    try:
        yield client
    finally:
        for item in client.list_objects_v2(Bucket=bucket).get("Contents", []):
            client.delete_object(Bucket=bucket, Key=item["Key"])
        client.delete_bucket(Bucket=bucket)


@contextlib.contextmanager
def moto_s3() -> Iterator[str]:
    """moto's S3 server on a loopback port; yields its URL."""
    from moto.server import ThreadedMotoServer

    from binsight.utils.net import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def fake_prediction(image: bytes, expected: int | None) -> dict:
    count = len(image) % 5 + 1
    probabilities = {label: (0.6 if int(label) == count else 0.1) for label in LABELS}
    prediction = {
        "predicted_label": str(count),
        "predicted_count": count,
        "confidence": 0.6,
        "probabilities": probabilities,
        "class_labels": LABELS,
        "model": {"name": "fake", "version": "test"},
        "received_bytes": len(image),
    }
    if expected is not None:
        prediction["check"] = {
            "expected_quantity": expected,
            "match": expected == count,
            "decision": "confirmed" if expected == count else "mismatch",
        }
    return prediction


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str, handler) -> None:
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, 0), handler)


class _Base:
    host = "127.0.0.1"

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.requests: list[dict] = []
        self._server = _Server(host, self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler_class(self):
        raise NotImplementedError


class _QuietHandler(BaseHTTPRequestHandler):
    """Keep-alive HTTP/1.1 and no request log on stderr: the base of every handler here."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass


class FakeEndpoint(_Base):
    """A binsight-compatible prediction endpoint on loopback."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.fail_times = 0
        self.fail_status = 503
        self.always_status: int | None = None
        self.hang_s = 0.0
        super().__init__(host)

    def _handler_class(self):
        endpoint = self

        class Handler(_QuietHandler):
            def do_GET(self) -> None:  # noqa: N802
                self._json(200 if self.path == "/ping" else 404, {"status": "ok"})

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                endpoint.requests.append({"path": self.path, "headers": headers, "body": body})
                path = urlsplit(self.path).path
                parts = path.strip("/").split("/")
                if not (
                    path == "/invocations"
                    or (len(parts) == 3 and parts[0] == "endpoints" and parts[2] == "invocations")
                ):
                    self._error(404, "not_found", f"no route {path}")
                    return
                if endpoint.hang_s:
                    time.sleep(endpoint.hang_s)
                if endpoint.fail_times > 0:
                    endpoint.fail_times -= 1
                    self._error(endpoint.fail_status, "overloaded", "try again", retry_after="0")
                    return
                if endpoint.always_status:
                    self._error(endpoint.always_status, "boom", "the endpoint failed")
                    return
                ctype = headers.get("content-type", "").split(";")[0]
                expected = None
                for part in headers.get("x-amzn-sagemaker-custom-attributes", "").split(","):
                    name, _, value = part.partition("=")
                    if name.strip() == "expected_quantity":
                        expected = int(value)
                if ctype == "application/json":
                    payload = json.loads(body)
                    image = base64.b64decode(payload["image_b64"])
                    expected = payload.get("expected_quantity", expected)
                elif ctype in ("image/jpeg", "image/png", "application/x-image"):
                    image = body
                else:
                    self._error(415, "unsupported_media_type", f"cannot read {ctype}")
                    return
                if not image:
                    self._error(400, "bad_request", "empty body")
                    return
                self._json(200, fake_prediction(image, expected))

            def _error(self, status: int, code: str, message: str, retry_after: str | None = None) -> None:
                extra = {"Retry-After": retry_after} if retry_after else {}
                self._json(status, {"error": {"code": code, "message": message}}, extra)

            def _json(self, status: int, body: dict, extra: dict | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (extra or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                with contextlib.suppress(OSError):  # the client gave up (timeout tests)
                    self.wfile.write(data)

        return Handler


class ImageServer(_Base):
    """Serves images and misbehaving responses for the URL fetcher.

    Routes: ``/img.jpg``, ``/img.png``, ``/text``, ``/bomb.png``, ``/missing`` (404), ``/redirect?to=URL``,
    ``/loop`` (redirects to itself), ``/big-nolength?n=N`` (no Content-Length, closes), ``/big-chunked?n=N``,
    ``/liar`` (declares a huge Content-Length), ``/slow?s=S`` (waits before answering).
    """

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.jpeg = make_jpeg()
        super().__init__(host)

    def _handler_class(self):
        server = self

        class Handler(_QuietHandler):
            def do_GET(self) -> None:  # noqa: N802
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                server.requests.append({"path": parts.path, "headers": {k.lower(): v for k, v in self.headers.items()}})
                route = parts.path
                try:
                    if route == "/img.jpg":
                        self._send(200, server.jpeg, "image/jpeg")
                    elif route == "/img.png":
                        self._send(200, make_png(), "image/png")
                    elif route == "/text":
                        self._send(200, b"hello, not an image", "text/plain")
                    elif route == "/bomb.png":
                        self._send(200, bomb_png(int(query.get("w", 20000)), int(query.get("h", 20000))), "image/png")
                    elif route == "/missing":
                        self._send(404, b"nope", "text/plain")
                    elif route == "/redirect":
                        self._redirect(query["to"])
                    elif route == "/loop":
                        self._redirect("/loop")
                    elif route == "/big-nolength":
                        self.send_response(200)
                        self.send_header("Content-Type", "image/jpeg")
                        self.send_header("Connection", "close")
                        self.end_headers()
                        self._stream(int(query.get("n", 1_000_000)))
                        self.close_connection = True
                    elif route == "/big-chunked":
                        self.send_response(200)
                        self.send_header("Content-Type", "image/jpeg")
                        self.send_header("Transfer-Encoding", "chunked")
                        self.end_headers()
                        left = int(query.get("n", 1_000_000))
                        while left > 0:
                            piece = b"\xff" * min(16384, left)
                            self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                            left -= len(piece)
                        self.wfile.write(b"0\r\n\r\n")
                    elif route == "/liar":
                        self.send_response(200)
                        self.send_header("Content-Type", "image/jpeg")
                        self.send_header("Content-Length", str(10**12))
                        self.end_headers()
                        self.wfile.write(server.jpeg)
                        self.close_connection = True
                    elif route == "/slow":
                        time.sleep(float(query.get("s", 5)))
                        self._send(200, server.jpeg, "image/jpeg")
                    else:
                        self._send(404, b"no route", "text/plain")
                except OSError:
                    self.close_connection = True  # the client hung up (caps and timeouts)

            def _stream(self, n: int) -> None:
                while n > 0:
                    piece = b"\xff" * min(16384, n)
                    self.wfile.write(piece)
                    n -= len(piece)

            def _redirect(self, location: str) -> None:
                self.send_response(302)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _send(self, status: int, data: bytes, ctype: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler


class SlowDownS3(_Base):
    """An S3-compatible server that throttles every request: ``503 SlowDown`` with S3's XML error body."""

    def _handler_class(self):
        server = self

        class Handler(_QuietHandler):
            def do_GET(self) -> None:  # noqa: N802
                server.requests.append({"path": urlsplit(self.path).path})
                body = (
                    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
                    b"<Message>Please reduce your request rate.</Message></Error>"
                )
                self.send_response(503)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_HEAD = do_GET  # noqa: N815

        return Handler
