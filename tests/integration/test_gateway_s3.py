"""``s3://`` inputs and S3 ``ObjectCreated`` events against a real S3-compatible server (moto) on loopback."""

from __future__ import annotations

import json

import pytest

from binsight.gateway.handler import handle
from binsight.gateway.settings import FetchPolicy, GatewaySettings, PredictionEndpoint
from tests.integration.gateway_servers import (
    FakeEndpoint,
    fake_prediction,
    make_jpeg,
    make_png,
    s3_bucket,
    s3_record,
    set_aws_test_env,
)

BUCKET = "bin-photos"


@pytest.fixture
def s3(s3_server, monkeypatch, tmp_path):
    set_aws_test_env(monkeypatch, tmp_path)
    with s3_bucket(s3_server, BUCKET) as client:
        yield client


def settings(s3_url: str, endpoint: FakeEndpoint, **policy) -> GatewaySettings:
    return GatewaySettings(
        policy=FetchPolicy(**policy),
        endpoint=PredictionEndpoint(url=endpoint.url, timeout=5.0, retries=0),
        s3_endpoint_url=s3_url,
    )


def test_s3_uri_and_bucket_key(s3, s3_server, endpoint):
    image = make_jpeg((30, 20))
    s3.put_object(Bucket=BUCKET, Key="bin-images/00001.jpg", Body=image)
    cfg = settings(s3_server, endpoint)
    one = handle({"s3_uri": f"s3://{BUCKET}/bin-images/00001.jpg", "expected_quantity": 3}, None, settings=cfg)
    assert one["statusCode"] == 200 and one["prediction"] == fake_prediction(image, 3)
    two = handle({"bucket": BUCKET, "key": "bin-images/00001.jpg"}, None, settings=cfg)
    assert two["prediction"] == fake_prediction(image, None)
    assert [r["body"] for r in endpoint.requests] == [image, image]


def test_missing_object_and_bucket_are_404(s3, s3_server, endpoint):
    cfg = settings(s3_server, endpoint)
    missing = handle({"s3_uri": f"s3://{BUCKET}/nope.jpg"}, None, settings=cfg)
    assert missing["statusCode"] == 404 and missing["error"]["code"] == "not_found"
    no_bucket = handle({"s3_uri": "s3://no-such-bucket-here/x.jpg"}, None, settings=cfg)
    assert no_bucket["statusCode"] == 404 and "bucket" in no_bucket["error"]["message"]
    assert endpoint.requests == []


def test_oversized_and_non_image_objects(s3, s3_server, endpoint):
    s3.put_object(Bucket=BUCKET, Key="big.jpg", Body=b"\xff" * 5000)
    s3.put_object(Bucket=BUCKET, Key="notes.txt", Body=b"not an image")
    cfg = settings(s3_server, endpoint, max_bytes=4096)
    assert handle({"s3_uri": f"s3://{BUCKET}/big.jpg"}, None, settings=cfg)["statusCode"] == 413
    assert handle({"s3_uri": f"s3://{BUCKET}/notes.txt"}, None, settings=cfg)["statusCode"] == 415
    assert endpoint.requests == []


def test_s3_event_with_several_records(s3, s3_server, endpoint):
    photo, png = make_jpeg((40, 40)), make_png((10, 10))
    s3.put_object(Bucket=BUCKET, Key="my photo(1).jpg", Body=photo, Metadata={"expected-quantity": "2"})
    s3.put_object(Bucket=BUCKET, Key="bins/a b.png", Body=png)
    event = {
        "Records": [
            s3_record("my+photo%281%29.jpg", BUCKET),
            s3_record("bins/a+b.png", BUCKET),
            s3_record("deleted+already.jpg", BUCKET),
        ]
    }
    response = handle(event, None, settings=settings(s3_server, endpoint))
    assert response["statusCode"] == 207
    results = response["results"]
    assert [(r["bucket"], r["key"]) for r in results] == [
        (BUCKET, "my photo(1).jpg"),
        (BUCKET, "bins/a b.png"),
        (BUCKET, "deleted already.jpg"),
    ]
    assert results[0]["prediction"] == fake_prediction(photo, 2)  # expected quantity from object metadata
    assert results[1]["prediction"] == fake_prediction(png, None)
    assert results[2]["statusCode"] == 404 and results[2]["error"]["code"] == "not_found"
    assert "prediction" not in results[2]
    json.dumps(response)  # the response is plain JSON


def test_s3_event_all_ok_is_200(s3, s3_server, endpoint):
    s3.put_object(Bucket=BUCKET, Key="x.jpg", Body=make_jpeg())
    response = handle({"Records": [s3_record("x.jpg", BUCKET)]}, None, settings=settings(s3_server, endpoint))
    assert response["statusCode"] == 200 and "prediction" in response["results"][0]


def test_s3_endpoint_from_environment(s3, s3_server, endpoint, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_server)
    monkeypatch.setenv("BINSIGHT_ENDPOINT_URL", endpoint.url)
    monkeypatch.delenv("BINSIGHT_S3_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("BINSIGHT_SAGEMAKER_ENDPOINT", raising=False)
    image = make_jpeg((22, 22))
    s3.put_object(Bucket=BUCKET, Key="env.jpg", Body=image)
    response = handle({"s3_uri": f"s3://{BUCKET}/env.jpg"}, None)
    assert response["statusCode"] == 200
    assert endpoint.requests[0]["body"] == image
