"""Lambda retries of S3 events: a retryable failure raises ``RetryableGatewayError`` (so Lambda retries the
event), a permanent one is reported in the result. Real loopback servers: moto's S3, a fake endpoint, and an
S3 that answers ``503 SlowDown``."""

from __future__ import annotations

import dataclasses
import json
import logging

import pytest

from binsight.gateway.errors import RetryableGatewayError
from binsight.gateway.handler import handle, lambda_handler
from binsight.gateway.settings import FetchPolicy, GatewaySettings, PredictionEndpoint
from tests.integration.gateway_servers import (
    FakeEndpoint,
    SlowDownS3,
    corrupt_jpeg,
    fake_prediction,
    make_jpeg,
    s3_bucket,
    s3_record,
    set_aws_test_env,
)

BUCKET = "retry-bins"


class Context:
    aws_request_id = "async-req-1"

    def get_remaining_time_in_millis(self) -> int:
        return 15_000


@pytest.fixture
def s3(s3_server, monkeypatch, tmp_path):
    set_aws_test_env(monkeypatch, tmp_path)
    with s3_bucket(s3_server, BUCKET) as client:
        yield client


def settings(s3_url: str, endpoint: FakeEndpoint, **endpoint_kwargs) -> GatewaySettings:
    config = {"url": endpoint.url, "timeout": 5.0, "retries": 1, "backoff": 0.01, **endpoint_kwargs}
    return GatewaySettings(policy=FetchPolicy(), endpoint=PredictionEndpoint(**config), s3_endpoint_url=s3_url)


def s3_event(*keys: str) -> dict:
    return {"Records": [s3_record(key, BUCKET) for key in keys]}


def test_endpoint_503_raises_for_lambda_then_the_retry_succeeds(s3, s3_server, endpoint, monkeypatch, caplog):
    image = make_jpeg((40, 30))
    s3.put_object(Bucket=BUCKET, Key="bins/a b.jpg", Body=image)
    monkeypatch.setenv("BINSIGHT_ENDPOINT_URL", endpoint.url)
    monkeypatch.setenv("BINSIGHT_S3_ENDPOINT_URL", s3_server)
    monkeypatch.setenv("BINSIGHT_ENDPOINT_RETRIES", "1")
    monkeypatch.setenv("BINSIGHT_ENDPOINT_BACKOFF", "0.01")
    for name in ("BINSIGHT_SAGEMAKER_ENDPOINT", "BINSIGHT_GATEWAY_RAISE_ON_RETRYABLE"):
        monkeypatch.delenv(name, raising=False)
    caplog.set_level(logging.INFO, logger="binsight.gateway")
    event = s3_event("bins/a+b.jpg")

    endpoint.fail_times = 2  # both attempts of this invocation get 503
    with pytest.raises(RetryableGatewayError) as info:
        lambda_handler(event, Context())
    err = info.value
    assert f"s3://{BUCKET}/bins/a b.jpg: endpoint_unavailable (retryable)" in str(err)
    assert "HTTP 503" in str(err) and "async-req-1" in str(err)
    assert err.failures == [(f"s3://{BUCKET}/bins/a b.jpg", "endpoint_unavailable", err.failures[0][2], True)]
    failed = err.response["results"][0]
    assert failed["statusCode"] == 502 and failed["retryable"] is True and "prediction" not in failed
    assert len(endpoint.requests) == 2
    line = json.loads(caplog.records[-1].getMessage())
    assert line["raised"] == "RetryableGatewayError" and line["retryable"] == 1 and line["failed"] == 1

    # Lambda retries the same event once the endpoint is back: it now succeeds and returns normally.
    response = lambda_handler(event, Context())
    assert response["statusCode"] == 200
    assert response["results"] == [
        {"bucket": BUCKET, "key": "bins/a b.jpg", "prediction": fake_prediction(image, None)}
    ]
    assert len(endpoint.requests) == 3


def test_corrupt_jpeg_is_reported_not_raised(s3, s3_server, endpoint):
    s3.put_object(Bucket=BUCKET, Key="broken.jpg", Body=corrupt_jpeg())
    response = handle(s3_event("broken.jpg"), None, settings=settings(s3_server, endpoint))
    assert response["statusCode"] == 207
    (result,) = response["results"]
    assert result["statusCode"] == 415 and result["error"]["code"] == "unsupported_media_type"
    assert result["retryable"] is False
    assert endpoint.requests == []  # a retry could not help, and it never reached the endpoint


