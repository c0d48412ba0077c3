"""The AWS Lambda entry point: ``binsight.gateway.handler.lambda_handler``.

An event (direct, API Gateway v1/v2, or S3 notification — see ``events``) names one image or several; each
is fetched safely (``fetch``), checked to be a sane image (``images``), sent to the endpoint (``clients``)
and the endpoint's prediction JSON is returned unchanged inside the response shape of the event kind:

* API Gateway: ``{"statusCode", "headers": {"Content-Type", "X-Request-Id"}, "body": "<JSON>",
  "isBase64Encoded": false}`` where body is the prediction or ``{"error": {"code", "message", "request_id"}}``;
* direct: ``{"statusCode": 200, "request_id", "prediction"}`` or ``{"statusCode", "request_id", "retryable", "error"}``;
* S3: ``{"statusCode": 200|207, "request_id", "results": [{"bucket", "key", "prediction"} |
  {"bucket", "key", "statusCode", "retryable", "error"}]}``.

Retries: Lambda retries an asynchronous invocation (an S3 notification) only when the handler raises. So when
at least one record of an S3 event failed with a *retryable* error (see ``errors.is_retryable``), ``handle``
raises ``RetryableGatewayError`` instead of returning (unless ``raise_on_retryable`` is off); permanent
failures alone are returned, since a retry cannot fix them. Re-running the records that had succeeded is
safe: the gateway writes nothing anywhere, and a prediction is a pure function of the image. Synchronous
callers (API Gateway, direct invocations) get the error response as before; API Gateway responses to a
retryable error carry ``Retry-After``.

Every invocation writes one JSON log line (request id, event kind, status, milliseconds). This module
imports no torch and no model code.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
import uuid
from typing import Any

from binsight.gateway.clients import EndpointClient, endpoint_client
from binsight.gateway.errors import GatewayError, RetryableGatewayError, is_retryable
from binsight.gateway.events import API_KINDS, S3_EVENT, ImageRequest, detect_kind, parse_event
from binsight.gateway.settings import GatewaySettings

log = logging.getLogger("binsight.gateway")
DEFAULT_DEADLINE_S = 60.0
# Event kinds Lambda invokes asynchronously (it retries them only when the handler raises). A direct event
# may come from a synchronous or an asynchronous invoke and the handler cannot tell, so it is answered.
ASYNC_KINDS = (S3_EVENT,)
MAX_LISTED_FAILURES = 20


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    """AWS Lambda handler: settings come from environment variables (see docs/gateway.md)."""
    if log.level == logging.NOTSET:
        # Lambda's root logger defaults to WARNING; the one-line-per-invocation record must still appear.
        log.setLevel(os.environ.get("BINSIGHT_GATEWAY_LOG_LEVEL", "INFO").upper())
    return handle(event, context)


def handle(event: Any, context: Any = None, *, settings: GatewaySettings | None = None) -> dict[str, Any]:
    """Answer one Lambda event.

    Args:
        event: the Lambda event.
        context: the Lambda context (``aws_request_id``, ``get_remaining_time_in_millis``) or ``None``.
        settings: fetch policy and endpoint; read from ``os.environ`` when ``None``.

    Returns:
        The response dict for the event kind (see the module docstring).

    Raises:
        RetryableGatewayError: only for an asynchronous (S3) event where at least one record failed with a
            retryable error and ``settings.raise_on_retryable`` is on; its ``response`` holds the result.
            Nothing else is raised: errors become error responses.
    """
    started = time.monotonic()
    kind = detect_kind(event)
    request_id = _request_id(event, context)
    record: dict[str, Any] = {"msg": "invocation", "request_id": request_id, "kind": kind}
    retry: RetryableGatewayError | None = None
    try:
        settings = settings or GatewaySettings.from_env(os.environ)
        deadline = _deadline(context, started)
        parsed = parse_event(event, settings.policy.max_bytes)
        client = endpoint_client(settings.endpoint)
        record["backend"] = client.name
        if parsed.kind == S3_EVENT:
            results = [_answer_record(req, settings, client, deadline) for req in parsed.requests]
            failed = sum(1 for r in results if "error" in r)
            retryable = sum(1 for r in results if r.get("retryable"))
            status = 200 if failed == 0 else 207
            record.update(records=len(results), failed=failed, retryable=retryable)
            response = {"statusCode": status, "request_id": request_id, "results": results}
            if retryable and parsed.kind in ASYNC_KINDS and settings.raise_on_retryable:
                retry = retryable_error(response)
                record["raised"] = type(retry).__name__
        else:
            request = parsed.requests[0]
            record["source"] = request.source
            prediction = predict_request(request, settings, client, deadline)
            status = 200
            response = _success(kind, prediction, request_id)
    except GatewayError as err:
        status = err.status
        record["error"] = err.code
        response = _failure(kind, err, request_id)
    except Exception:  # a bug: log the traceback, answer a generic 500 without it
        log.exception("gateway bug while handling request %s", request_id)
        bug = GatewayError("internal error in the gateway; see its logs", status=500, code="internal_error")
        status = 500
        record["error"] = bug.code
        response = _failure(kind, bug, request_id)
    record.update(status=status, ms=round((time.monotonic() - started) * 1000, 1))
    log.info(json.dumps(record, sort_keys=True))
    if retry is not None:
        raise retry
    return response


def retryable_error(response: dict[str, Any]) -> RetryableGatewayError:
    """The exception that makes Lambda retry an S3 event whose ``response`` has a retryable failure.

    Its message names every failed record (``s3://bucket/key``), the error code, the reason and whether
    that failure is retryable; permanent failures are listed too, as they will fail again on the retry.
    """
    results = response["results"]
    failures = [
        (
            f"s3://{r.get('bucket') or '?'}/{r.get('key') or '?'}",
            r["error"]["code"],
            r["error"]["message"],
            bool(r.get("retryable")),
        )
        for r in results
        if "error" in r
    ]
    retryable = sum(1 for f in failures if f[3])
    listed = "; ".join(
        f"{where}: {code} ({'retryable' if again else 'permanent'}): {message[:300]}"
        for where, code, message, again in failures[:MAX_LISTED_FAILURES]
    )
    if len(failures) > MAX_LISTED_FAILURES:
        listed += f"; … and {len(failures) - MAX_LISTED_FAILURES} more"
    message = (
        f"{retryable} of {len(results)} S3 record(s) failed with a retryable error, so the event is raised for "
        f"Lambda to retry (request {response['request_id']}): {listed}"
    )
    return RetryableGatewayError(message, response=response, failures=failures)


def predict_request(
    request: ImageRequest, settings: GatewaySettings, client: EndpointClient, deadline: float
) -> dict[str, Any]:
    """Fetch (or take) the image of ``request``, validate it and return the endpoint's prediction."""
    from binsight.gateway.fetch import fetch_s3, fetch_url
    from binsight.gateway.images import inspect_image

    policy = settings.policy
    quantity = request.expected_quantity
    declared = request.content_type
    if request.source == "url":
        fetched = fetch_url(request.url or "", policy)
        data, declared = fetched.data, fetched.content_type
    elif request.source == "s3":
        fetched = fetch_s3(request.bucket or "", request.key or "", policy.max_bytes, _s3_client(settings))
        data, declared = fetched.data, fetched.content_type
        if quantity is None:
            quantity = _quantity_from_metadata(fetched.metadata)
    else:
        data = request.data or b""
    info = inspect_image(data, policy.max_pixels, declared)
    return client.predict(data, info.content_type, quantity, deadline)


def _answer_record(
    request: ImageRequest, settings: GatewaySettings, client: EndpointClient, deadline: float
) -> dict[str, Any]:
    result: dict[str, Any] = {"bucket": request.bucket, "key": request.key}
    try:
        if request.error is not None:
            raise request.error
        result["prediction"] = predict_request(request, settings, client, deadline)
    except GatewayError as err:
        result["statusCode"] = err.status
        result["retryable"] = is_retryable(err)
        result["error"] = {"code": err.code, "message": err.message}
    return result


def _quantity_from_metadata(metadata: dict[str, str]) -> int | None:
    """S3 user metadata ``x-amz-meta-expected-quantity`` (or ``…expected_quantity``) gives the check value."""
    from binsight.gateway.events import parse_expected_quantity

    raw = metadata.get("expected-quantity", metadata.get("expected_quantity"))
    try:
        return parse_expected_quantity(raw, "object metadata expected-quantity")
    except GatewayError:
        return None


def _s3_client(settings: GatewaySettings) -> Any:
    from binsight.gateway.aws import client

    policy = settings.policy
    region = settings.endpoint.region
    return client("s3", endpoint_url=settings.s3_endpoint_url, region=region, timeout=policy.read_timeout, retries=3)


def _success(kind: str, prediction: dict[str, Any], request_id: str) -> dict[str, Any]:
    if kind in API_KINDS:
        return _proxy_response(200, prediction, request_id)
    return {"statusCode": 200, "request_id": request_id, "prediction": prediction}


def _failure(kind: str, err: GatewayError, request_id: str) -> dict[str, Any]:
    body = err.to_body(request_id)
    if kind in API_KINDS:
        response = _proxy_response(err.status, body, request_id)
        if is_retryable(err):
            # The client retries a synchronous request, not Lambda: tell it when (the endpoint's own hint).
            response["headers"]["Retry-After"] = str(max(1, math.ceil(err.retry_after or 1)))
        return response
    return {"statusCode": err.status, "request_id": request_id, "retryable": is_retryable(err), **body}


def _proxy_response(status: int, body: dict[str, Any], request_id: str) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json", "X-Request-Id": request_id},
        "body": json.dumps(body),
        "isBase64Encoded": False,
    }


def _request_id(event: Any, context: Any) -> str:
    aws_id = getattr(context, "aws_request_id", None)
    if aws_id:
        return str(aws_id)
    if isinstance(event, dict) and isinstance(event.get("requestContext"), dict):
        api_id = event["requestContext"].get("requestId")
        if api_id:
            return str(api_id)
    return str(uuid.uuid4())


def _deadline(context: Any, started: float) -> float:
    """The monotonic time by which the answer must be ready (Lambda's remaining time minus a margin)."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if callable(remaining):
        try:
            return started + max(0.1, float(remaining()) / 1000.0 - 0.25)
        except Exception:  # a foreign context object: fall back to the default
            pass
    return started + DEFAULT_DEADLINE_S
