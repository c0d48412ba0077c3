"""`binsight serve` end to end: a real server in a subprocess on loopback, probed over HTTP and with boto3.

One server (module scope) answers the contract tests; the helpers here (tiny artifact, start/stop) are
reused by test_serve_resilience.py.
"""

from __future__ import annotations

import base64
import io
import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.conftest import cli_env, free_port

pytestmark = pytest.mark.timeout(150)  # generous: server start-up is slow when the machine is shared


def make_artifact(folder: Path) -> Path:
    """A tiny_cnn artifact (random weights, 64 px input) — enough to exercise the whole serving path."""
    import torch

    from binsight.inference.artifact import ArtifactMeta, save_artifact
    from binsight.models import create_model

    torch.manual_seed(0)
    model = create_model("tiny_cnn", 5)
    meta = ArtifactMeta(
        name="tiny", architecture="tiny_cnn", class_labels=["1", "2", "3", "4", "5"], input_size=64, version="t1"
    )
    return save_artifact(folder, model.state_dict(), meta)


def jpeg_bytes(seed: int = 0, size: tuple[int, int] = (64, 48), fmt: str = "JPEG") -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(buf, format=fmt)
    return buf.getvalue()


class Server:
    """A `python -m binsight serve` subprocess on a free loopback port, stderr captured to a file."""

    def __init__(self, cmd: list[str], port: int, log_path: Path, env: dict[str, str]) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env)

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + "/ping", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"server not ready after {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def start_server(artifact: Path, tmp: Path, *args: str, hooks: bool = False) -> Server:
    port = free_port()
    cmd = [sys.executable, "-m", "binsight", "serve", "--model", str(artifact), "--port", str(port), *args]
    env = cli_env(BINSIGHT_TEST_HOOKS="1" if hooks else "0")
    return Server(cmd, port, tmp / f"server-{port}.log", env)


@pytest.fixture(scope="module")
def artifact(tmp_path_factory) -> Path:
    return make_artifact(tmp_path_factory.mktemp("artifact"))


@pytest.fixture(scope="module")
def server(artifact, tmp_path_factory):
    srv = start_server(
        artifact,
        tmp_path_factory.mktemp("serve"),
        "--max-batch-size",
        "8",
        "--max-wait-ms",
        "50",
        "--workers-threads",
        "1",
    )
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def post_image(client: httpx.Client, body: bytes, content_type: str = "image/jpeg", **headers: str) -> httpx.Response:
    return client.post("/invocations", content=body, headers={"content-type": content_type, **headers})


def assert_prediction(doc: dict) -> None:
    assert doc["class_labels"] == ["1", "2", "3", "4", "5"]
    assert doc["predicted_label"] in doc["class_labels"]
    assert doc["predicted_count"] == int(doc["predicted_label"])
    assert abs(sum(doc["probabilities"].values()) - 1.0) < 1e-4
    assert doc["confidence"] == max(doc["probabilities"].values())
    assert doc["model"] == {"name": "tiny", "version": "t1"}


def test_ping_and_prediction_matches_in_process_predictor(client, artifact):
    from binsight.inference.predictor import Predictor

    assert client.get("/ping").status_code == 200
    body = jpeg_bytes(1)
    r = post_image(client, body)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert r.headers["x-request-id"]
    doc = r.json()
    assert_prediction(doc)
    assert "check" not in doc
    expected = Predictor(artifact, threads=1).predict_bytes(body)
    for label, p in expected["probabilities"].items():
        assert doc["probabilities"][label] == pytest.approx(p, abs=1e-5)


