"""Retryable vs permanent: how S3 and endpoint failures are classified, the on/off setting, and the message of
the error that makes Lambda retry an event."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from binsight.gateway.clients import _endpoint_error, _retry_after
from binsight.gateway.errors import (
    BadRequest,
    GatewayError,
    Misconfigured,
    NotAnImage,
    RetryableGatewayError,
    UpstreamTimeout,
    is_retryable,
)
from binsight.gateway.fetch import _s3_error
from binsight.gateway.handler import MAX_LISTED_FAILURES, retryable_error
from binsight.gateway.settings import GatewaySettings


def client_error(code: str, status: int) -> ClientError:
    response = {"Error": {"Code": code, "Message": f"{code} says hi"}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, "GetObject")


@pytest.mark.parametrize(
    ("code", "status", "retryable", "gateway_status"),
    [
        ("SlowDown", 503, True, 502),
        ("ServiceUnavailable", 503, True, 502),
        ("InternalError", 500, True, 502),
        ("RequestTimeout", 400, True, 502),  # S3 gave up waiting for the request: transient despite the 400
        ("NoSuchKey", 404, False, 404),
        ("NoSuchBucket", 404, False, 404),
        ("AccessDenied", 403, False, 403),
        ("InvalidObjectState", 403, False, 403),  # an archived object: only a restore helps
        ("InvalidRange", 416, False, 502),
    ],
)
def test_s3_errors(code, status, retryable, gateway_status):
    err = _s3_error(client_error(code, status), "s3://b/k.jpg")
    assert (is_retryable(err), err.status) == (retryable, gateway_status)
    assert "s3://b/k.jpg" in err.message


@pytest.mark.parametrize(
    ("status", "retryable", "code"),
    [(429, True, "endpoint_error"), (502, True, "endpoint_error"), (503, True, "endpoint_error")]
    + [(504, True, "endpoint_error"), (500, False, "endpoint_error"), (400, False, "endpoint_rejected")]
    + [(413, False, "endpoint_rejected"), (415, False, "endpoint_rejected"), (404, False, "endpoint_error")],
)
def test_endpoint_statuses(status, retryable, code):
    err = _endpoint_error(status, b'{"error": {"code": "x", "message": "y"}}')
    assert (is_retryable(err), err.code) == (retryable, code)


def test_is_retryable_defaults():
    assert is_retryable(UpstreamTimeout("slow")) is True
    assert is_retryable(NotAnImage("corrupt")) is False
    assert is_retryable(BadRequest("malformed")) is False
    assert is_retryable(GatewayError("bug")) is False
    assert is_retryable(TimeoutError("not ours")) is False  # only gateway errors are classified
    assert not issubclass(RetryableGatewayError, GatewayError)  # an `except GatewayError` must not swallow it


def test_retry_after_header_values():
    assert _retry_after("2.5") == 2.5 and _retry_after("0") == 0.0
    for junk in (None, "", "soon", "nan", "inf", "-3", "Wed, 21 Oct 2015 07:28:00 GMT"):
        assert _retry_after(junk) is None


@pytest.mark.parametrize(("raw", "expected"), [(None, True), ("", True), ("1", True), ("on", True)])
def test_raise_on_retryable_setting_on(raw, expected):
    env = {} if raw is None else {"BINSIGHT_GATEWAY_RAISE_ON_RETRYABLE": raw}
    assert GatewaySettings.from_env(env).raise_on_retryable is expected


@pytest.mark.parametrize("raw", ["0", "false", "No", "OFF"])
def test_raise_on_retryable_setting_off(raw):
    assert GatewaySettings.from_env({"BINSIGHT_GATEWAY_RAISE_ON_RETRYABLE": raw}).raise_on_retryable is False


def test_raise_on_retryable_setting_typo_is_refused():
    with pytest.raises(Misconfigured) as info:
        GatewaySettings.from_env({"BINSIGHT_GATEWAY_RAISE_ON_RETRYABLE": "ture"})
    assert "BINSIGHT_GATEWAY_RAISE_ON_RETRYABLE='ture'" in info.value.message


def failed(key: str, code: str, retryable: bool) -> dict:
    return {
        "bucket": "b",
        "key": key,
        "statusCode": 502,
        "retryable": retryable,
        "error": {"code": code, "message": "m"},
    }


def test_retryable_error_lists_records_and_caps_the_list():
    results = [{"bucket": "b", "key": "ok.jpg", "prediction": {}}]
    results += [failed(f"{i}.jpg", "endpoint_unavailable", True) for i in range(MAX_LISTED_FAILURES + 5)]
    results.append(failed("bad.jpg", "unsupported_media_type", False))
    response = {"statusCode": 207, "request_id": "r-1", "results": results}
    err = retryable_error(response)
    text = str(err)
    assert text.startswith(f"{MAX_LISTED_FAILURES + 5} of {len(results)} S3 record(s) failed with a retryable error")
    assert "s3://b/0.jpg: endpoint_unavailable (retryable): m" in text and "request r-1" in text
    assert "… and 6 more" in text and "ok.jpg" not in text
    assert len(err.failures) == MAX_LISTED_FAILURES + 6 and err.failures[-1] == (
        "s3://b/bad.jpg",
        "unsupported_media_type",
        "m",
        False,
    )
    assert err.response is response
