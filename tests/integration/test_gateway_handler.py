"""``lambda_handler`` end to end: real events in, a real loopback endpoint behind, real responses out."""

from __future__ import annotations

import base64
import json
import logging
import time

import pytest

from binsight.gateway.clients import SageMakerEndpointClient
from binsight.gateway.errors import GatewayError
from binsight.gateway.handler import handle, lambda_handler
from binsight.gateway.settings import FetchPolicy, GatewaySettings, PredictionEndpoint
from tests.integration.gateway_servers import (
    FakeEndpoint,
    ImageServer,
    fake_prediction,
    make_jpeg,
    make_png,
    set_aws_test_env,
)


class Context:
    aws_request_id = "req-123"

    def __init__(self, remaining_ms: int = 20_000) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@pytest.fixture
def images():
    with ImageServer() as server:
        yield server


def settings_for(endpoint: FakeEndpoint, **endpoint_kwargs) -> GatewaySettings:
    config = {"url": endpoint.url, "timeout": 2.0, "retries": 3, "backoff": 0.01, **endpoint_kwargs}
    return GatewaySettings(
        policy=FetchPolicy.with_allowed(["127.0.0.1"], read_timeout=2.0), endpoint=PredictionEndpoint(**config)
    )


def v2(body: str, content_type: str, *, b64: bool = False, query: dict | None = None) -> dict:
    return {
        "version": "2.0",
        "routeKey": "POST /predict",
        "rawPath": "/predict",
        "headers": {"content-type": content_type, "user-agent": "curl/8.5.0"},
        "queryStringParameters": query,
        "requestContext": {"http": {"method": "POST", "path": "/predict"}, "requestId": "apigw-v2-id"},
        "body": body,
        "isBase64Encoded": b64,
    }


def test_direct_inline_image_passes_prediction_through(endpoint):
    image = make_jpeg((48, 32))
    event = {"image_b64": base64.b64encode(image).decode(), "expected_quantity": 2}
    response = handle(event, Context(), settings=settings_for(endpoint))
    assert response["statusCode"] == 200 and response["request_id"] == "req-123"
    assert response["prediction"] == fake_prediction(image, 2)  # unchanged
    sent = endpoint.requests[0]
    assert sent["path"] == "/invocations" and sent["body"] == image
    assert sent["headers"]["content-type"] == "image/jpeg"
    assert sent["headers"]["x-amzn-sagemaker-custom-attributes"] == "expected_quantity=2"


def test_v1_json_url_event(endpoint, images):
    event = {
        "resource": "/predict",
        "path": "/predict",
        "httpMethod": "POST",
        "headers": {"Content-Type": "application/json", "X-Expected-Quantity": "3"},
        "queryStringParameters": None,
        "requestContext": {"requestId": "apigw-v1-id", "stage": "prod"},
        "body": json.dumps({"url": f"{images.url}/img.jpg"}),
        "isBase64Encoded": False,
    }
    response = handle(event, None, settings=settings_for(endpoint))
    assert response["statusCode"] == 200
    assert response["headers"]["Content-Type"] == "application/json"
    assert response["headers"]["X-Request-Id"] == "apigw-v1-id"
    assert json.loads(response["body"]) == fake_prediction(images.jpeg, 3)


def test_v2_raw_png_body(endpoint):
    image = make_png((12, 10))
    event = v2(base64.b64encode(image).decode(), "image/png", b64=True, query={"expected_quantity": "1"})
    response = handle(event, None, settings=settings_for(endpoint))
    assert response["statusCode"] == 200, response["body"]
    assert json.loads(response["body"])["check"]["expected_quantity"] == 1
    assert endpoint.requests[0]["headers"]["content-type"] == "image/png"


