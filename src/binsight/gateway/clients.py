"""Call the prediction endpoint: a binsight/SageMaker-compatible HTTP URL, or SageMaker via boto3.

Both speak ARCHITECTURE.md's contract: POST the image bytes with their content type, the expected quantity
in ``X-Amzn-SageMaker-Custom-Attributes: expected_quantity=n``, and get the prediction JSON back, which is
passed through unchanged. 429/503/throttling and connection failures are retried with exponential backoff
and full jitter; a timeout is not retried (it would multiply the caller's wait).

Errors are marked retryable (see ``errors``) when a later attempt may succeed: still 429/503 after the
retries, unreachable, a timeout, or the endpoint (or a proxy in front of it) answering 502/504.
"""

from __future__ import annotations

import json
import math
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any, Protocol

from binsight.gateway.errors import GatewayError, Misconfigured, UpstreamError, UpstreamTimeout
from binsight.gateway.settings import PredictionEndpoint

RETRY_STATUSES = {429, 503}
# Statuses that say "not now" rather than "not this image": the event is worth retrying later.
TRANSIENT_STATUSES = {429, 502, 503, 504}
PASS_THROUGH_STATUSES = {400, 413, 415}  # the endpoint rejected this image: the caller can act on it
MAX_RESPONSE_BYTES = 1024 * 1024
BACKOFF_CAP = 5.0


class EndpointClient(Protocol):
    """Anything that turns image bytes into the prediction dict."""

    name: str

    def predict(
        self, image: bytes, content_type: str, expected_quantity: int | None, deadline: float
    ) -> dict[str, Any]:
        """Return the endpoint's prediction JSON for ``image`` (``deadline`` is a ``time.monotonic()`` value)."""
        ...


class _Retry(Exception):
    """An attempt failed in a way worth retrying."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def with_retries(
    attempt: Callable[[float], dict[str, Any]],
    *,
    retries: int,
    backoff: float,
    timeout: float,
    deadline: float,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Run ``attempt(timeout_s)`` up to ``retries + 1`` times, backing off between ``_Retry`` failures.

    Each attempt gets ``min(timeout, time left before deadline)``; no sleep runs past the deadline.
    """
    last = ""
    last_retry_after: float | None = None
    for number in range(retries + 1):
        left = deadline - time.monotonic()
        if left <= 0.05:
            raise UpstreamTimeout("no time left to call the endpoint before the function's deadline")
        try:
            return attempt(min(timeout, left))
        except _Retry as exc:
            last, last_retry_after = str(exc), exc.retry_after
            if number == retries:
                break
            delay = random.uniform(0, min(BACKOFF_CAP, backoff * 2**number))
            if exc.retry_after is not None:
                delay = max(delay, min(exc.retry_after, BACKOFF_CAP))
            if time.monotonic() + delay >= deadline:
                break
            sleep(delay)
    raise UpstreamError(
        f"the endpoint is unavailable after {retries + 1} attempts: {last}",
        code="endpoint_unavailable",
        retryable=True,
        retry_after=last_retry_after,
    )


def _custom_attributes(expected_quantity: int | None) -> str | None:
    return None if expected_quantity is None else f"expected_quantity={expected_quantity}"


