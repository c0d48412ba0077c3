"""Loopback stand-ins for the outside world in the pipeline's smoke stage: an HTTP server holding one image and
an S3-compatible server (moto) holding it as an object, so the gateway's URL and S3 paths run end to end on this
machine without network access."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def image_server(image: Path) -> Iterator[str]:
    """Serve one image over HTTP on loopback; yields its URL."""
    body = image.read_bytes()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/{image.name}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def s3_server(image: Path) -> Iterator[tuple[str | None, str]]:
    """A loopback S3-compatible server (moto) holding the image; yields (endpoint URL, s3 URI), or
    (None, reason) when moto is not installed."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        yield None, "moto is not installed (pip install 'binsight[demo]')"
        return
    import boto3

    from binsight.utils.net import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    os.environ.update(AWS_ACCESS_KEY_ID="smoke", AWS_SECRET_ACCESS_KEY="smoke", AWS_DEFAULT_REGION="us-east-1")
    try:
        url = f"http://127.0.0.1:{port}"
        s3 = boto3.client("s3", endpoint_url=url, region_name="us-east-1")
        s3.create_bucket(Bucket="binsight-smoke")
        s3.put_object(Bucket="binsight-smoke", Key=f"bins/{image.name}", Body=image.read_bytes())
        yield url, f"s3://binsight-smoke/bins/{image.name}"
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.stop()
