"""Parse Lambda events into image requests.

Shapes understood (see docs/gateway.md for examples):

* direct invocation: ``{"url"}``, ``{"s3_uri"}``, ``{"bucket", "key"}`` or ``{"image_b64"}``, each with an
  optional ``expected_quantity``;
* API Gateway REST (v1) and HTTP API (v2) proxy events: a JSON body with the direct fields, or a raw image
  body (``isBase64Encoded: true`` and an image content type); header names in any case;
* S3 notifications: ``{"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "s3": …}]}``,
  keys URL-decoded with ``unquote_plus`` (``+`` is a space).

JSON bodies and expected quantities go through the strict parsers shared with the model server
(:mod:`binsight.inputs.values`): one accepted range, ASCII digits only, bounded JSON depth and integer size.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from binsight.gateway.errors import (
    BadRequest,
    GatewayError,
    MethodNotAllowed,
    NotAnImage,
    TooLarge,
    from_input_error,
)
from binsight.inputs import values
from binsight.inputs.values import ApiError

DIRECT, APIGW_V1, APIGW_V2, S3_EVENT = "direct", "apigw_v1", "apigw_v2", "s3"
API_KINDS = (APIGW_V1, APIGW_V2)

JSON_TYPES = {"application/json", "text/json"}
RAW_IMAGE_TYPES = {"application/x-image", "application/octet-stream"}
SOURCE_FIELDS = ("url", "s3_uri", "bucket", "image_b64")
_S3_URI = re.compile(r"^s3://([^/]+)/(.+)$", re.DOTALL)


@dataclass
class ImageRequest:
    """One image to predict: where it comes from, plus the caller's expected quantity.

    ``source`` is ``"url"``, ``"s3"`` or ``"inline"``. For S3 events a record that cannot be used carries
    ``error`` instead (the other records are still answered).
    """

    source: str
    url: str | None = None
    bucket: str | None = None
    key: str | None = None
    data: bytes | None = None
    expected_quantity: int | None = None
    error: GatewayError | None = None
    content_type: str | None = None  # the declared type of an inline image body (checked against its bytes)


@dataclass
class ParsedEvent:
    """The event kind and the image requests it holds (exactly one unless ``kind == "s3"``)."""

    kind: str
    requests: list[ImageRequest]


def detect_kind(event: Any) -> str:
    """Name the event shape: ``direct``, ``apigw_v1``, ``apigw_v2``, ``s3`` or ``unknown``."""
    if not isinstance(event, dict):
        return "unknown"
    if isinstance(event.get("Records"), list):
        return S3_EVENT
    context = event.get("requestContext")
    if event.get("version") == "2.0" and isinstance(context, dict) and isinstance(context.get("http"), dict):
        return APIGW_V2
    if "httpMethod" in event:
        return APIGW_V1
    return DIRECT


def parse_event(event: Any, max_bytes: int) -> ParsedEvent:
    """Turn a Lambda event into image requests.

    Args:
        event: the event as Lambda passes it (a dict decoded from JSON).
        max_bytes: the image byte cap, checked on inline images before they are decoded.

    Raises:
        GatewayError: 400 for a malformed event, 405 for a non-POST API request, 413 for an oversized
            inline image, 415 for an unsupported body content type.
    """
    kind = detect_kind(event)
    if kind == "unknown":
        raise BadRequest(f"the event must be a JSON object, got {type(event).__name__}")
    if kind == S3_EVENT:
        return ParsedEvent(kind, _parse_s3_records(event["Records"]))
    if kind == DIRECT:
        return ParsedEvent(kind, [_parse_fields(event, max_bytes)])
    return ParsedEvent(kind, [_parse_api_event(event, kind, max_bytes)])


def _parse_fields(fields: dict[str, Any], max_bytes: int, default_quantity: int | None = None) -> ImageRequest:
    given = [name for name in SOURCE_FIELDS if fields.get(name) not in (None, "")]
    if len(given) != 1:
        what = "none" if not given else ", ".join(given)
        raise BadRequest(
            f"give exactly one image source: 'url', 's3_uri', 'bucket' + 'key', or 'image_b64' (got {what})"
        )
    quantity = parse_expected_quantity(fields.get("expected_quantity"), "expected_quantity")
    if quantity is None:
        quantity = default_quantity
    name = given[0]
    value = fields[name]
    if name == "url":
        return ImageRequest("url", url=_string(value, "url"), expected_quantity=quantity)
    if name == "s3_uri":
        bucket, key = parse_s3_uri(_string(value, "s3_uri"))
        return ImageRequest("s3", bucket=bucket, key=key, expected_quantity=quantity)
    if name == "bucket":
        object_key = fields.get("key")
        if not isinstance(object_key, str) or not object_key:
            raise BadRequest("'bucket' needs a non-empty string 'key' (the object key, not URL-encoded)")
        return ImageRequest("s3", bucket=_bucket(_string(value, "bucket")), key=object_key, expected_quantity=quantity)
    data = decode_base64_image(_string(value, "image_b64"), max_bytes)
    return ImageRequest("inline", data=data, expected_quantity=quantity)


def _parse_api_event(event: dict[str, Any], kind: str, max_bytes: int) -> ImageRequest:
    if kind == APIGW_V2:
        method = event["requestContext"]["http"].get("method", "")
    else:
        method = event.get("httpMethod", "")
    if str(method).upper() != "POST":
        raise MethodNotAllowed(f"use POST with a JSON or image body (got {method or 'no method'})")
    headers = lower_headers(event.get("headers"))
    query = event.get("queryStringParameters") or {}
    quantity = parse_expected_quantity(query.get("expected_quantity"), "query parameter expected_quantity")
    if quantity is None:
        quantity = parse_expected_quantity(headers.get("x-expected-quantity"), "header X-Expected-Quantity")
    if quantity is None:
        quantity = quantity_from_custom_attributes(headers.get("x-amzn-sagemaker-custom-attributes"))

    body = event.get("body")
    if body is None or body == "":
        raise BadRequest("the request has no body: send JSON {'url' | 's3_uri' | 'image_b64', …} or an image")
    if not isinstance(body, str):
        raise BadRequest("the proxy event 'body' must be a string")
    is_b64 = bool(event.get("isBase64Encoded"))
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()

    if content_type.startswith("image/") or content_type in RAW_IMAGE_TYPES:
        if not is_b64:
            raise BadRequest(
                f"a raw {content_type} body must arrive base64-encoded (isBase64Encoded: true): add the image "
                "types to the REST API's binary media types, or send JSON {'image_b64': …}"
            )
        data = decode_base64_image(body, max_bytes)
        return ImageRequest("inline", data=data, expected_quantity=quantity, content_type=content_type)

    if content_type in JSON_TYPES or (not content_type and body.lstrip().startswith("{")):
        text = body
        if is_b64:
            # A JSON body is base64-encoded by HTTP APIs for some clients; it is at most 4/3 of the cap.
            if len(body) > max_bytes * 2:
                raise TooLarge(f"the request body is over {max_bytes * 2} bytes")
            text = _b64decode(body, "body").decode("utf-8", errors="replace")
        try:
            fields = values.loads_strict(text, max_bytes * 2)
        except ApiError as exc:
            raise from_input_error(exc) from None
        if not isinstance(fields, dict):
            raise BadRequest("the JSON body must be an object like {'url': 'https://…'}")
        return _parse_fields(fields, max_bytes, default_quantity=quantity)

    raise NotAnImage(
        f"unsupported content type {content_type or '(none)'}: send application/json, image/jpeg, image/png or "
        "application/x-image"
    )


def _parse_s3_records(records: list[Any]) -> list[ImageRequest]:
    if not records:
        raise BadRequest("the S3 event has no Records")
    requests = []
    for index, record in enumerate(records):
        try:
            requests.append(_parse_s3_record(record, index))
        except GatewayError as err:
            bucket = key = None
            if isinstance(record, dict) and isinstance(record.get("s3"), dict):
                bucket = (record["s3"].get("bucket") or {}).get("name")
                raw_key = (record["s3"].get("object") or {}).get("key")
                key = unquote_plus(raw_key) if isinstance(raw_key, str) else None
            requests.append(ImageRequest("s3", bucket=bucket, key=key, error=err))
    return requests


def _parse_s3_record(record: Any, index: int) -> ImageRequest:
    if not isinstance(record, dict):
        raise BadRequest(f"Records[{index}] is not an object")
    source = record.get("eventSource")
    if source is not None and source != "aws:s3":
        raise BadRequest(f"Records[{index}] comes from {source!r}; only aws:s3 notifications are handled")
    name = str(record.get("eventName", ""))
    if not name.startswith("ObjectCreated"):
        raise BadRequest(
            f"Records[{index}] is a {name or 'unnamed'} event; only ObjectCreated events are predicted",
            code="unsupported_event",
        )
    s3: Any = record.get("s3")
    try:
        bucket = s3["bucket"]["name"]
        key = s3["object"]["key"]
    except (TypeError, KeyError):
        raise BadRequest(f"Records[{index}] lacks s3.bucket.name or s3.object.key") from None
    if not isinstance(bucket, str) or not isinstance(key, str) or not bucket or not key:
        raise BadRequest(f"Records[{index}] has an empty bucket name or object key")
    # S3 notifications URL-encode keys with '+' for spaces.
    return ImageRequest("s3", bucket=_bucket(bucket), key=unquote_plus(key))


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """Split ``s3://bucket/key`` (the key is taken literally, not URL-decoded)."""
    match = _S3_URI.match(uri)
    if not match:
        raise BadRequest(f"s3_uri must look like s3://bucket/key, got {uri[:200]!r}")
    return _bucket(match.group(1)), match.group(2)


