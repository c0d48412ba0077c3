"""Gateway errors: each carries the HTTP status and a stable machine-readable code.

The handler turns every error into ``{"error": {"code", "message", "request_id"}}``; a message says what
was wrong and how to fix it and never contains a stack trace. This module imports only the standard
library so the gateway stays self-contained in a Lambda zip.
"""

from __future__ import annotations


class GatewayError(Exception):
    """An error answered to the caller with ``status`` and ``code``."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code

    def to_body(self, request_id: str) -> dict:
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
    """504: the endpoint (or the image source) did not answer in time."""

    status = 504
    code = "endpoint_timeout"