def test_errors_are_json_with_request_id_and_never_reach_the_endpoint(endpoint, images):
    cases = [
        (v2("{}", "application/json"), 400, "bad_request"),
        (v2(json.dumps({"url": f"{images.url}/text"}), "application/json"), 415, "unsupported_media_type"),
        (v2(json.dumps({"url": f"{images.url}/bomb.png"}), "application/json"), 413, "image_too_large"),
        (v2(json.dumps({"url": "http://169.254.169.254/latest/"}), "application/json"), 403, "forbidden_address"),
        (v2(json.dumps({"url": f"{images.url}/missing"}), "application/json"), 404, "not_found"),
        (v2("hello", "text/plain"), 415, "unsupported_media_type"),
    ]
    for event, status, code in cases:
        response = handle(event, None, settings=settings_for(endpoint))
        body = json.loads(response["body"])
        assert (response["statusCode"], body["error"]["code"]) == (status, code), body
        assert body["error"]["request_id"] == response["headers"]["X-Request-Id"] == "apigw-v2-id"
        assert "Traceback" not in response["body"]
    assert endpoint.requests == []


def test_endpoint_503_retried_then_success(endpoint):
    endpoint.fail_times = 2
    image = make_jpeg()
    response = handle({"image_b64": base64.b64encode(image).decode()}, None, settings=settings_for(endpoint))
    assert response["statusCode"] == 200
    assert response["prediction"]["predicted_count"] == len(image) % 5 + 1
    assert len(endpoint.requests) == 3


def test_endpoint_503_until_retries_run_out(endpoint):
    endpoint.fail_times = 10
    event = {"image_b64": base64.b64encode(make_jpeg()).decode()}
    response = handle(event, None, settings=settings_for(endpoint, retries=1))
    assert response["statusCode"] == 502 and response["error"]["code"] == "endpoint_unavailable"
    assert len(endpoint.requests) == 2


def test_endpoint_429_is_retried(endpoint):
    endpoint.fail_times, endpoint.fail_status = 1, 429
    response = handle({"image_b64": base64.b64encode(make_jpeg()).decode()}, None, settings=settings_for(endpoint))
    assert response["statusCode"] == 200 and len(endpoint.requests) == 2


def test_endpoint_500_is_502_without_retry(endpoint):
    endpoint.always_status = 500
    response = handle({"image_b64": base64.b64encode(make_jpeg()).decode()}, None, settings=settings_for(endpoint))
    assert response["statusCode"] == 502 and response["error"]["code"] == "endpoint_error"
    assert len(endpoint.requests) == 1


def test_endpoint_rejection_passes_status_through(endpoint):
    endpoint.always_status = 415
    response = handle({"image_b64": base64.b64encode(make_jpeg()).decode()}, None, settings=settings_for(endpoint))
    assert response["statusCode"] == 415 and response["error"]["code"] == "endpoint_rejected"


def test_endpoint_timeout_is_504(endpoint):
    endpoint.hang_s = 2.0
    event = {"image_b64": base64.b64encode(make_jpeg()).decode()}
    response = handle(event, None, settings=settings_for(endpoint, timeout=0.3))
    assert response["statusCode"] == 504 and response["error"]["code"] == "endpoint_timeout"
    assert len(endpoint.requests) == 1  # a timeout is not retried


def test_endpoint_down_is_502():
    from tests.conftest import free_port

    settings = GatewaySettings(
        endpoint=PredictionEndpoint(url=f"http://127.0.0.1:{free_port()}", retries=1, backoff=0.01)
    )
    response = handle({"image_b64": base64.b64encode(make_jpeg()).decode()}, None, settings=settings)
    assert response["statusCode"] == 502 and response["error"]["code"] == "endpoint_unavailable"


def test_endpoint_path_url_is_used_as_is(endpoint):
    settings = settings_for(endpoint, url=f"{endpoint.url}/endpoints/bins/invocations")
    response = handle({"image_b64": base64.b64encode(make_jpeg()).decode()}, None, settings=settings)
    assert response["statusCode"] == 200
    assert endpoint.requests[0]["path"] == "/endpoints/bins/invocations"


