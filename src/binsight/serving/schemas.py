"""The HTTP contract of the endpoint: accepted content types, request parsing, and the JSON error shape.

Pure functions over bytes and headers (no web framework), so the contract is testable on its own and the
app stays a thin layer. Every rejection is an :class:`ApiError` carrying the HTTP status, a stable machine
code and a message that says what was wrong and what was expected.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from typing import Any

from binsight.config.schemas import ServeConfig

__all__ = [
    "IMAGE_CONTENT_TYPES",
    "JSON_CONTENT_TYPE",
    "MAX_EXPECTED_QUANTITY",
    "MAX_INSTANCES",
    "ApiError",
    "InvocationRequest",
    "ServeConfig",
    "error_body",
    "media_type",
    "parse_custom_attributes",
    "parse_expected_quantity",
    "parse_invocation",
]

IMAGE_CONTENT_TYPES = frozenset({"image/jpeg", "image/jpg", "image/png", "application/x-image"})
JSON_CONTENT_TYPE = "application/json"
SUPPORTED_TYPES_TEXT = "image/jpeg, image/png, application/x-image or application/json"
# A count far beyond any bin is a client bug, not an inventory question.
MAX_EXPECTED_QUANTITY = 100_000
# One JSON request may carry this many images; more would monopolise the batcher's queue.
MAX_INSTANCES = 64
_DATA_URL = re.compile(r"^data:[\w/+.-]+;base64,", re.IGNORECASE)


class ApiError(Exception):
    """A request the endpoint answers with an error JSON instead of a prediction.

    Attributes:
        status: HTTP status code.
        code: Stable machine-readable code (``invalid_image``, ``payload_too_large``, ...).
        message: What was wrong and what was expected.
        headers: Extra response headers (``Retry-After`` for 503).
    """

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


def error_body(code: str, message: str) -> dict[str, Any]:
    """The error JSON every non-2xx response carries: ``{"error": {"code", "message"}}``."""
    return {"error": {"code": code, "message": message}}


@dataclass
class InvocationRequest:
    """A parsed invocation: one or more encoded images with optional expected quantities.

    Attributes:
        images: Encoded image bytes (JPEG/PNG), not yet decoded.
        expected: The expected quantity per image (None where not given).
        batched: True for a JSON ``{"instances": [...]}`` body, answered with ``{"predictions": [...]}``.
    """

    images: list[bytes]
    expected: list[int | None] = field(default_factory=list)
    batched: bool = False


def media_type(content_type: str | None) -> str:
    """``"Image/JPEG; q=1"`` → ``"image/jpeg"``; empty string when absent."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def parse_expected_quantity(value: Any, where: str = "expected_quantity") -> int | None:
    """Validate an expected quantity from JSON or a header: a whole number in 0..100000, or None.

    Raises:
        ApiError: 400 ``invalid_expected_quantity`` for anything else (floats with a fraction, negative
            numbers, booleans, non-numeric strings).
    """
    if value is None:
        return None
    number: int | None = None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    if number is None or not 0 <= number <= MAX_EXPECTED_QUANTITY:
        raise ApiError(
            400,
            "invalid_expected_quantity",
            f"{where} must be a whole number between 0 and {MAX_EXPECTED_QUANTITY}, got {value!r}",
        )
    return number


def parse_custom_attributes(header: str | None) -> dict[str, str]:
    """Parse SageMaker's ``X-Amzn-SageMaker-Custom-Attributes`` (``k=v`` pairs split by ``,`` or ``;``)."""
    attrs: dict[str, str] = {}
    for part in re.split(r"[,;]", header or ""):
        key, sep, value = part.partition("=")
        if sep and key.strip():
            attrs[key.strip().lower()] = value.strip()
    return attrs


def _decode_b64(value: Any, where: str) -> bytes:
    if not isinstance(value, str) or not value.strip():
        raise ApiError(400, "bad_base64", f"{where} must be a non-empty base64 string of a JPEG or PNG file")
    text = _DATA_URL.sub("", value.strip())
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(
            400, "bad_base64", f"{where} is not valid base64 (standard alphabet, padded); encode the image bytes"
        ) from None
    if not data:
        raise ApiError(400, "empty_body", f"{where} decodes to zero bytes; expected a JPEG or PNG file")
    return data


def _parse_instance(obj: Any, where: str) -> tuple[bytes, int | None]:
    if isinstance(obj, str):
        return _decode_b64(obj, where), None
    if not isinstance(obj, dict):
        raise ApiError(400, "bad_request", f"{where} must be an object {{'image_b64': ..., 'expected_quantity': n}}")
    if "image_b64" not in obj:
        raise ApiError(400, "bad_request", f"{where} lacks 'image_b64' (the base64 of a JPEG or PNG file)")
    expected = parse_expected_quantity(obj.get("expected_quantity"), f"{where}.expected_quantity")
    return _decode_b64(obj["image_b64"], f"{where}.image_b64"), expected


def _parse_json(body: bytes) -> InvocationRequest:
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, "bad_json", f"body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ApiError(400, "bad_request", 'JSON body must be an object: {"image_b64": ...} or {"instances": [...]}')
    if "instances" in doc:
        instances = doc["instances"]
        if not isinstance(instances, list) or not instances:
            raise ApiError(400, "bad_request", "'instances' must be a non-empty list of {'image_b64': ...} objects")
        if len(instances) > MAX_INSTANCES:
            raise ApiError(
                400, "too_many_instances", f"{len(instances)} instances in one request; send at most {MAX_INSTANCES}"
            )
        parsed = [_parse_instance(obj, f"instances[{i}]") for i, obj in enumerate(instances)]
        return InvocationRequest([p[0] for p in parsed], [p[1] for p in parsed], batched=True)
    if "image_b64" in doc:
        image, expected = _parse_instance(doc, "body")
        return InvocationRequest([image], [expected])
    raise ApiError(400, "bad_request", 'JSON body needs "image_b64" (one image) or "instances" (a list of images)')


def parse_invocation(content_type: str | None, body: bytes, custom_attributes: str | None = None) -> InvocationRequest:
    """Turn an invocation's content type, body and custom-attributes header into images to predict.

    An expected quantity in the JSON body wins over one in the header; the header's applies to every image
    that has none of its own.

    Raises:
        ApiError: 415 for an unsupported content type, 400 for an empty body, bad JSON, bad base64 or a bad
            expected quantity.
    """
    kind = media_type(content_type)
    if kind not in IMAGE_CONTENT_TYPES and kind != JSON_CONTENT_TYPE:
        shown = kind or "(none)"
        raise ApiError(
            415, "unsupported_media_type", f"content type {shown} is not supported; send {SUPPORTED_TYPES_TEXT}"
        )
    attrs = parse_custom_attributes(custom_attributes)
    header_expected = parse_expected_quantity(attrs.get("expected_quantity"), "custom attribute expected_quantity")
    if not body:
        raise ApiError(400, "empty_body", f"request body is empty; send a JPEG or PNG image ({SUPPORTED_TYPES_TEXT})")
    if kind == JSON_CONTENT_TYPE:
        request = _parse_json(body)
    else:
        request = InvocationRequest([body], [None])
    request.expected = [e if e is not None else header_expected for e in request.expected]
    return request
