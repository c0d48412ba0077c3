"""Event parsing: every event shape the Lambda handler accepts, and the ways an event can be wrong."""

from __future__ import annotations

import base64
import json

import pytest

from binsight.gateway.errors import GatewayError
from binsight.gateway.events import detect_kind, parse_event, quantity_from_custom_attributes

MAX = 6 * 1024 * 1024
JPEG_ISH = b"\xff\xd8\xff\xe0 not really a jpeg but bytes"


def v1_event(body, headers, *, b64=False, method="POST", query=None) -> dict:
    return {
        "resource": "/predict",
        "path": "/predict",
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": query,
        "requestContext": {"requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef", "stage": "prod"},
        "body": body,
        "isBase64Encoded": b64,
    }


def v2_event(body, headers, *, b64=False, method="POST", query=None) -> dict:
    return {
        "version": "2.0",
        "routeKey": "POST /predict",
        "rawPath": "/predict",
        "rawQueryString": "",
        "headers": headers,
        "queryStringParameters": query,
        "requestContext": {"http": {"method": method, "path": "/predict"}, "requestId": "JKJaXmPLvHcESHA="},
        "body": body,
        "isBase64Encoded": b64,
    }


def s3_record(key: str, bucket: str = "bins", name: str = "ObjectCreated:Put") -> dict:
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventName": name,
        "s3": {"bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"}, "object": {"key": key, "size": 1024}},
    }


def error_of(event) -> GatewayError:
    with pytest.raises(GatewayError) as info:
        parse_event(event, MAX)
    return info.value


def test_direct_shapes():
    url = parse_event({"url": "https://example.com/bin.jpg", "expected_quantity": 3}, MAX)
    assert url.kind == "direct" and url.requests[0].url == "https://example.com/bin.jpg"
    assert url.requests[0].expected_quantity == 3

    s3 = parse_event({"s3_uri": "s3://my-bucket/bin images/00001.jpg"}, MAX).requests[0]
    assert (s3.source, s3.bucket, s3.key) == ("s3", "my-bucket", "bin images/00001.jpg")

    pair = parse_event({"bucket": "my-bucket", "key": "a+b.jpg", "expected_quantity": "2"}, MAX).requests[0]
    assert (pair.bucket, pair.key, pair.expected_quantity) == ("my-bucket", "a+b.jpg", 2)  # not URL-decoded

    inline = parse_event({"image_b64": base64.b64encode(JPEG_ISH).decode()}, MAX).requests[0]
    assert inline.source == "inline" and inline.data == JPEG_ISH and inline.expected_quantity is None

    data_uri = "data:image/jpeg;base64," + base64.b64encode(JPEG_ISH).decode()
    assert parse_event({"image_b64": data_uri}, MAX).requests[0].data == JPEG_ISH


@pytest.mark.parametrize(
    "event",
    [
        {},
        {"url": "https://a/x.jpg", "image_b64": "AAAA"},
        {"bucket": "b-1"},
        {"s3_uri": "https://not-s3/x"},
        {"url": 42},
        {"image_b64": "!!!not base64!!!"},
        {"url": "https://a/x.jpg", "expected_quantity": -1},
        {"url": "https://a/x.jpg", "expected_quantity": True},
        {"url": "https://a/x.jpg", "expected_quantity": "three"},
        ["not", "an", "object"],
    ],
)
def test_invalid_direct_events_are_400(event):
    err = error_of(event)
    assert err.status == 400, err.message
    assert err.message


def test_inline_image_over_cap_is_413_before_decoding():
    err = error_of({"image_b64": "A" * (MAX * 2)})
    assert err.status == 413


def test_v1_json_body_with_mixed_case_headers():
    body = json.dumps({"url": "https://example.com/bin.jpg"})
    headers = {
        "CONTENT-TYPE": "Application/JSON; charset=UTF-8",
        "x-AMZN-sagemaker-custom-attributes": "expected_quantity=4",
    }
    parsed = parse_event(v1_event(body, headers), MAX)
    assert parsed.kind == "apigw_v1"
    request = parsed.requests[0]
    assert request.url == "https://example.com/bin.jpg" and request.expected_quantity == 4


