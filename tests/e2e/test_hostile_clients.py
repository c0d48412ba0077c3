"""Hostile clients against a real `binsight serve` AND a real endpoint (its supervisor hands the socket to a
`binsight serve` child): slowloris, silent connections, stalled and oversized bodies, request-target tricks,
and a bounded load test in which every request gets 200 or 503. Both targets run with 2 s header and 3 s body
timeouts (set through the same ServeConfig keys; the endpoint's reach its server through its config file),
so each test takes seconds.
"""

from __future__ import annotations

import http.server
import os
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from binsight.endpoints import procs
from binsight.endpoints.api import create_endpoint, delete_endpoint, describe_endpoint, list_endpoints
from tests.e2e.test_endpoint_lifecycle import make_artifact
from tests.e2e.test_serve import jpeg_bytes, start_server

pytestmark = pytest.mark.timeout(150)
# Short deadlines so each test takes seconds; long enough that a loaded 2-core machine meets them.
LIMITS = {"header_timeout": 2.0, "body_timeout": 3.0, "max_connections": 64, "queue_size": 8}


@pytest.fixture(scope="module")
def artifact(tmp_path_factory) -> Path:
    return make_artifact(tmp_path_factory.mktemp("hostile-artifact"), "h1")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


@pytest.fixture(scope="module", params=["serve", "endpoint"])
def target(request, artifact, home, tmp_path_factory):
    """(port, pid of the model server) of a ready server with the 1 s limits."""
    if request.param == "serve":
        args = [f"{k}={v}" for k, v in LIMITS.items()]
        server = start_server(artifact, tmp_path_factory.mktemp("hostile"), "--workers-threads", "1", *args)
        try:
            server.wait_ready()
            yield server.port, server.proc.pid
        finally:
            server.stop()
    else:
        info = create_endpoint("hostile", artifact, timeout=60, **LIMITS)
        try:
            yield info["port"], info["server_pid"]
        finally:
            delete_endpoint("hostile", timeout=10)


def closed_within(sock: socket.socket, seconds: float) -> float | None:
    """Seconds until the server closed ``sock`` (EOF or reset), or None if it stayed open ``seconds``."""
    start = time.monotonic()
    sock.settimeout(0.2)
    while time.monotonic() - start < seconds:
        try:
            if sock.recv(4096) == b"":
                return time.monotonic() - start
        except TimeoutError:
            continue
        except OSError:
            return time.monotonic() - start
    return None


