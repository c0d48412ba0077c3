"""The serving request contract (binsight.serving.schemas): content types, JSON bodies, expected quantities."""

from __future__ import annotations

import base64
import json

import pytest

from binsight.config.loader import ConfigError, load_config
from binsight.config.schemas import ServeConfig
from binsight.inputs.values import ApiError, parse_custom_attributes, parse_quantity
from binsight.serving.schemas import MAX_INSTANCES, media_type, parse_invocation

IMG = b"\xff\xd8\xff\xe0fake-jpeg-bytes"
B64 = base64.b64encode(IMG).decode()


def error_of(*args) -> ApiError:
    with pytest.raises(ApiError) as info:
        parse_invocation(*args)
    return info.value


@pytest.mark.parametrize("ct", ["image/jpeg", "IMAGE/PNG; charset=binary", "application/x-image", "image/jpg"])
def test_image_bodies_pass_through(ct):
    req = parse_invocation(ct, IMG)
    assert req.images == [IMG] and req.expected == [None] and not req.batched


def test_json_single_and_instances():
    req = parse_invocation("application/json", json.dumps({"image_b64": B64, "expected_quantity": 3}).encode())
    assert req.images == [IMG] and req.expected == [3] and not req.batched
    body = {"instances": [{"image_b64": B64}, {"image_b64": "data:image/jpeg;base64," + B64, "expected_quantity": 0}]}
    req = parse_invocation("application/json; charset=utf-8", json.dumps(body).encode(), "expected_quantity=5")
    assert req.batched and req.images == [IMG, IMG] and req.expected == [5, 0]


@pytest.mark.parametrize(
    ("ct", "body", "status", "code"),
    [
        ("text/plain", b"x", 415, "unsupported_media_type"),
        (None, b"x", 415, "unsupported_media_type"),
        ("image/jpeg", b"", 400, "empty_body"),
        ("application/json", b"[1, 2]", 400, "bad_request"),
        ("application/json", b"{", 400, "bad_json"),
        ("application/json", b'{"image_b64": "abc$"}', 400, "bad_base64"),
        ("application/json", b'{"image_b64": ""}', 400, "bad_base64"),
        ("application/json", b'{"other": 1}', 400, "bad_request"),
        ("application/json", b'{"instances": [{"no_image": 1}]}', 400, "bad_request"),
        (
            "application/json",
            json.dumps({"image_b64": B64, "expected_quantity": 2.5}).encode(),
            400,
            "invalid_expected_quantity",
        ),
        (
            "application/json",
            json.dumps({"instances": [B64] * (MAX_INSTANCES + 1)}).encode(),
            400,
            "too_many_instances",
        ),
    ],
)
def test_bad_requests(ct, body, status, code):
    err = error_of(ct, body)
    assert (err.status, err.code) == (status, code)
    assert err.message


def test_bad_quantity_in_header_is_400():
    err = error_of("image/jpeg", IMG, "expected_quantity=three")
    assert err.code == "invalid_expected_quantity"


@pytest.mark.parametrize(("value", "expected"), [(3, 3), ("4", 4), (2.0, 2), (None, None), (0, 0)])
def test_expected_quantity_accepts_whole_numbers(value, expected):
    assert parse_quantity(value) == expected


@pytest.mark.parametrize("value", [True, -1, 1.5, "x", 10**9, [1]])
def test_expected_quantity_rejects_the_rest(value):
    with pytest.raises(ApiError):
        parse_quantity(value)


def test_custom_attributes_and_media_type():
    assert parse_custom_attributes("a=1, Expected_Quantity = 2;c=x=y") == {
        "a": "1",
        "expected_quantity": "2",
        "c": "x=y",
    }
    assert parse_custom_attributes(None) == {}
    assert media_type(" Application/JSON ; charset=utf-8") == "application/json"


def test_serve_config_is_validated():
    assert load_config(ServeConfig, None, ["max_batch_size=16"]).max_batch_size == 16
    with pytest.raises(ConfigError):
        load_config(ServeConfig, None, ["queue_size=0"])
    with pytest.raises(ConfigError):
        load_config(ServeConfig, None, ["backend=tensorrt"])
