"""`binsight serve` with the tools its users already have: boto3's error classes, an offline /docs page in a
real browser, an OpenAPI schema that lists the statuses the server really sends, and a busy port refused before
anything is announced. One real server on loopback, started with ``--endpoint-name bins-prod``.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys

import httpx
import pytest

from tests.conftest import cli_env, free_port
from tests.e2e.test_serve import jpeg_bytes, make_artifact, start_server

pytestmark = pytest.mark.timeout(150)
CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    return make_artifact(tmp_path_factory.mktemp("artifact"))


@pytest.fixture(scope="module")
def server(artifact, tmp_path_factory):
    srv = start_server(artifact, tmp_path_factory.mktemp("serve"), "--endpoint-name", "bins-prod", "--threads", "1")
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def runtime(server):
    import boto3

    client = boto3.client(
        "sagemaker-runtime",
        endpoint_url=server.url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    yield client
    client.close()


def test_boto3_gets_model_error_with_the_original_status_and_message(runtime):
    with pytest.raises(runtime.exceptions.ModelError) as caught:
        runtime.invoke_endpoint(EndpointName="bins-prod", Body=b"not an image", ContentType="image/jpeg")
    response = caught.value.response
    assert response["Error"]["Code"] == "ModelError"
    assert response["OriginalStatusCode"] == 400
    original = json.loads(response["OriginalMessage"])
    assert original["error"]["code"] == "invalid_image"
    assert "(400)" in response["Error"]["Message"] and original["error"]["message"] in response["Error"]["Message"]
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 424

    with pytest.raises(runtime.exceptions.ModelError) as caught:
        runtime.invoke_endpoint(EndpointName="bins-prod", Body=b"hello", ContentType="text/plain")
    assert caught.value.response["OriginalStatusCode"] == 415


def test_boto3_gets_validation_error_for_an_unknown_endpoint_name(runtime):
    with pytest.raises(runtime.exceptions.ClientError) as caught:
        runtime.invoke_endpoint(EndpointName="no-such-endpoint", Body=jpeg_bytes(1), ContentType="image/jpeg")
    error = caught.value.response["Error"]
    assert error["Code"] == "ValidationError"
    assert error["Message"] == "Endpoint no-such-endpoint not found."
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    # the server's own name still answers
    ok = runtime.invoke_endpoint(EndpointName="bins-prod", Body=jpeg_bytes(1), ContentType="image/jpeg")
    assert json.loads(ok["Body"].read())["class_labels"] == ["1", "2", "3", "4", "5"]


def test_plain_invocations_keep_the_container_statuses(server):
    r = httpx.post(f"{server.url}/invocations", content=b"not an image", headers={"content-type": "image/jpeg"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_image"
    assert "x-amzn-errortype" not in r.headers


def test_openapi_documents_real_statuses_examples_and_the_header(server):
    doc = httpx.get(f"{server.url}/openapi.json").json()
    invocations = doc["paths"]["/invocations"]["post"]
    assert {"200", "400", "413", "415", "503", "504"} <= set(invocations["responses"])
    for op in [m for path in doc["paths"].values() for m in path.values()]:
        assert "422" not in op["responses"], op["summary"]
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    for status in ("400", "413", "415", "503", "504"):
        example = invocations["responses"][status]["content"]["application/json"]["example"]
        assert example["error"]["code"] and example["error"]["message"], status
    ok = invocations["responses"]["200"]["content"]["application/json"]
    assert ok["example"]["predicted_count"] == 3
    assert {"Prediction", "BatchPrediction", "ErrorBody"} <= set(doc["components"]["schemas"])
    headers = [p["name"] for p in invocations["parameters"] if p["in"] == "header"]
    assert headers == ["X-Amzn-SageMaker-Custom-Attributes"]
    runtime = doc["paths"]["/endpoints/{name}/invocations"]["post"]["responses"]
    assert runtime["424"]["content"]["application/json"]["example"]["OriginalStatusCode"] == 400
    metrics = doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(metrics) == ["text/plain"]


def test_docs_and_redoc_render_offline_in_chromium(server):
    if CHROMIUM is None:
        pytest.skip("no Chromium found (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    blocked: list[tuple[str, str]] = []

    def only_loopback(route) -> None:
        if route.request.url.startswith(server.url):
            route.continue_()
        else:
            blocked.append((route.request.resource_type, route.request.url))
            route.abort()

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            context = browser.new_context()
            context.route("**/*", only_loopback)
            page = context.new_page()
            page.goto(f"{server.url}/docs")
            page.wait_for_selector(".opblock-summary-path", timeout=30_000)
            paths = page.locator(".opblock-summary-path").all_inner_texts()
            assert {"/ping", "/invocations", "/endpoints/{name}/invocations", "/metrics"} <= {
                p.replace("\u200b", "") for p in paths
            }
            assert blocked == []  # every Swagger UI asset came from the server itself
            page.goto(f"{server.url}/redoc")
            page.get_by_text("Predict the item count of one image").first.wait_for(timeout=30_000)
            assert page.get_by_text("SageMaker Runtime path").count() >= 1
        finally:
            browser.close()
    # ReDoc's script and style are local; only its "API docs by Redocly" footer logo points at a CDN (cosmetic).
    assert all(kind == "image" and "redoc" in url for kind, url in blocked), blocked


def test_busy_port_fails_before_announcing(artifact):
    port = free_port()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen(1)
        proc = subprocess.run(
            [sys.executable, "-m", "binsight", "serve", "--model", str(artifact), "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
            env=cli_env(),
        )
    assert proc.returncode == 1, proc.stderr
    assert "serving" not in proc.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in proc.stderr and "--port" in proc.stderr