def status_of(sock: socket.socket, timeout: float = 10) -> int | None:
    """The status code of the response on ``sock`` (None when the server closed it without one)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                return None
            data += chunk
    except OSError:
        return None
    return int(data.split(b" ", 2)[1])


def test_silent_connection_and_slowloris_headers_are_closed(target):
    port, _ = target
    silent = socket.create_connection(("127.0.0.1", port))
    slow = socket.create_connection(("127.0.0.1", port))
    slow.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\n")

    def trickle() -> None:  # one header byte every 0.2 s: each byte alone would reset a read timeout
        for byte in b"X-Slow: " + b"a" * 100:
            try:
                slow.send(bytes([byte]))
            except OSError:
                return
            time.sleep(0.2)

    threading.Thread(target=trickle, daemon=True).start()
    try:
        assert closed_within(silent, 8) is not None, "a connection that sent nothing stayed open"
        assert closed_within(slow, 8) is not None, "a slowloris connection stayed open"
    finally:
        silent.close()
        slow.close()
    assert httpx.get(f"http://127.0.0.1:{port}/ping", timeout=10).status_code == 200


def test_stalled_body_gets_408_and_huge_declared_body_413_at_once(target):
    port, _ = target
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n")
        sock.sendall(b"Content-Length: 5000000\r\n\r\n" + b"\xff" * 1000)
        start = time.monotonic()
        assert status_of(sock) == 408
        assert time.monotonic() - start < 8
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n")
        sock.sendall(b"Content-Length: 1000000000\r\n\r\n")
        assert status_of(sock, timeout=5) == 413  # answered before a byte of the body was sent


def test_oversized_chunked_body_is_refused_while_streaming(target):
    port, pid = target
    chunk = b"\xff" * (1024 * 1024)
    before = rss_mb(pid)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n")
        sock.sendall(b"Transfer-Encoding: chunked\r\n\r\n")
        try:
            for _ in range(8):  # 8 MB, over the 6 MB limit
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        except OSError:
            pass  # the server answered and closed the connection
        assert status_of(sock, timeout=5) == 413  # answered while the upload is still going on
        try:
            for _ in range(40):  # whatever else arrives is dropped, not buffered
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        except OSError:
            pass
    assert rss_mb(pid) - before < 40, f"{before:.0f} MB → {rss_mb(pid):.0f} MB"
    assert httpx.get(f"http://127.0.0.1:{port}/ping", timeout=10).status_code == 200


def test_request_target_tricks_never_reach_another_host(target):
    """``GET @127.0.0.1:PORT/secret`` and absolute-form targets: answered here (404), never fetched elsewhere."""
    port, _ = target
    hits: list[str] = []

    class Secret(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"the secret")

        def log_message(self, *args: object) -> None:
            pass

    secret = http.server.HTTPServer(("127.0.0.1", 0), Secret)
    threading.Thread(target=secret.serve_forever, daemon=True).start()
    try:
        secret_port = secret.server_address[1]
        for request_target in (f"@127.0.0.1:{secret_port}/secret", f"http://127.0.0.1:{secret_port}/secret"):
            with socket.create_connection(("127.0.0.1", port)) as sock:
                sock.sendall(f"GET {request_target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
                sock.settimeout(10)
                answer = b""
                while chunk := sock.recv(65536):
                    answer += chunk
            status = int(answer.split(b" ", 2)[1])
            assert 400 <= status < 500 and b"the secret" not in answer, answer[:300]
    finally:
        secret.shutdown()
    assert hits == []


def test_bounded_load_gets_only_200_and_503(target):
    port, _ = target
    body = jpeg_bytes(11)

    def one(_: int) -> int | str:
        try:
            with httpx.Client(timeout=30) as client:
                return client.post(
                    f"http://127.0.0.1:{port}/invocations", content=body, headers={"content-type": "image/jpeg"}
                ).status_code
        except httpx.HTTPError as exc:
            return type(exc).__name__

    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(one, range(160)))
    assert set(results) <= {200, 503}, sorted({str(r) for r in results})
    assert results.count(200) > 0


def test_killed_supervisor_leaves_no_process_and_state_is_private(home, artifact):
    from binsight.endpoints.store import EndpointRegistry

    info = create_endpoint("orphan", artifact, timeout=60)
    server, supervisor = info["server_pid"], info["supervisor_pid"]
    assert procs.pid_alive(server)
    reg = EndpointRegistry()
    assert reg.path.stat().st_mode & 0o777 == 0o600 and reg.home.stat().st_mode & 0o777 == 0o700
    logs = list((reg.home / "endpoints" / "orphan").iterdir())
    assert logs and all(p.stat().st_mode & 0o077 == 0 for p in logs)  # logs and the server's config file
    os.kill(supervisor, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while procs.pid_alive(server) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not procs.pid_alive(server), "the model server outlived its supervisor"
    assert [r["status"] for r in list_endpoints() if r["name"] == "orphan"] == ["Failed"]
    assert describe_endpoint("orphan")["ping"]["healthy"] is False
    delete_endpoint("orphan", timeout=5)


def test_children_get_a_minimal_environment(monkeypatch):
    monkeypatch.setenv("BINSIGHT_TEST_HOOKS", "1")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-for-children")
    env = procs.child_env()
    assert "BINSIGHT_TEST_HOOKS" not in env and "AWS_SECRET_ACCESS_KEY" not in env and env["PATH"]
