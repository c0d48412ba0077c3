"""`binsight serve` under stress and failure: back-pressure, a dead or failing inference worker, SIGTERM,
and the container entry point (docker/serve) with SageMaker's environment. Real servers in subprocesses;
failures are driven through the BINSIGHT_TEST_HOOKS routes.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO, cli_env, free_port, run_cli
from tests.e2e.test_serve import Server, jpeg_bytes, make_artifact, post_image, start_server

pytestmark = pytest.mark.timeout(150)  # generous: server start-up is slow when the machine is shared


@pytest.fixture(scope="module")
def artifact(tmp_path_factory) -> Path:
    return make_artifact(tmp_path_factory.mktemp("artifact"))


@pytest.fixture(scope="module")
def hooked(artifact, tmp_path_factory):
    """A server with a one-slot queue, batch size 1, a 2 s request timeout and the test hooks on."""
    srv = start_server(
        artifact,
        tmp_path_factory.mktemp("hooked"),
        "--queue-size",
        "1",
        "--max-batch-size",
        "1",
        "--max-wait-ms",
        "0",
        "--workers-threads",
        "1",
        "--request-timeout",
        "2",
        hooks=True,
    )
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


def wait_for_ping(url: str, status: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = httpx.get(url + "/ping", timeout=5).status_code
        if last == status:
            return
        time.sleep(0.05)
    raise AssertionError(f"/ping stayed {last}, expected {status} within {timeout}s")


def metric(url: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", httpx.get(url + "/metrics").text, re.M)
    return float(match.group(1)) if match else 0.0


def test_full_queue_answers_503_with_retry_after(hooked):
    httpx.post(hooked.url + "/_test/delay", params={"ms": 300}).raise_for_status()
    body = jpeg_bytes(1)
    results: list[httpx.Response] = []

    def fire() -> None:
        with httpx.Client(base_url=hooked.url, timeout=30) as c:
            results.append(post_image(c, body))

    threads = [threading.Thread(target=fire) for _ in range(10)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        httpx.post(hooked.url + "/_test/delay", params={"ms": 0})
    statuses = sorted(r.status_code for r in results)
    assert set(statuses) <= {200, 503}, statuses
    assert 200 in statuses and 503 in statuses, statuses
    for r in results:
        if r.status_code == 503:
            assert r.headers["retry-after"] == "1"
            assert r.json()["error"]["code"] == "overloaded"
    assert httpx.get(hooked.url + "/ping").status_code == 200


def test_slow_prediction_answers_504_and_the_server_stays_up(hooked):
    httpx.post(hooked.url + "/_test/delay", params={"ms": 2500}).raise_for_status()
    try:
        with httpx.Client(base_url=hooked.url, timeout=30) as c:
            r = post_image(c, jpeg_bytes(5))
    finally:
        httpx.post(hooked.url + "/_test/delay", params={"ms": 0})
    assert r.status_code == 504
    assert r.json()["error"]["code"] == "timeout"
    wait_for_ping(hooked.url, 200, timeout=10)
    with httpx.Client(base_url=hooked.url, timeout=30) as c:
        assert post_image(c, jpeg_bytes(5)).status_code == 200


def test_dead_worker_turns_ping_503_then_restarts(hooked):
    restarts = metric(hooked.url, "binsight_worker_restarts_total")
    r = httpx.post(hooked.url + "/_test/kill-worker", params={"restart_after_ms": 1500})
    assert r.status_code == 200
    wait_for_ping(hooked.url, 503, timeout=5)
    with httpx.Client(base_url=hooked.url, timeout=30) as c:
        refused = post_image(c, jpeg_bytes(2))
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "not_ready"
        assert refused.headers["retry-after"]
        wait_for_ping(hooked.url, 200, timeout=20)
        assert post_image(c, jpeg_bytes(2)).status_code == 200
    assert metric(hooked.url, "binsight_worker_restarts_total") == restarts + 1


def test_failing_batches_turn_ping_503_until_the_model_answers_again(hooked):
    httpx.post(hooked.url + "/_test/fail-batches", params={"n": 1000}).raise_for_status()
    try:
        with httpx.Client(base_url=hooked.url, timeout=30) as c:
            for _ in range(3):
                r = post_image(c, jpeg_bytes(3))
                assert r.status_code == 500
                assert r.json()["error"]["code"] == "inference_failed"
                assert "Traceback" not in r.text
        wait_for_ping(hooked.url, 503, timeout=5)
    finally:
        httpx.post(hooked.url + "/_test/fail-batches", params={"n": 0})
    wait_for_ping(hooked.url, 200, timeout=15)  # the supervisor's probe prediction succeeds again


def test_onnx_backend_without_export_fails_fast(artifact):
    proc = run_cli("serve", "--model", artifact, "--backend", "onnx", "--port", free_port(), check=False, timeout=60)
    assert proc.returncode == 1
    assert "binsight export" in proc.stderr and "model.onnx" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_container_entry_point_serves_model_tar_and_drains_on_sigterm(artifact, tmp_path):
    from binsight.inference.export import export_sagemaker

    model_dir = tmp_path / "opt-ml-model"
    export_sagemaker(artifact, model_dir / "model.tar.gz")  # only the archive: the script unpacks it
    port = free_port()
    env = cli_env(
        SM_MODEL_DIR=str(model_dir),
        SAGEMAKER_BIND_TO_PORT=str(port),
        BINSIGHT_HOST="127.0.0.1",
        BINSIGHT_TEST_HOOKS="1",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    srv = Server(
        ["bash", str(REPO / "docker" / "serve"), "serve", "--workers-threads", "1"], port, tmp_path / "entry.log", env
    )
    try:
        srv.wait_ready()
        httpx.post(srv.url + "/_test/delay", params={"ms": 1500}).raise_for_status()
        result: list[httpx.Response] = []

        def slow_request() -> None:
            with httpx.Client(base_url=srv.url, timeout=30) as c:
                result.append(post_image(c, jpeg_bytes(4)))

        thread = threading.Thread(target=slow_request)
        thread.start()
        time.sleep(0.5)  # the request is now inside the inference worker's delayed batch
        srv.proc.send_signal(signal.SIGTERM)
        thread.join(30)
        assert result and result[0].status_code == 200, srv.log()
        assert srv.proc.wait(30) == 0, srv.log()
    finally:
        srv.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(srv.url + "/ping", timeout=2)


def test_model_that_cannot_load_exits_1_with_the_reason(artifact, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(artifact, broken)
    (broken / "model.safetensors").write_bytes(b"\x00" * 64)  # truncated weights: found only when loading
    proc = run_cli("serve", "--model", broken, "--port", free_port(), check=False, timeout=60)
    assert proc.returncode == 1
    assert "cannot load the model" in proc.stderr and "model.safetensors" in proc.stderr
    assert "Traceback" not in proc.stderr