def test_boto3_sagemaker_runtime_invoke_endpoint(server):
    import boto3

    runtime = boto3.client(
        "sagemaker-runtime",
        endpoint_url=server.url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    response = runtime.invoke_endpoint(
        EndpointName="bins-prod",
        Body=jpeg_bytes(2),
        ContentType="image/jpeg",
        Accept="application/json",
        CustomAttributes="expected_quantity=3",
    )
    doc = json.loads(response["Body"].read())
    assert_prediction(doc)
    assert doc["check"]["expected_quantity"] == 3
    assert doc["check"]["match"] == (doc["predicted_count"] == 3)
    assert doc["check"]["decision"] in ("confirmed", "mismatch", "review")


@pytest.mark.parametrize(
    ("content_type", "fmt"), [("image/jpeg", "JPEG"), ("image/png", "PNG"), ("application/x-image", "JPEG")]
)
def test_image_content_types(client, content_type, fmt):
    r = post_image(client, jpeg_bytes(3, fmt=fmt), content_type)
    assert r.status_code == 200, r.text
    assert_prediction(r.json())


def test_json_single_and_instances_with_expected_quantity(client, server):
    b64 = base64.b64encode(jpeg_bytes(4)).decode()
    r = client.post("/invocations", json={"image_b64": b64, "expected_quantity": 2})
    assert r.status_code == 200, r.text
    single = r.json()
    assert single["check"]["expected_quantity"] == 2
    assert single["check"]["match"] == (single["predicted_count"] == 2)

    instances = [{"image_b64": b64, "expected_quantity": 5}, {"image_b64": base64.b64encode(jpeg_bytes(5)).decode()}]
    r = client.post(
        f"{server.url}/endpoints/any-name/invocations",
        json={"instances": instances},
        headers={"X-Amzn-SageMaker-Custom-Attributes": "expected_quantity=1"},
    )
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    assert len(preds) == 2
    assert preds[0]["check"]["expected_quantity"] == 5  # the body's value wins over the header's
    assert preds[1]["check"]["expected_quantity"] == 1  # the header's applies where the body has none
    assert preds[0]["probabilities"] == single["probabilities"]  # same image → same answer, batched or not


def test_expected_quantity_header_on_image_body(client):
    r = post_image(client, jpeg_bytes(6), **{"X-Amzn-SageMaker-Custom-Attributes": "trace=abc, expected_quantity=4"})
    assert r.status_code == 200
    assert r.json()["check"]["expected_quantity"] == 4


def _bomb_png() -> bytes:
    buf = io.BytesIO()
    Image.new("1", (8_000, 7_000)).save(buf, format="PNG")  # 56 MP (over the 40 MP limit) in ~7 KB
    return buf.getvalue()


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"content": jpeg_bytes(7)[:300], "headers": {"content-type": "image/jpeg"}}, 400, "invalid_image"),
        ({"content": b"not an image at all", "headers": {"content-type": "image/png"}}, 400, "invalid_image"),
        ({"content": b"", "headers": {"content-type": "image/jpeg"}}, 400, "empty_body"),
        ({"content": b"x" * (7 * 1024 * 1024), "headers": {"content-type": "image/jpeg"}}, 413, "payload_too_large"),
        ({"content": b"hello", "headers": {"content-type": "text/plain"}}, 415, "unsupported_media_type"),
        ({"json": {"image_b64": "%%%not-base64%%%"}}, 400, "bad_base64"),
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, "bad_json"),
        (
            {"json": {"image_b64": base64.b64encode(b"abc").decode(), "expected_quantity": -1}},
            400,
            "invalid_expected_quantity",
        ),
        ({"json": {"instances": []}}, 400, "bad_request"),
    ],
    ids=["truncated", "garbage", "empty", "7MB", "text", "base64", "json", "quantity", "no-instances"],
)
def test_error_responses(client, kwargs, status, code):
    r = client.post("/invocations", **kwargs)
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code
    assert r.json()["error"]["message"]
    assert "Traceback" not in r.text
    assert client.get("/ping").status_code == 200


def test_decompression_bomb_and_streamed_oversize_body(client):
    r = post_image(client, _bomb_png(), "image/png")
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "invalid_image"
    assert "bomb" in r.json()["error"]["message"] or "MP" in r.json()["error"]["message"]

    def chunks():  # no Content-Length: the server must cap while streaming
        for _ in range(7):
            yield b"x" * (1024 * 1024)

    r = client.post("/invocations", content=chunks(), headers={"content-type": "image/jpeg"})
    assert r.status_code == 413
    assert client.get("/ping").status_code == 200


def test_concurrent_requests_form_batches(server):
    body = jpeg_bytes(8)
    n = 16
    barrier = threading.Barrier(n)
    statuses: list[int] = []
    clients = [httpx.Client(base_url=server.url, timeout=30) for _ in range(n)]
    for c in clients:
        c.get("/ping")  # open the connections first so the posts arrive together

    def fire(c: httpx.Client) -> None:
        barrier.wait()
        statuses.append(post_image(c, body).status_code)

    threads = [threading.Thread(target=fire, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for c in clients:
        c.close()
    assert statuses == [200] * n
    metrics = httpx.get(server.url + "/metrics").text
    buckets = {
        float(le): float(v) for le, v in re.findall(r'binsight_batch_size_bucket\{le="([^"+]+)"\} (\S+)', metrics)
    }
    count = float(re.search(r"^binsight_batch_size_count (\S+)", metrics, re.M).group(1))
    assert count - buckets[1.0] > 0, f"no batch larger than 1:\n{metrics}"
    assert max(buckets) >= 8 and buckets[8.0] == count  # never above --max-batch-size


def test_metrics_docs_and_access_log(client, server):
    post_image(client, jpeg_bytes(9))
    post_image(client, b"", "image/jpeg")
    text = client.get("/metrics").text
    for family in (
        "binsight_requests_total",
        "binsight_request_latency_seconds_bucket",
        "binsight_batch_size_bucket",
        "binsight_queue_depth",
        "binsight_errors_total",
        "binsight_model_info",
    ):
        assert family in text, family
    assert re.search(r'binsight_requests_total\{method="POST",path="/invocations",status="200"\} [1-9]', text)
    assert 'binsight_errors_total{code="empty_body"}' in text
    assert 'architecture="tiny_cnn"' in text
    assert client.get("/openapi.json").json()["paths"]["/invocations"]["post"]
    assert client.get("/docs").status_code == 200
    r = client.get("/no-such-path")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    lines = [json.loads(line) for line in server.log().splitlines() if line.startswith('{"ts"')]
    invocations = [e for e in lines if e["path"] == "/invocations"]
    assert invocations and {"method", "status", "ms", "batch_size", "request_id"} <= set(invocations[0])
    assert any(e["status"] == 200 and e["batch_size"] >= 1 for e in invocations)
    assert any(e["status"] == 400 and e["error"] == "empty_body" for e in invocations)
