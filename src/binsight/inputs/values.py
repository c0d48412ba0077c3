"""Strict parsing of JSON bodies and of the numbers inside them and in headers.

Every rejection is an :class:`ApiError` with an HTTP status (400 unless said otherwise), a stable code and
a message that says what was wrong; the server and the gateway answer it as it is, never as a 500.
"""

from __future__ import annotations

import json
import re
from typing import Any

# A count far beyond any bin is a client bug, not an inventory question. One range for server and gateway.
MAX_EXPECTED_QUANTITY = 100_000
# JSON nesting deeper than this is refused (request bodies are two or three levels deep).
MAX_JSON_DEPTH = 32
# Integer literals in JSON longer than this are refused before int() sees them (CPython caps int() at 4,300).
MAX_INT_DIGITS = 20
_DIGITS = re.compile(rf"[0-9]{{1,{len(str(MAX_EXPECTED_QUANTITY))}}}")


class ApiError(Exception):
    """A request answered with an error JSON instead of a result.

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


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ApiError(400, "bad_json", f"an integer in the JSON body has more than {MAX_INT_DIGITS} digits")
    return int(text)


def _no_constant(name: str) -> Any:
    raise ApiError(400, "bad_json", f"{name} is not valid JSON (only finite numbers are)")


def _depth(doc: Any) -> int:
    """Nesting depth of parsed JSON, computed without recursion."""
    deepest, stack = 0, [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
    return deepest


def loads_strict(body: bytes | str, max_bytes: int, what: str = "body") -> Any:
    """Parse JSON from an untrusted source.

    Refused with 400 ``bad_json``: invalid UTF-8 or JSON, ``NaN``/``Infinity``, integers longer than
    :data:`MAX_INT_DIGITS` digits, nesting deeper than :data:`MAX_JSON_DEPTH`; with 413 ``payload_too_large``:
    more than ``max_bytes`` bytes.
    """
    if len(body) > max_bytes:
        raise ApiError(413, "payload_too_large", f"the JSON {what} is over the {max_bytes}-byte limit")
    try:
        doc = json.loads(body, parse_int=_bounded_int, parse_constant=_no_constant)
    except ApiError:
        raise
    except RecursionError:
        raise ApiError(400, "bad_json", f"the JSON {what} is nested more than {MAX_JSON_DEPTH} levels deep") from None
    except json.JSONDecodeError as exc:
        raise ApiError(400, "bad_json", f"the {what} is not valid JSON: {exc.msg} at position {exc.pos}") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise ApiError(400, "bad_json", f"the {what} is not valid JSON: {type(exc).__name__}") from None
    if _depth(doc) > MAX_JSON_DEPTH:
        raise ApiError(400, "bad_json", f"the JSON {what} is nested more than {MAX_JSON_DEPTH} levels deep")
    return doc


def parse_quantity(value: Any, where: str = "expected_quantity") -> int | None:
    """An expected quantity: a whole number in ``0..MAX_EXPECTED_QUANTITY`` or None (absent / empty).

    Accepted: ints, floats with no fraction (``2.0``), and strings of ASCII digits (surrounding blanks ignored).
    Refused with 400 ``invalid_expected_quantity``: booleans, fractions, negatives, other strings (``"²"``,
    ``"٣"``, ``"1e3"``), numbers out of range.
    """
    if value is None or value == "":
        return None
    number: int | None = None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        number = int(value.strip())
    if number is None or not 0 <= number <= MAX_EXPECTED_QUANTITY:
        shown = _short_repr(value)
        raise ApiError(
            400,
            "invalid_expected_quantity",
            f"{where} must be a whole number between 0 and {MAX_EXPECTED_QUANTITY}, got {shown}",
        )
    return number


def _short_repr(value: Any, limit: int = 40) -> str:
    try:
        text = repr(value)
    except ValueError:  # an int too long to print (CPython's 4,300-digit limit)
        return "a number with thousands of digits"
    return text if len(text) <= limit else text[:limit] + "…"


def parse_custom_attributes(header: str | None) -> dict[str, str]:
    """Parse SageMaker's ``X-Amzn-SageMaker-Custom-Attributes`` (``k=v`` pairs split by ``,`` or ``;``)."""
    attrs: dict[str, str] = {}
    for part in re.split(r"[,;]", header or ""):
        key, sep, value = part.partition("=")
        if sep and key.strip():
            attrs[key.strip().lower()] = value.strip()
    return attrs


def quantity_from_custom_attributes(header: str | None) -> int | None:
    """``expected_quantity=n`` of a custom-attributes header, checked by :func:`parse_quantity`."""
    value = parse_custom_attributes(header).get("expected_quantity")
    return parse_quantity(value, "custom attribute expected_quantity")