def _bucket(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{1,254}", name):
        raise BadRequest(f"{name[:100]!r} is not a valid S3 bucket name")
    return name


def decode_base64_image(text: str, max_bytes: int) -> bytes:
    """Decode a base64 image (a ``data:image/…;base64,`` prefix is allowed), refusing oversize ones first."""
    if text.startswith("data:") and "," in text[:200]:
        text = text.split(",", 1)[1]
    # Check the encoded length before decoding so a huge string costs no decode work.
    if len(text) > (max_bytes * 4) // 3 + 1024:
        raise TooLarge(f"the image is over the {max_bytes}-byte limit")
    data = _b64decode(text, "image")
    if len(data) > max_bytes:
        raise TooLarge(f"the image is {len(data)} bytes, over the {max_bytes}-byte limit")
    if not data:
        raise BadRequest("the image is empty")
    return data


def _b64decode(text: str, what: str) -> bytes:
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"the {what} is not valid base64") from None


def parse_expected_quantity(value: Any, what: str) -> int | None:
    """A whole number in the shared range (:func:`binsight.inputs.values.parse_quantity`); None when absent."""
    try:
        return values.parse_quantity(value, what)
    except ApiError as exc:
        raise BadRequest(exc.message, code=exc.code) from None


def quantity_from_custom_attributes(header: str | None) -> int | None:
    """Read ``expected_quantity=n`` from a SageMaker ``X-Amzn-SageMaker-Custom-Attributes`` header."""
    try:
        return values.quantity_from_custom_attributes(header)
    except ApiError as exc:
        raise BadRequest(exc.message, code=exc.code) from None


def lower_headers(headers: Any) -> dict[str, str]:
    """Header names lower-cased (API Gateway v1 keeps the client's case, v2 lower-cases)."""
    if not isinstance(headers, dict):
        return {}
    return {str(k).lower(): str(v) for k, v in headers.items() if v is not None}


def _string(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise BadRequest(f"'{name}' must be a string, got {type(value).__name__}")
    return value
