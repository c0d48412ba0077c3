"""The HTTP contract of ``/invocations``: accepted content types, request parsing and the JSON error shape.

Pure functions over bytes and headers (no web framework). Untrusted values go through the strict parsers of
:mod:`binsight.inputs` (shared with the gateway); every rejection is an :class:`~binsight.inputs.values.ApiError`
carrying the HTTP status, a stable machine code and a message that says what was wrong and what was expected.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from typing import Any

from binsight.inputs.values import ApiError, loads_strict, parse_quantity, quantity_from_custom_attributes

IMAGE_CONTENT_TYPES = frozenset({"image/jpeg", "image/jpg", "image/png", "application/x-image"})
JSON_CONTENT_TYPE = "application/json"
SUPPORTED_TYPES_TEXT = "image/jpeg, image/png, application/x-image or application/json"
# One JSON request may carry this many images; more would monopolise the batcher's queue.
MAX_INSTANCES = 64
_DATA_URL = re.compile(r"^data:[\w/+.-]+;base64,", re.IGNORECASE)


def error_body(code: str, message: str) -> dict[str, Any]:
    """The error JSON every non-2xx response carries: ``{"error": {"code", "message"}}``."""
    return {"error": {"code": code, "message": message}}


def runtime_error_body(err: ApiError) -> dict[str, Any]:
    """SageMaker Runtime's ``ModelError`` body (botocore's ``sagemaker-runtime`` model) for an error the model
    answered with ``err``: the original status and error JSON, plus the server's own ``error`` object."""
    kind = "client" if err.status < 500 else "server"
    original = error_body(err.code, err.message)
    return {
        "ErrorCode": f"{kind.upper()}_ERROR_FROM_MODEL",
        "Message": f'Received {kind} error ({err.status}) from model with message "{err.message}"',
        "OriginalStatusCode": err.status,
        "OriginalMessage": json.dumps(original, separators=(",", ":")),
        **original,
    }


@dataclass
class InvocationRequest:
    """A parsed invocation: one or more encoded images with optional expected quantities.

    Attributes:
        images: Encoded image bytes (JPEG/PNG), not yet decoded.
        expected: The expected quantity per image (None where not given).
        batched: True for a JSON ``{"instances": [...]}`` body, answered with ``{"predictions": [...]}``.
        content_type: The declared type of raw image bodies (checked against the bytes); "" for JSON ones.
    """

    images: list[bytes]
    expected: list[int | None] = field(default_factory=list)
    batched: bool = False
    content_type: str = ""


def media_type(content_type: str | None) -> str:
    """``"Image/JPEG; q=1"`` → ``"image/jpeg"``; empty string when absent."""
    return (content_type or "").split(";", 1)[0].strip().lower()


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
    expected = parse_quantity(obj.get("expected_quantity"), f"{where}.expected_quantity")
    return _decode_b64(obj["image_b64"], f"{where}.image_b64"), expected


def _parse_json(body: bytes) -> InvocationRequest:
    doc = loads_strict(body, max_bytes=len(body))  # the size was capped while reading the body
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
        shown = kind[:60] or "(none)"
        raise ApiError(
            415, "unsupported_media_type", f"content type {shown} is not supported; send {SUPPORTED_TYPES_TEXT}"
        )
    header_expected = quantity_from_custom_attributes(custom_attributes)
    if not body:
        raise ApiError(400, "empty_body", f"request body is empty; send a JPEG or PNG image ({SUPPORTED_TYPES_TEXT})")
    if kind == JSON_CONTENT_TYPE:
        request = _parse_json(body)
    else:
        request = InvocationRequest([body], [None], content_type=kind)
    request.expected = [e if e is not None else header_expected for e in request.expected]
    return request
