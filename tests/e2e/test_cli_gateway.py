"""``binsight gateway`` end to end: the real CLI as a subprocess, real HTTP on loopback.

Covers ``gateway serve`` (the local API-Gateway-like front) with an HTTP client, ``gateway invoke``,
``gateway package`` (and importing the zip from a fresh folder), and one test through the real
``binsight serve`` endpoint.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO, cli_env, free_port, run_cli
from tests.integration.gateway_servers import (
    FakeEndpoint,
    ImageServer,
    aws_test_env,
    corrupt_jpeg,
    fake_prediction,
    make_jpeg,
    moto_s3,
    s3_record,
    set_aws_test_env,
)


def http(method: str, url: str, body: bytes | None = None, content_type: str | None = None):
    """(status, headers, parsed JSON body) for one request; HTTP errors are returned, not raised."""
    request = urllib.request.Request(url, data=body, method=method)
    if content_type:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read())


def wait_until_up(url: str, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(f"server exited early:\n{proc.stderr.read()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not come up in {timeout} s")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def endpoint():
    with FakeEndpoint() as server:
        yield server


def test_gateway_serve_front(endpoint):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "binsight", "gateway", "serve", "--port", str(port), "--endpoint", endpoint.url]
        + ["--allow-host", "127.0.0.1", "--retries", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{base}/health", proc)
        with ImageServer() as images:
            status, headers, body = http(
                "POST", f"{base}/predict", json.dumps({"url": f"{images.url}/img.jpg"}).encode(), "application/json"
            )
            assert status == 200, body
            assert body == fake_prediction(images.jpeg, None)
            assert headers.get("X-Request-Id")

        image = make_jpeg((50, 40))
        status, _, body = http("POST", f"{base}/predict?expected_quantity=2", image, "image/jpeg")
        assert status == 200 and body == fake_prediction(image, 2)

        payload = json.dumps({"image_b64": base64.b64encode(image).decode(), "expected_quantity": 5}).encode()
        status, _, body = http("POST", f"{base}/predict", payload, "application/json")
        assert status == 200 and body["check"]["expected_quantity"] == 5

        metadata = json.dumps({"url": "http://169.254.169.254/latest/meta-data/"}).encode()
        status, headers, body = http("POST", f"{base}/predict", metadata, "application/json")
        assert status == 403 and body["error"]["code"] == "forbidden_address"
        assert body["error"]["request_id"] == headers["X-Request-Id"]

        status, _, body = http("POST", f"{base}/predict", b"plain words", "text/plain")
        assert status == 415 and "error" in body
        status, _, body = http("GET", f"{base}/predict")
        assert status == 404 and body["error"]["code"] == "not_found"
        assert len(endpoint.requests) == 3
    finally:
        stop(proc)
    logs = proc.stderr.read()
    assert '"kind": "apigw_v2"' in logs and '"status": 403' in logs  # one structured line per invocation


def test_gateway_invoke_event_file(endpoint, tmp_path):
    image = make_jpeg((24, 24))
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"image_b64": base64.b64encode(image).decode(), "expected_quantity": 1}))
    proc = run_cli("gateway", "invoke", event, "--endpoint", endpoint.url)
    response = json.loads(proc.stdout)
    assert response["statusCode"] == 200 and response["prediction"] == fake_prediction(image, 1)

    event.write_text(json.dumps({"url": "http://10.0.0.1/x.jpg"}))
    proc = run_cli("gateway", "invoke", event, "--endpoint", endpoint.url, check=False)
    assert proc.returncode == 1 and json.loads(proc.stdout)["statusCode"] == 403


def test_gateway_invoke_s3_event_retryable_failure_exits_75(endpoint, tmp_path):
    import boto3

    image = make_jpeg((28, 28))
    event = tmp_path / "s3-event.json"
    event.write_text(json.dumps({"Records": [s3_record("in/ok.jpg", "cli-bins"), s3_record("in/bad.jpg", "cli-bins")]}))
    with moto_s3() as s3_url:
        env = cli_env(BINSIGHT_S3_ENDPOINT_URL=s3_url, **aws_test_env(tmp_path))
        env.pop("BINSIGHT_GATEWAY_RAISE_ON_RETRYABLE", None)
        s3 = boto3.client(
            "s3",
            endpoint_url=s3_url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        s3.create_bucket(Bucket="cli-bins")
        s3.put_object(Bucket="cli-bins", Key="in/ok.jpg", Body=image)
        s3.put_object(Bucket="cli-bins", Key="in/bad.jpg", Body=corrupt_jpeg())
        args = ("gateway", "invoke", event, "--endpoint", endpoint.url, "--retries", "0")

        endpoint.always_status = 503
        proc = run_cli(*args, check=False, env=env, timeout=60)
        assert proc.returncode == 75, proc.stderr
        assert "binsight: error: 1 of 2 S3 record(s) failed with a retryable error" in proc.stderr
        assert "s3://cli-bins/in/ok.jpg: endpoint_unavailable (retryable)" in proc.stderr
        assert "s3://cli-bins/in/bad.jpg: unsupported_media_type (permanent)" in proc.stderr
        assert "Traceback" not in proc.stderr
        shown = json.loads(proc.stdout)  # every record's result is still printed
        assert [r["retryable"] for r in shown["results"]] == [True, False]

        endpoint.always_status = None  # the endpoint is back: the retry succeeds for the transient record
        proc = run_cli(*args, check=False, env=env, timeout=60)
        assert proc.returncode == 1, proc.stderr  # only the permanent failure is left: reported, not retried
        results = json.loads(proc.stdout)["results"]
        assert results[0]["prediction"] == fake_prediction(image, None)
        assert results[1]["error"]["code"] == "unsupported_media_type" and results[1]["retryable"] is False


def test_gateway_serve_needs_an_endpoint():
    env = cli_env()
    env.pop("BINSIGHT_ENDPOINT_URL", None)
    env.pop("BINSIGHT_SAGEMAKER_ENDPOINT", None)
    proc = run_cli("gateway", "serve", "--port", str(free_port()), check=False, env=env, timeout=60)
    assert proc.returncode == 1 and "--endpoint" in proc.stderr and "Traceback" not in proc.stderr


def test_gateway_package_zip_imports_from_a_fresh_folder(endpoint, tmp_path):
    out = tmp_path / "dist" / "gateway.zip"
    proc = run_cli("gateway", "package", "--out", out, "--no-deps")
    assert "binsight.gateway.handler.lambda_handler" in proc.stdout
    with zipfile.ZipFile(out) as zf:
        names = set(zf.namelist())
        assert {"binsight/__init__.py", "binsight/gateway/handler.py", "binsight/gateway/fetch.py"} <= names
        assert not any(name.startswith(("binsight/models", "binsight/inference", "torch")) for name in names)
        assert f"{len(names)} files" in proc.stdout
        zf.extractall(tmp_path / "lambda")

    image = make_jpeg((16, 16))
    code = (
        "import base64, json, sys\n"
        "from binsight.gateway.handler import lambda_handler\n"
        "import binsight.gateway.handler as h\n"
        f"event = {{'image_b64': {base64.b64encode(image).decode()!r}}}\n"
        "print(json.dumps({'file': h.__file__, 'response': lambda_handler(event, None),\n"
        "                  'torch': 'torch' in sys.modules}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("BINSIGHT_")}
    env.update(PYTHONPATH=str(tmp_path / "lambda"), BINSIGHT_ENDPOINT_URL=endpoint.url)
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=True
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert Path(report["file"]).resolve().is_relative_to((tmp_path / "lambda").resolve())
    assert report["response"]["statusCode"] == 200
    assert report["response"]["prediction"] == fake_prediction(image, None)
    assert report["torch"] is False


def test_gateway_package_offline_fails_clearly(tmp_path):
    env = cli_env(
        PIP_INDEX_URL=f"http://127.0.0.1:{free_port()}/simple",
        PIP_CONFIG_FILE=os.devnull,
        PIP_NO_CACHE_DIR="1",
    )
    env.pop("PIP_FIND_LINKS", None)
    out = tmp_path / "gateway.zip"
    proc = run_cli("gateway", "package", "--out", out, check=False, env=env, timeout=120)
    assert proc.returncode == 1
    assert "could not download Pillow" in proc.stderr and "--no-deps" in proc.stderr
    assert not out.exists()


def test_gateway_with_real_binsight_serve(tmp_path, monkeypatch):
    """The gateway in front of the real ``binsight serve`` with a tiny untrained model."""
    pytest.importorskip("binsight.serving.process", reason="binsight serve (binsight.serving.process) not built yet")
    models = pytest.importorskip("binsight.models", reason="binsight.models not built yet")
    if not hasattr(models, "create_model"):
        pytest.skip("binsight.models.create_model not built yet")
    import torch

    from binsight.gateway.handler import handle
    from binsight.gateway.settings import GatewaySettings, PredictionEndpoint
    from binsight.inference.artifact import ArtifactMeta, save_artifact

    torch.manual_seed(0)
    model = models.create_model("tiny_cnn", 5)
    meta = ArtifactMeta(name="gw-e2e", architecture="tiny_cnn", class_labels=["1", "2", "3", "4", "5"], input_size=32)
    save_artifact(tmp_path / "artifact", model.state_dict(), meta)

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "binsight", "serve", "--model", str(tmp_path / "artifact"), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
        cwd=REPO,
    )
    try:
        wait_until_up(f"http://127.0.0.1:{port}/ping", proc, timeout=90)
        settings = GatewaySettings(endpoint=PredictionEndpoint(url=f"http://127.0.0.1:{port}", timeout=30, retries=2))
        event = {"image_b64": base64.b64encode(make_jpeg((64, 48))).decode(), "expected_quantity": 3}
        response = handle(event, None, settings=settings)
        assert response["statusCode"] == 200, response
        prediction = response["prediction"]
        assert prediction["class_labels"] == ["1", "2", "3", "4", "5"]
        assert prediction["predicted_label"] in prediction["class_labels"]
        assert abs(sum(prediction["probabilities"].values()) - 1.0) < 1e-3
        assert prediction["check"]["expected_quantity"] == 3

        # The same endpoint through boto3 sagemaker-runtime (the SageMaker Runtime path of the contract).
        set_aws_test_env(monkeypatch, tmp_path)
        sagemaker = PredictionEndpoint(
            sagemaker_endpoint="gw-e2e", sagemaker_endpoint_url=f"http://127.0.0.1:{port}", region="us-east-1"
        )
        response = handle(event, None, settings=GatewaySettings(endpoint=sagemaker))
        assert response["statusCode"] == 200, response
        assert response["prediction"]["probabilities"] == prediction["probabilities"]
    finally:
        stop(proc)