def test_missing_object_and_unsupported_record_are_permanent(s3, s3_server, endpoint):
    event = s3_event("gone.jpg")
    event["Records"].append({**s3_record("x.jpg", BUCKET), "eventName": "ObjectRemoved:Delete"})
    response = handle(event, None, settings=settings(s3_server, endpoint))
    codes = [(r["error"]["code"], r["retryable"]) for r in response["results"]]
    assert codes == [("not_found", False), ("unsupported_event", False)]


def test_mixed_event_raises_and_lists_both_failures(s3, s3_server, endpoint):
    good = make_jpeg((24, 24))
    s3.put_object(Bucket=BUCKET, Key="broken.jpg", Body=corrupt_jpeg())
    s3.put_object(Bucket=BUCKET, Key="good.jpg", Body=good)
    endpoint.always_status = 503
    with pytest.raises(RetryableGatewayError) as info:
        handle(s3_event("broken.jpg", "good.jpg"), None, settings=settings(s3_server, endpoint, retries=0))
    err = info.value
    assert [(where, code, again) for where, code, _, again in err.failures] == [
        (f"s3://{BUCKET}/broken.jpg", "unsupported_media_type", False),
        (f"s3://{BUCKET}/good.jpg", "endpoint_unavailable", True),
    ]
    assert str(err).startswith("1 of 2 S3 record(s) failed with a retryable error")
    assert "broken.jpg: unsupported_media_type (permanent)" in str(err)

    # With the setting off the same event is answered (207) instead, each failure marked.
    off = dataclasses.replace(settings(s3_server, endpoint, retries=0), raise_on_retryable=False)
    response = handle(s3_event("broken.jpg", "good.jpg"), None, settings=off)
    assert response["statusCode"] == 207
    assert [r["retryable"] for r in response["results"]] == [False, True]


def test_succeeded_records_are_predicted_again_identically_on_retry(s3, s3_server, endpoint):
    first, second = make_jpeg((30, 30)), make_jpeg((50, 20))
    s3.put_object(Bucket=BUCKET, Key="one.jpg", Body=first)
    s3.put_object(Bucket=BUCKET, Key="two.jpg", Body=second)
    cfg = settings(s3_server, endpoint, retries=0)
    endpoint.fail_times = 0
    baseline = handle(s3_event("one.jpg", "two.jpg"), None, settings=cfg)["results"]

    endpoint.always_status = 504  # a proxy timing out in front of the endpoint: transient
    with pytest.raises(RetryableGatewayError) as info:
        handle(s3_event("one.jpg", "two.jpg"), None, settings=cfg)
    assert [(code, again) for _, code, _, again in info.value.failures] == [("endpoint_error", True)] * 2

    endpoint.always_status = None
    again = handle(s3_event("one.jpg", "two.jpg"), None, settings=cfg)["results"]
    assert again == baseline  # nothing written anywhere, nothing duplicated: same answers
    assert s3.list_objects_v2(Bucket=BUCKET)["KeyCount"] == 2  # the gateway wrote nothing to the bucket


def test_endpoint_timeout_in_s3_event_raises(s3, s3_server, endpoint):
    s3.put_object(Bucket=BUCKET, Key="slow.jpg", Body=make_jpeg())
    endpoint.hang_s = 1.5
    with pytest.raises(RetryableGatewayError) as info:
        handle(s3_event("slow.jpg"), None, settings=settings(s3_server, endpoint, timeout=0.3))
    assert info.value.failures[0][1] == "endpoint_timeout"


def test_s3_slowdown_raises(endpoint, monkeypatch, tmp_path):
    set_aws_test_env(monkeypatch, tmp_path)
    with SlowDownS3() as throttled:
        with pytest.raises(RetryableGatewayError) as info:
            handle(s3_event("busy.jpg"), None, settings=settings(throttled.url, endpoint))
        assert len(throttled.requests) == 3  # botocore's own attempts came first (the S3 client makes 3)
    (where, code, message, again) = info.value.failures[0]
    assert (where, code, again) == (f"s3://{BUCKET}/busy.jpg", "s3_error", True)
    assert "SlowDown" in message
    assert endpoint.requests == []
