"""The strict input parser shared by the model server and the gateway (binsight.inputs): the hostile inputs
that used to get a 500 or an expensive decode, and a Hypothesis fuzz of the server's request parser and the
gateway's event parser asserting that no input gets a 5xx."""

from __future__ import annotations

import base64
import io
import json
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from binsight.gateway.errors import GatewayError
from binsight.gateway.events import parse_event
from binsight.inputs.images import ImageLimits, check_image, decode_image
from binsight.inputs.values import MAX_EXPECTED_QUANTITY, ApiError, loads_strict, parse_quantity
from binsight.serving.schemas import parse_invocation

LIMITS = ImageLimits()


def jpeg(size: tuple[int, int] = (40, 30), exif_orientation: int | None = None) -> bytes:
    image = Image.new("RGB", size, (200, 30, 30))
    image.paste((30, 30, 200), (0, 0, size[0] // 2, size[1]))  # left half blue: shows which way is up
    buf = io.BytesIO()
    exif = image.getexif()
    if exif_orientation is not None:
        exif[0x0112] = exif_orientation
    image.save(buf, format="JPEG", exif=exif.tobytes())
    return buf.getvalue()


def lying_jpeg(width: int, height: int) -> bytes:
    """A tiny JPEG whose header declares ``width`` x ``height`` (its SOF0 size rewritten)."""
    data = bytearray(jpeg((8, 8)))
    at = data.index(b"\xff\xc0") + 5
    data[at : at + 4] = struct.pack(">HH", height, width)
    return bytes(data)


@pytest.mark.parametrize(
    "body",
    [b"[" * 100_000, b"1" * 5000, b'{"image_b64": "x", "expected_quantity": ' + b"9" * 5000 + b"}", b"NaN"],
    ids=["deep", "huge-int-body", "huge-int-field", "nan"],
)
def test_hostile_json_is_400_not_500(body):
    with pytest.raises(ApiError) as info:
        parse_invocation("application/json", body)
    assert (info.value.status, info.value.code) == (400, "bad_json")


@pytest.mark.parametrize(
    "value", ["²", "٣", "1e3", " 1 2", "0x10", "+5", "-0", True, 1.5, -1, MAX_EXPECTED_QUANTITY + 1]
)
def test_quantities_are_ascii_digits_in_one_range(value):
    with pytest.raises(ApiError) as info:
        parse_quantity(value)
    assert info.value.status == 400 and str(MAX_EXPECTED_QUANTITY) in info.value.message
    with pytest.raises(ApiError):
        parse_invocation("image/jpeg", b"\xff\xd8\xff", f"expected_quantity={value}")
    with pytest.raises(GatewayError) as gateway:
        parse_event({"url": "https://example.com/a.jpg", "expected_quantity": value}, 1 << 20)
    assert gateway.value.status == 400


def test_quantity_range_is_the_same_for_server_and_gateway():
    assert parse_quantity(str(MAX_EXPECTED_QUANTITY)) == MAX_EXPECTED_QUANTITY
    event = {"url": "https://example.com/a.jpg", "expected_quantity": MAX_EXPECTED_QUANTITY}
    assert parse_event(event, 1 << 20).requests[0].expected_quantity == MAX_EXPECTED_QUANTITY
    assert loads_strict(b'{"a": [1, 2.5, "x"]}', 100) == {"a": [1, 2.5, "x"]}


def test_a_small_file_declaring_a_huge_canvas_is_refused_before_decoding():
    data = lying_jpeg(6000, 6000)
    assert len(data) < 1000
    with pytest.raises(ApiError) as info:
        check_image(data, "image/jpeg", LIMITS, verify=False)
    assert (info.value.status, info.value.code) == (
        413,
        "image_too_large",
    ) and "decompression bomb" in info.value.message


def test_only_jpeg_and_png_and_the_declared_type_must_match():
    tiff = io.BytesIO()
    Image.new("RGB", (8, 8)).save(tiff, format="TIFF")
    for data in (tiff.getvalue(), b"GIF89a" + b"\0" * 30, b"not an image"):
        with pytest.raises(ApiError) as info:
            check_image(data, None, LIMITS)
        assert info.value.code == "invalid_image"
    png = io.BytesIO()
    Image.new("RGB", (8, 8)).save(png, format="PNG")
    with pytest.raises(ApiError) as info:
        check_image(png.getvalue(), "image/jpeg", LIMITS)
    assert info.value.code == "content_type_mismatch"
    assert check_image(png.getvalue(), "application/x-image", LIMITS).format == "PNG"
    assert check_image(jpeg(), "image/jpg; q=1", LIMITS).content_type == "image/jpeg"


def test_exif_orientation_is_applied_identically_in_training_and_serving(tmp_path):
    from binsight.data.cache import _decode_one
    from binsight.data.transforms import to_uint8_array

    rotated = jpeg((40, 20), exif_orientation=6)  # stored landscape, shown portrait
    path = tmp_path / "rotated.jpg"
    path.write_bytes(rotated)
    training = _decode_one(path, 32, "letterbox")
    serving = to_uint8_array(decode_image(rotated, "image/jpeg", LIMITS), 32, "letterbox")
    assert (training == serving).all()
    # Upright means portrait: the letterbox pads left and right, not top and bottom.
    assert abs(int(training[16, 0, 0]) - 124) < 3 and abs(int(training[0, 16, 0]) - 124) > 20


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
request_fields = st.dictionaries(
    st.sampled_from(["image_b64", "instances", "expected_quantity", "url", "s3_uri", "bucket", "key", "x"]),
    json_values | st.text(max_size=40),
    max_size=4,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    content_type=st.sampled_from(
        ["application/json", "image/jpeg", "image/png", "text/plain", "", "application/x-image"]
    )
    | st.text(max_size=30),
    body=st.binary(max_size=200) | request_fields.map(lambda d: json.dumps(d).encode()),
    attributes=st.none() | st.text(max_size=40),
)
def test_fuzz_server_request_parser_never_5xx(content_type, body, attributes):
    try:
        parse_invocation(content_type, body, attributes)
    except ApiError as err:
        assert 400 <= err.status < 500


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=300), prefix=st.sampled_from([b"", b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n"]))
def test_fuzz_image_checks_never_5xx(data, prefix):
    try:
        decode_image(prefix + data, None, LIMITS)
    except ApiError as err:
        assert 400 <= err.status < 500


def api_event(body: str, content_type: str, b64: bool) -> dict:
    return {
        "version": "2.0",
        "requestContext": {"http": {"method": "POST"}},
        "headers": {"content-type": content_type},
        "body": base64.b64encode(body.encode()).decode() if b64 else body,
        "isBase64Encoded": b64,
    }


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    event=request_fields
    | st.builds(
        api_event,
        st.text(max_size=60) | request_fields.map(json.dumps),
        st.sampled_from(["application/json", "image/jpeg", "text/plain", ""]),
        st.booleans(),
    )
    | st.builds(lambda records: {"Records": records}, st.lists(json_values | request_fields, max_size=3))
    | json_values
)
def test_fuzz_gateway_event_parser_never_5xx(event):
    try:
        parsed = parse_event(event, 1 << 20)
    except GatewayError as err:
        assert 400 <= err.status < 500, err.message
    else:
        assert parsed.requests