def test_v1_json_field_wins_over_header_quantity():
    body = json.dumps({"url": "https://example.com/bin.jpg", "expected_quantity": 1})
    parsed = parse_event(v1_event(body, {"Content-Type": "application/json", "X-Expected-Quantity": "5"}), MAX)
    assert parsed.requests[0].expected_quantity == 1


def test_v2_raw_base64_image_body_with_query_quantity():
    body = base64.b64encode(JPEG_ISH).decode()
    event = v2_event(body, {"content-type": "image/jpeg"}, b64=True, query={"expected_quantity": "2"})
    parsed = parse_event(event, MAX)
    assert parsed.kind == "apigw_v2"
    assert parsed.requests[0].data == JPEG_ISH and parsed.requests[0].expected_quantity == 2


def test_v2_base64_encoded_json_body():
    body = base64.b64encode(json.dumps({"s3_uri": "s3://bkt/k.jpg"}).encode()).decode()
    parsed = parse_event(v2_event(body, {"content-type": "application/json"}, b64=True), MAX)
    assert (parsed.requests[0].bucket, parsed.requests[0].key) == ("bkt", "k.jpg")


def test_api_errors():
    assert error_of(v2_event("{}", {"content-type": "application/json"}, method="GET")).status == 405
    assert error_of(v1_event("hello", {"Content-Type": "text/plain"})).status == 415
    # A raw image that API Gateway passed as text (no binary media types configured) cannot be trusted.
    raw = error_of(v1_event("\xff\xd8garbled", {"Content-Type": "image/jpeg"}, b64=False))
    assert raw.status == 400 and "isBase64Encoded" in raw.message
    assert error_of(v1_event(None, {"Content-Type": "application/json"})).status == 400
    assert error_of(v2_event("{not json", {"content-type": "application/json"})).status == 400
    assert error_of(v2_event("[1, 2]", {"content-type": "application/json"})).status == 400


def test_s3_event_several_records_with_encoded_keys():
    event = {
        "Records": [
            s3_record("my+photo%281%29.jpg"),
            s3_record("bin-images/00042.jpg", bucket="other-bucket"),
            s3_record("caf%C3%A9+bin.png"),
        ]
    }
    parsed = parse_event(event, MAX)
    assert parsed.kind == "s3"
    assert [(r.bucket, r.key) for r in parsed.requests] == [
        ("bins", "my photo(1).jpg"),
        ("other-bucket", "bin-images/00042.jpg"),
        ("bins", "café bin.png"),
    ]
    assert all(r.error is None for r in parsed.requests)


def test_s3_event_bad_records_fail_alone():
    event = {"Records": [s3_record("ok.jpg"), s3_record("gone.jpg", name="ObjectRemoved:Delete"), {"s3": {}}]}
    requests = parse_event(event, MAX).requests
    assert requests[0].error is None
    assert requests[1].error.code == "unsupported_event" and requests[1].key == "gone.jpg"
    assert requests[2].error.status == 400
    assert error_of({"Records": []}).status == 400


def test_detect_kind():
    assert detect_kind({"Records": []}) == "s3"
    assert detect_kind(v1_event("{}", {})) == "apigw_v1"
    assert detect_kind(v2_event("{}", {})) == "apigw_v2"
    assert detect_kind({"url": "x"}) == "direct"
    assert detect_kind("text") == "unknown"


def test_custom_attributes_header():
    assert quantity_from_custom_attributes("trace=abc, expected_quantity=3") == 3
    assert quantity_from_custom_attributes("trace=abc") is None
    with pytest.raises(GatewayError):
        quantity_from_custom_attributes("expected_quantity=x")