def test_lambda_handler_reads_environment_and_logs_one_line(endpoint, monkeypatch, caplog):
    monkeypatch.setenv("BINSIGHT_ENDPOINT_URL", endpoint.url)
    monkeypatch.delenv("BINSIGHT_SAGEMAKER_ENDPOINT", raising=False)
    caplog.set_level(logging.INFO, logger="binsight.gateway")
    response = lambda_handler({"image_b64": base64.b64encode(make_jpeg()).decode()}, Context())
    assert response["statusCode"] == 200
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "binsight.gateway"]
    assert len(lines) == 1
    assert lines[0]["request_id"] == "req-123" and lines[0]["kind"] == "direct" and lines[0]["status"] == 200
    assert lines[0]["ms"] >= 0 and lines[0]["backend"] == "http"


def test_unconfigured_gateway_says_what_to_set(monkeypatch):
    for name in ("BINSIGHT_ENDPOINT_URL", "BINSIGHT_SAGEMAKER_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    response = lambda_handler({"image_b64": base64.b64encode(make_jpeg()).decode()}, None)
    assert response["statusCode"] == 500 and "BINSIGHT_ENDPOINT_URL" in response["error"]["message"]


@pytest.fixture
def aws_env(monkeypatch, tmp_path):
    set_aws_test_env(monkeypatch, tmp_path)


def test_sagemaker_backend_through_boto3(endpoint, aws_env):
    config = PredictionEndpoint(
        sagemaker_endpoint="bins", sagemaker_endpoint_url=endpoint.url, region="eu-west-1", retries=3, backoff=0.01
    )
    endpoint.fail_times = 1
    image = make_jpeg((20, 20))
    response = handle(
        {"image_b64": base64.b64encode(image).decode(), "expected_quantity": 4},
        None,
        settings=GatewaySettings(endpoint=config),
    )
    assert response["statusCode"] == 200, response
    assert response["prediction"] == fake_prediction(image, 4)
    assert [r["path"] for r in endpoint.requests] == ["/endpoints/bins/invocations"] * 2
    assert endpoint.requests[-1]["headers"]["x-amzn-sagemaker-custom-attributes"] == "expected_quantity=4"


def test_sagemaker_backend_500_and_timeout(endpoint, aws_env):
    backend = SageMakerEndpointClient("bins", endpoint_url=endpoint.url, region="eu-west-1", timeout=0.5, retries=0)

    endpoint.always_status = 500
    with pytest.raises(GatewayError) as info:
        backend.predict(make_jpeg(), "image/jpeg", None, time.monotonic() + 10)
    assert info.value.status == 502
    endpoint.always_status, endpoint.hang_s = None, 2.0
    with pytest.raises(GatewayError) as info:
        backend.predict(make_jpeg(), "image/jpeg", None, time.monotonic() + 10)
    assert info.value.status == 504


def test_api_gateway_retryable_error_is_answered_with_retry_after_not_raised(endpoint):
    endpoint.fail_times = 10
    event = v2(json.dumps({"image_b64": base64.b64encode(make_jpeg()).decode()}), "application/json")
    response = handle(event, None, settings=settings_for(endpoint, retries=1))  # the client retries, not Lambda
    body = json.loads(response["body"])
    assert response["statusCode"] == 502 and body["error"]["code"] == "endpoint_unavailable"
    assert set(body["error"]) == {"code", "message", "request_id"}  # the contract's error body, unchanged
    assert response["headers"]["Retry-After"] == "1"  # the endpoint said Retry-After: 0; never below 1 s

    endpoint.fail_times, endpoint.always_status = 0, 415
    response = handle(event, None, settings=settings_for(endpoint))
    assert response["statusCode"] == 415 and "Retry-After" not in response["headers"]  # permanent


def test_direct_event_says_whether_its_error_is_retryable(endpoint):
    event = {"image_b64": base64.b64encode(make_jpeg()).decode()}
    answers = {}
    for status in (500, 502, 504, 400):
        endpoint.always_status = status
        response = handle(event, None, settings=settings_for(endpoint))
        answers[status] = (response["statusCode"], response["retryable"])
    # 502/504 from the endpoint (or a proxy before it) are transient; 500 is a bug there, 400 this image.
    assert answers == {500: (502, False), 502: (502, True), 504: (502, True), 400: (400, False)}
    bad = handle({"url": "ftp://example.com/x.jpg"}, None, settings=settings_for(endpoint))
    assert bad["statusCode"] == 400 and bad["retryable"] is False
