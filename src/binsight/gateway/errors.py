"""Gateway errors: each carries the HTTP status and a stable machine-readable code.

The handler turns every error into ``{"error": {"code", "message", "request_id"}}``; a message says what
was wrong and how to fix it and never contains a stack trace. This module imports only the standard
library and :mod:`binsight.inputs` (packaged with it) so the gateway stays self-contained in a Lambda zip.

Every error is also *retryable* or *permanent*: retryable errors are transient (the endpoint overloaded or
unreachable after the handler's own retries, a timeout, a connection failure, S3 5xx / SlowDown), so the same
request may succeed later; permanent ones (a bad image, a 4xx, a missing object, a malformed event) fail the
same way every time. ``RetryableGatewayError`` is what the handler raises for an asynchronous event (an S3
notification) with retryable failures, so that AWS Lambda retries the event.
"""

from __future__ import annotations

from typing import Any

from binsight.inputs.values import ApiError


class GatewayError(Exception):
    """An error answered to the caller with ``status`` and ``code``.

    ``retryable`` says whether the same request may succeed later (a transient failure); ``retry_after``
    is the wait in seconds the failing service asked for, when it said.
    """

    status = 500
    code = "internal_error"
    retryable = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        retryable: bool | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        if retryable is not None:
            self.retryable = retryable
        self.retry_after = retry_after

    def to_body(self, request_id: str) -> dict[str, Any]:
        """The JSON error body: ``{"error": {"code", "message", "request_id"}}``."""
        return {"error": {"code": self.code, "message": self.message, "request_id": request_id}}


class BadRequest(GatewayError):
    """400: the event or one of its fields is invalid."""

    status = 400
    code = "bad_request"


class Forbidden(GatewayError):
    """403: the URL resolves to an address the gateway refuses to contact (or S3 denied access)."""

    status = 403
    code = "forbidden_address"


class NotFound(GatewayError):
    """404: the S3 object, bucket or remote resource does not exist."""

    status = 404
    code = "not_found"


class MethodNotAllowed(GatewayError):
    """405: an API Gateway request that is not a POST."""

    status = 405
    code = "method_not_allowed"


class TooLarge(GatewayError):
    """413: the body exceeds the byte cap or the image exceeds the pixel cap."""

    status = 413
    code = "too_large"


class NotAnImage(GatewayError):
    """415: the body is not a supported image (or the content type is unsupported)."""

    status = 415
    code = "unsupported_media_type"


class Misconfigured(GatewayError):
    """500: the gateway's environment variables are missing or invalid."""

    status = 500
    code = "gateway_misconfigured"


class UpstreamError(GatewayError):
    """502: the endpoint (or the image source) failed or answered something unusable."""

    status = 502
    code = "endpoint_error"


class UpstreamTimeout(GatewayError):
    """504: the endpoint (or the image source) did not answer in time. Always retryable."""

    status = 504
    code = "endpoint_timeout"
    retryable = True


def from_input_error(err: ApiError) -> GatewayError:
    """The gateway's error for a refusal of the shared input parser (:mod:`binsight.inputs`): 413 stays
    ``TooLarge``, other image refusals are ``NotAnImage`` (415), the rest ``BadRequest`` (400)."""
    if err.status == 413:
        return TooLarge(err.message, code=err.code)
    if err.code in ("invalid_image", "empty_body", "content_type_mismatch"):
        return NotAnImage(err.message, code="unsupported_media_type" if err.code != "content_type_mismatch" else None)
    return BadRequest(err.message, code=err.code)


def is_retryable(error: BaseException) -> bool:
    """Whether ``error`` is transient, so retrying the same request later may succeed.

    Only ``GatewayError``s can be: anything else is a bug in the gateway, which a retry does not fix.
    """
    return isinstance(error, GatewayError) and bool(error.retryable)


class RetryableGatewayError(Exception):
    """Raised by the handler for an asynchronous event with at least one retryable failure.

    Lambda retries an asynchronous invocation only when the handler raises; the message (Lambda's
    ``errorMessage``) lists each failed record with its error code and reason.

    Attributes:
        response: the result the handler would otherwise have returned (every record, failed or not).
        failures: ``(record, code, message, retryable)`` for every failed record, ``record`` being
            ``s3://bucket/key``.
    """

    def __init__(self, message: str, *, response: dict[str, Any], failures: list[tuple[str, str, str, bool]]) -> None:
        super().__init__(message)
        self.message = message
        self.response = response
        self.failures = failures
