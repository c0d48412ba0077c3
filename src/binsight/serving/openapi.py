"""The OpenAPI description of the model server's routes: bodies, responses, error statuses and examples.

The routes read raw bodies (images) themselves, so FastAPI cannot infer their contract: the pydantic models
here describe the JSON they answer with (never used to validate) and the ``*_DOC`` dicts are the routes'
``openapi_extra``/``responses``. The statuses listed are the ones the server really sends; FastAPI's 422
does not occur (no route has a parameter FastAPI validates).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, RootModel

from binsight.inputs.values import ApiError
from binsight.serving.schemas import MAX_INSTANCES, error_body, runtime_error_body

CUSTOM_ATTRIBUTES_HEADER = "X-Amzn-SageMaker-Custom-Attributes"


class Check(BaseModel):
    """The comparison with an expected quantity (present only when one was given)."""

    expected_quantity: int
    match: bool = Field(description="the predicted count equals the expected one")
    decision: str = Field(description="accept, review or reject (the model's review band)")


class ModelInfo(BaseModel):
    name: str
    version: str


class Prediction(BaseModel):
    """The answer for one image."""

    predicted_label: str
    predicted_count: int | None = Field(description="the label as a number; null for a non-numeric label")
    confidence: float = Field(description="probability of the predicted label")
    probabilities: dict[str, float]
    class_labels: list[str]
    model: ModelInfo
    check: Check | None = None


class BatchPrediction(BaseModel):
    """The answer to a JSON ``{"instances": [...]}`` request, in request order."""

    predictions: list[Prediction]


class InvocationResponse(RootModel[Prediction | BatchPrediction]):
    """One prediction, or ``{"predictions": [...]}`` for a JSON batch request."""


class ErrorDetail(BaseModel):
    code: str = Field(description="stable machine code, e.g. invalid_image, payload_too_large, overloaded")
    message: str = Field(description="what was wrong and what was expected")


class ErrorBody(BaseModel):
    """Every non-2xx answer of the model server."""

    error: ErrorDetail


class RuntimeErrorBody(BaseModel):
    """SageMaker Runtime's error shape on ``/endpoints/{name}/invocations`` (botocore reads ``x-amzn-ErrorType``):
    ``ModelError`` (424) carries the model's original status and body; ``ValidationError`` (400) an unknown
    endpoint name."""

    Message: str
    ErrorCode: str | None = None
    OriginalStatusCode: int | None = None
    OriginalMessage: str | None = Field(None, description="the model server's own error JSON, as text")


_EXAMPLE_PREDICTION: dict[str, Any] = {
    "predicted_label": "3",
    "predicted_count": 3,
    "confidence": 0.87,
    "probabilities": {"1": 0.01, "2": 0.06, "3": 0.87, "4": 0.05, "5": 0.01},
    "class_labels": ["1", "2", "3", "4", "5"],
    "model": {"name": "binsight", "version": "3"},
    "check": {"expected_quantity": 3, "match": True, "decision": "accept"},
}

_ERRORS: dict[int, tuple[str, str, str]] = {
    400: ("bad request: an image that does not decode, bad JSON or base64, a bad expected quantity",
          "invalid_image", "the body is not a decodable JPEG or PNG image"),
    408: ("the request body did not arrive within body_timeout", "body_timeout",
          "the request body did not arrive within 30s (1024 bytes came)"),
    413: ("the body is over max_body_bytes", "payload_too_large",
          "request body is over the 6 MB limit; send a smaller image"),
    415: ("unsupported content type", "unsupported_media_type",
          "content type text/plain is not supported; send image/jpeg, image/png, application/x-image or "
          "application/json"),
    500: ("the model failed on this request", "inference_failed",
          "the model failed on this request; see the server log"),
    503: ("the model is loading or the server is overloaded (Retry-After says when to retry)", "overloaded",
          "the inference queue is full; retry shortly"),
    504: ("the prediction took longer than request_timeout", "timeout",
          "the prediction took longer than 60s; retry later"),
}  # fmt: skip


def _error_response(status: int) -> dict[str, Any]:
    description, code, message = _ERRORS[status]
    return {
        "description": description,
        "model": ErrorBody,
        "content": {"application/json": {"example": error_body(code, message)}},
    }


_IMAGE = {"schema": {"type": "string", "format": "binary"}}
_INVOCATION_REQUEST: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "image/jpeg": _IMAGE,
            "image/png": _IMAGE,
            "application/x-image": _IMAGE,
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "image_b64": {"type": "string", "description": "base64 of a JPEG or PNG file"},
                        "expected_quantity": {"type": "integer", "minimum": 0},
                        "instances": {
                            "type": "array",
                            "maxItems": MAX_INSTANCES,
                            "items": {
                                "type": "object",
                                "properties": {
                                    "image_b64": {"type": "string"},
                                    "expected_quantity": {"type": "integer", "minimum": 0},
                                },
                                "required": ["image_b64"],
                            },
                        },
                    },
                },
                "examples": {
                    "one": {"value": {"image_b64": "/9j/4AAQSkZJRg...", "expected_quantity": 3}},
                    "batch": {"value": {"instances": [{"image_b64": "/9j/4AAQ..."}, {"image_b64": "iVBORw0K..."}]}},
                },
            },
        },
    },
    "parameters": [
        {
            "name": CUSTOM_ATTRIBUTES_HEADER,
            "in": "header",
            "required": False,
            "description": "SageMaker custom attributes; `expected_quantity=N` checks the prediction against N "
            "(a quantity in the JSON body wins)",
            "schema": {"type": "string", "maxLength": 1024},
            "example": "expected_quantity=3",
        }
    ],
}

INVOCATION_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": 'the prediction (a JSON batch request gets `{"predictions": [...]}`)',
        "model": InvocationResponse,
        "content": {"application/json": {"example": _EXAMPLE_PREDICTION}},
    },
    **{status: _error_response(status) for status in _ERRORS},
}

INVOCATION_DOC: dict[str, Any] = _INVOCATION_REQUEST

ENDPOINT_INVOCATION_DOC: dict[str, Any] = {
    **_INVOCATION_REQUEST,
    "parameters": [
        {"name": "name", "in": "path", "required": True, "schema": {"type": "string"},
         "description": "the endpoint's name (a plain `binsight serve` accepts any name)"},
        *_INVOCATION_REQUEST["parameters"],
    ],
}  # fmt: skip

ENDPOINT_INVOCATION_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: INVOCATION_RESPONSES[200],
    400: {
        "description": "ValidationError (header `x-amzn-ErrorType`): no endpoint of this name is served here",
        "model": RuntimeErrorBody,
        "content": {"application/json": {"example": {"Message": "Endpoint nope not found."}}},
    },
    424: {
        "description": "ModelError (header `x-amzn-ErrorType`): the model answered an error; "
        "`OriginalStatusCode` is one of the statuses of POST /invocations",
        "model": RuntimeErrorBody,
        "content": {
            "application/json": {
                "example": runtime_error_body(ApiError(400, "invalid_image", _ERRORS[400][2])),
            }
        },
    },
}

PING_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "the model is loaded and answers", "content": {"application/json": {
        "example": {"status": "ready"}}}},
    503: {"description": "loading or unhealthy (Retry-After: 5)", "model": ErrorBody, "content": {
        "application/json": {"example": {"status": "loading", **error_body("not_ready", "loading the model")}}}},
}  # fmt: skip

METRICS_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Prometheus text exposition format",
        "content": {"text/plain": {"schema": {"type": "string"}, "example": "binsight_requests_total{...} 12.0\n"}},
    }
}