def _prediction(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UpstreamError("the endpoint answered something that is not JSON") from None
    if not isinstance(value, dict):
        raise UpstreamError("the endpoint answered JSON that is not an object")
    return value


def _endpoint_error(status: int, raw: bytes) -> GatewayError:
    detail = raw[:500].decode("utf-8", errors="replace")
    try:
        error = json.loads(raw).get("error", {})
        detail = f"{error.get('code', '')}: {error.get('message', '')}"
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        pass
    if status in PASS_THROUGH_STATUSES:
        return GatewayError(
            f"the endpoint rejected the image (HTTP {status} {detail})", status=status, code="endpoint_rejected"
        )
    return UpstreamError(f"the endpoint failed (HTTP {status} {detail})", retryable=status in TRANSIENT_STATUSES)


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (the HTTP-date form is ignored); ``None`` when absent or not a sane number."""
    try:
        seconds = float(value) if value else None
    except ValueError:
        return None
    return seconds if seconds is not None and math.isfinite(seconds) and seconds >= 0 else None


class HttpEndpointClient:
    """POST to ``{base}/invocations`` (or to ``base`` itself when it already ends in ``/invocations``)."""

    name = "http"

    def __init__(self, url: str, *, timeout: float = 30.0, retries: int = 3, backoff: float = 0.2) -> None:
        if not url.startswith(("http://", "https://")):
            raise Misconfigured(f"the endpoint URL must start with http:// or https://, got {url!r}")
        url = url.rstrip("/")
        self.url = url if url.endswith("/invocations") else url + "/invocations"
        self.timeout, self.retries, self.backoff = timeout, retries, backoff

    def predict(
        self, image: bytes, content_type: str, expected_quantity: int | None, deadline: float
    ) -> dict[str, Any]:
        """POST ``image`` and return the prediction JSON."""
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        attributes = _custom_attributes(expected_quantity)
        if attributes:
            headers["X-Amzn-SageMaker-Custom-Attributes"] = attributes

        def attempt(timeout: float) -> dict[str, Any]:
            request = urllib.request.Request(self.url, data=image, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=timeout) as response:
                    return _prediction(response.read(MAX_RESPONSE_BYTES))
            except urllib.error.HTTPError as exc:
                raw = exc.read(MAX_RESPONSE_BYTES)
                if exc.code in RETRY_STATUSES:
                    raise _Retry(f"HTTP {exc.code}", _retry_after(exc.headers.get("Retry-After"))) from None
                raise _endpoint_error(exc.code, raw) from None
            except urllib.error.URLError as exc:
                if isinstance(exc.reason, TimeoutError):
                    raise UpstreamTimeout(f"the endpoint did not answer within {timeout:.1f} s") from None
                raise _Retry(f"cannot connect to {self.url}: {exc.reason}") from None
            except TimeoutError:
                raise UpstreamTimeout(f"the endpoint did not answer within {timeout:.1f} s") from None
            except (ConnectionError, OSError) as exc:
                raise _Retry(f"connection to {self.url} failed: {exc}") from None

        return with_retries(
            attempt, retries=self.retries, backoff=self.backoff, timeout=self.timeout, deadline=deadline
        )


class SageMakerEndpointClient:
    """``sagemaker-runtime`` ``invoke_endpoint`` (``endpoint_url`` points boto3 at a compatible server)."""

    name = "sagemaker"

    def __init__(
        self,
        endpoint_name: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.2,
    ) -> None:
        if not region and not endpoint_url:
            raise Misconfigured("BINSIGHT_SAGEMAKER_ENDPOINT needs a region: set AWS_REGION (Lambda sets it)")
        self.endpoint_name, self.endpoint_url, self.region = endpoint_name, endpoint_url, region
        self.timeout, self.retries, self.backoff = timeout, retries, backoff

    def predict(
        self, image: bytes, content_type: str, expected_quantity: int | None, deadline: float
    ) -> dict[str, Any]:
        """Invoke the endpoint and return the prediction JSON."""
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectionClosedError,
            ConnectTimeoutError,
            EndpointConnectionError,
            ReadTimeoutError,
        )

        from binsight.gateway.aws import client

        runtime = client(
            "sagemaker-runtime", endpoint_url=self.endpoint_url, region=self.region, timeout=self.timeout, retries=1
        )
        params: dict[str, Any] = {
            "EndpointName": self.endpoint_name,
            "Body": image,
            "ContentType": content_type,
            "Accept": "application/json",
        }
        attributes = _custom_attributes(expected_quantity)
        if attributes:
            params["CustomAttributes"] = attributes

        def attempt(_timeout: float) -> dict[str, Any]:
            try:
                response = runtime.invoke_endpoint(**params)
                return _prediction(response["Body"].read(MAX_RESPONSE_BYTES))
            except ClientError as exc:
                error = exc.response.get("Error", {})
                code = str(error.get("Code", ""))
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
                # SageMaker wraps container errors as ModelError with the container's own status.
                original = exc.response.get("OriginalStatusCode") or status
                if code in ("ThrottlingException", "ServiceUnavailable") or original in RETRY_STATUSES:
                    raise _Retry(f"{code or 'HTTP'} {original}") from None
                if code == "ValidationError":
                    raise UpstreamError(f"SageMaker: {error.get('Message', code)}") from None
                if code != "ModelError" and isinstance(status, int) and status >= 500:
                    # SageMaker Runtime itself failed (InternalFailure …), not the model container.
                    raise UpstreamError(f"SageMaker: {code} (HTTP {status})", retryable=True) from None
                body = exc.response.get("OriginalMessage") or error.get("Message") or ""
                raise _endpoint_error(int(original), str(body).encode()) from None
            except ReadTimeoutError:
                raise UpstreamTimeout(f"the endpoint did not answer within {self.timeout:.1f} s") from None
            except (ConnectTimeoutError, EndpointConnectionError) as exc:
                raise _Retry(f"cannot connect to the endpoint: {exc}") from None
            except ConnectionClosedError as exc:
                raise UpstreamError(f"the endpoint closed the connection: {exc}", retryable=True) from None
            except BotoCoreError as exc:
                raise UpstreamError(f"calling the endpoint failed: {exc}") from None

        return with_retries(
            attempt, retries=self.retries, backoff=self.backoff, timeout=self.timeout, deadline=deadline
        )


def endpoint_client(config: PredictionEndpoint) -> EndpointClient:
    """Build the client for the endpoint ``config`` names; exactly one of the URL or SageMaker endpoint must be set."""
    if config.url and config.sagemaker_endpoint:
        raise Misconfigured("set BINSIGHT_ENDPOINT_URL or BINSIGHT_SAGEMAKER_ENDPOINT, not both")
    if config.url:
        return HttpEndpointClient(config.url, timeout=config.timeout, retries=config.retries, backoff=config.backoff)
    if config.sagemaker_endpoint:
        return SageMakerEndpointClient(
            config.sagemaker_endpoint,
            endpoint_url=config.sagemaker_endpoint_url,
            region=config.region,
            timeout=config.timeout,
            retries=config.retries,
            backoff=config.backoff,
        )
    raise Misconfigured(
        "no endpoint configured: set BINSIGHT_ENDPOINT_URL (an HTTP endpoint) or BINSIGHT_SAGEMAKER_ENDPOINT "
        "(a SageMaker endpoint name)"
    )
