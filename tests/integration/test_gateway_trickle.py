"""The gateway's total fetch deadline holds against a source that trickles: one byte at a time keeps every
single read inside the read timeout, but the whole fetch must still end at ``total_timeout``."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from binsight.gateway.errors import UpstreamTimeout
from binsight.gateway.fetch import fetch_url
from binsight.gateway.settings import FetchPolicy

POLICY = FetchPolicy.with_allowed(["127.0.0.1"], read_timeout=5.0, total_timeout=1.0)
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: 11000\r\n\r\n"


def trickling_server(at_once: bytes, trickled: bytes) -> tuple[int, threading.Event]:
    """A loopback server that answers with ``at_once``, then sends ``trickled`` one byte every 50 ms."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    stop = threading.Event()

    def serve() -> None:
        conn, _ = listener.accept()
        with conn, listener:
            conn.recv(65536)
            try:
                conn.sendall(at_once)
                for byte in trickled:
                    if stop.is_set():
                        return
                    conn.send(bytes([byte]))
                    time.sleep(0.05)
            except OSError:
                return

    threading.Thread(target=serve, daemon=True).start()
    return listener.getsockname()[1], stop


@pytest.mark.parametrize(
    ("at_once", "trickled"), [(HEAD, b"\xff" * 11000), (b"", HEAD + b"\xff" * 11000)], ids=["body", "headers"]
)
def test_total_timeout_holds_against_a_trickle(at_once, trickled):
    port, stop = trickling_server(at_once, trickled)
    start = time.monotonic()
    try:
        with pytest.raises(UpstreamTimeout) as info:
            fetch_url(f"http://127.0.0.1:{port}/bin.jpg", POLICY)
    finally:
        stop.set()
    assert time.monotonic() - start < 2.5
    assert info.value.code == "source_timeout" and info.value.status == 504
