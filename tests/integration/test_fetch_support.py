"""Shared helpers for the fetch tests: a real S3 server (moto) on loopback with a public bucket, tiny real JPEGs,
and a small S3-like HTTP server that fails on purpose (503s, connections cut mid-body).

No tests live here; ``tests/e2e/test_cli_fetch.py`` imports these helpers too.
"""

from __future__ import annotations

import io
import json
import re
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

BUCKET = "aft-vbi-pds"
DUMMY_CREDS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def make_jpeg(seed: int, size: int = 48) -> bytes:
    """A small real JPEG, different for every seed."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def make_metadata(image_id: str, quantity: int) -> bytes:
    """Metadata shaped like the public bucket's."""
    asin = f"B{int(image_id):09d}"
    meta = {
        "BIN_FCSKU_DATA": {
            asin: {
                "asin": asin,
                "name": f"item {image_id}",
                "normalizedName": f"item {image_id}",
                "quantity": quantity,
                "weight": {"unit": "pounds", "value": 0.5},
            }
        },
        "EXPECTED_QUANTITY": quantity,
        "image_fname": f"{image_id}.jpg",
    }
    return json.dumps(meta).encode()


def dataset_objects(ids: list[str]) -> dict[str, bytes]:
    """Both objects of every id: ``{key: bytes}``."""
    objects = {}
    for n, image_id in enumerate(ids):
        objects[f"bin-images/{image_id}.jpg"] = make_jpeg(int(image_id))
        objects[f"metadata/{image_id}.json"] = make_metadata(image_id, n % 5 + 1)
    return objects


class MotoS3:
    """moto's real S3 server on 127.0.0.1 with a public-read bucket (anonymous GETs allowed, like aft-vbi-pds)."""

    def __init__(self, port: int = 0):
        from moto.server import ThreadedMotoServer

        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self.server.start()
        host, self.port = self.server.get_host_and_port()
        self.url = f"http://{host}:{self.port}"

    def stop(self) -> None:
        self.server.stop()

    def admin_client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.url, region_name="us-east-1", **DUMMY_CREDS)

    def reset(self) -> None:
        """Forget every bucket (moto keeps state per process)."""
        urllib.request.urlopen(urllib.request.Request(f"{self.url}/moto-api/reset", method="POST"), timeout=10)

    def seed(self, objects: dict[str, bytes], *, deny: tuple[str, ...] = (), public: bool = True) -> None:
        """Create the bucket and upload ``objects``. Public unless ``public=False``; keys in ``deny`` stay private
        (403 to anonymous requests)."""
        client = self.admin_client()
        client.create_bucket(Bucket=BUCKET)
        for key, body in objects.items():
            client.put_object(Bucket=BUCKET, Key=key, Body=body)
        if not public:
            return
        statements = [
            {
                "Effect": "Allow",
                "Principal": "*",
                "Action": ["s3:GetObject", "s3:ListBucket"],
                "Resource": [f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"],
            }
        ]
        if deny:
            statements.append(
                {
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:GetObject",
                    "Resource": [f"arn:aws:s3:::{BUCKET}/{key}" for key in deny],
                }
            )
        client.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps({"Version": "2012-10-17", "Statement": statements}))


def write_udacity_list(path: Path, ids: list[str]) -> Path:
    """A file_list.json like Udacity's: class label → metadata paths (one entry names the JPEG instead)."""
    groups: dict[str, list[str]] = {}
    for n, image_id in enumerate(ids):
        entry = f"bin-images/{image_id}.jpg" if n == 0 else f"metadata/{image_id}.json"
        groups.setdefault(str(n % 5 + 1), []).append(entry)
    path.write_text(json.dumps(groups))
    return path


def assert_dataset_equals(root: Path, objects: dict[str, bytes]) -> None:
    """Every object is in ``root`` byte for byte, and no ``.part`` is left over."""
    for key, body in objects.items():
        assert (root / key).read_bytes() == body, key
    assert not list(root.rglob("*.part"))


class FlakyS3:
    """A minimal S3-like server (path-style GET with Range) on loopback that misbehaves on request.

    ``faults[key]`` is a list consumed one request at a time: ``"503"`` answers SlowDown, ``"cut"`` sends the
    headers of the full answer and half of its body, then closes the connection. ``requests`` records
    ``(key, Range header)`` of every GET.
    """

    def __init__(self, objects: dict[str, bytes], faults: dict[str, list[str]] | None = None):
        self.objects = objects
        self.faults = {k: list(v) for k, v in (faults or {}).items()}
        self.requests: list[tuple[str, str | None]] = []
        self._lock = threading.Lock()
        store = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):
                store._handle(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        key = h.path.split("?", 1)[0].removeprefix(f"/{BUCKET}/")
        range_header = h.headers.get("Range")
        with self._lock:
            self.requests.append((key, range_header))
            fault = self.faults.get(key, []).pop(0) if self.faults.get(key) else None
        if key not in self.objects:
            return self._error(h, 404, "NoSuchKey", "The specified key does not exist.")
        if fault == "503":
            return self._error(h, 503, "SlowDown", "Please reduce your request rate.")
        body = self.objects[key]
        start = 0
        status = 200
        match = re.match(r"bytes=(\d+)-$", range_header or "")
        if match:
            start = int(match.group(1))
            if start >= len(body):
                return self._error(h, 416, "InvalidRange", "The requested range is not satisfiable")
            status = 206
        payload = body[start:]
        h.send_response(status)
        h.send_header("Content-Type", "application/octet-stream")
        h.send_header("Content-Length", str(len(payload)))
        h.send_header("ETag", '"0"')
        if status == 206:
            h.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        if fault == "cut":
            h.send_header("Connection", "close")
        h.end_headers()
        if fault == "cut":
            h.wfile.write(payload[: len(payload) // 2])
            h.wfile.flush()
            h.close_connection = True
            return
        h.wfile.write(payload)

    @staticmethod
    def _error(h: BaseHTTPRequestHandler, status: int, code: str, message: str) -> None:
        body = f"<Error><Code>{code}</Code><Message>{message}</Message></Error>".encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/xml")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)
