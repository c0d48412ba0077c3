"""The ASGI app of ``binsight serve``: SageMaker's hosting contract on FastAPI (routes and error mapping).

Routes: ``GET /ping``, ``POST /invocations``, ``POST /endpoints/{name}/invocations`` (the SageMaker Runtime
path, so boto3's ``sagemaker-runtime`` client works with ``endpoint_url``; its errors are SageMaker Runtime's
``ModelError``/``ValidationError``), ``GET /metrics`` (Prometheus), ``GET /docs`` and ``/redoc`` (the schema at
``/openapi.json``; the pages' JS/CSS come from the installed ``fastapi-offline`` package, so they work
offline). Given a :class:`~binsight.serving.faults.Faults`, also the ``/_test/*`` routes.

A body is read only by the invocation routes, through :func:`read_body`: a declared Content-Length over the
limit is answered 413 before a byte is read, a streamed body is counted while it arrives (413 the moment it
passes the limit) and must arrive within ``body_timeout`` (else 408).

Example::

    app = create_app("runs/train/exp", ServeConfig(max_batch_size=8))
    uvicorn.run(app, port=8080)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from binsight import __version__
from binsight.audit.capture import CaptureWriter
from binsight.config.schemas import ServeConfig
from binsight.inputs.values import ApiError
from binsight.serving.faults import Faults, fault_routes
from binsight.serving.metrics import ServingMetrics
from binsight.serving.model_service import ModelService
from binsight.serving.openapi import (
    ENDPOINT_INVOCATION_DOC,
    ENDPOINT_INVOCATION_RESPONSES,
    INVOCATION_DOC,
    INVOCATION_RESPONSES,
    METRICS_RESPONSES,
    PING_RESPONSES,
)
from binsight.serving.schemas import error_body, parse_invocation, runtime_error_body

log = logging.getLogger("binsight.serving")
access_log = logging.getLogger("binsight.access")

_ENDPOINT_PATH = re.compile(r"^/endpoints/[^/]+/invocations/?$")
_KNOWN_PATHS = {"/ping", "/invocations", "/metrics", "/docs", "/redoc", "/openapi.json"}
DOCS_ASSETS_PATH = "/docs-assets"  # Swagger UI and ReDoc files, from the fastapi-offline package
_CONTENT_LENGTH = re.compile(r"[0-9]{1,18}")


def metric_path(path: str) -> str:
    """A low-cardinality path label: endpoint names collapse to ``{name}``, unknown paths to ``other``."""
    if _ENDPOINT_PATH.match(path):
        return "/endpoints/{name}/invocations"
    if path in _KNOWN_PATHS:
        return path
    return "other"


def error_response(err: ApiError) -> JSONResponse:
    return JSONResponse(error_body(err.code, err.message), status_code=err.status, headers=err.headers)


def runtime_error(kind: str, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    """An error as SageMaker Runtime answers it: botocore maps ``x-amzn-ErrorType`` to its modeled exception."""
    return JSONResponse(body, status_code=status, headers={**(headers or {}), "x-amzn-ErrorType": kind})


class AccessLogMiddleware:
    """Pure ASGI middleware: request id, one JSON access-log line and the request metrics per request."""

    def __init__(self, app: ASGIApp, metrics: ServingMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        headers = dict(scope.get("headers") or [])
        request_id = (headers.get(b"x-amzn-requestid") or b"").decode("latin-1")[:64] or uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode("latin-1"))]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - start
            path = metric_path(scope.get("path", ""))
            self.metrics.observe_request(scope.get("method", ""), path, status, elapsed)
            code = state.get("error_code")
            if code:
                self.metrics.errors.labels(code).inc()
            if path not in ("/ping", "/metrics") or status >= 400:
                access_log.info(
                    json.dumps(
                        {
                            "ts": round(time.time(), 3),
                            "method": scope.get("method"),
                            "path": scope.get("path"),
                            "status": status,
                            "ms": round(elapsed * 1000, 2),
                            "batch_size": state.get("batch_size"),
                            "request_id": request_id,
                            "error": code,
                        }
                    )
                )


async def read_body(request: Request, limit: int, timeout: float) -> bytes:
    """Read the request body: at most ``limit`` bytes (Content-Length first, then while streaming), all of it
    within ``timeout`` seconds.

    Raises:
        ApiError: 413 when the body is over the limit, 408 when it arrives too slowly, 400 for a malformed
            Content-Length or a client that went away mid-body.
    """
    declared = request.headers.get("content-length")
    too_large = ApiError(
        413, "payload_too_large", f"request body is over the {limit / 1024 / 1024:.0f} MB limit; send a smaller image"
    )
    if declared is not None:
        if not _CONTENT_LENGTH.fullmatch(declared.strip()):
            raise ApiError(400, "bad_request", f"Content-Length {declared[:40]!r} is not a number")
        if int(declared) > limit:
            raise too_large
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise too_large
                chunks.append(chunk)
    except TimeoutError:
        raise ApiError(
            408, "body_timeout", f"the request body did not arrive within {timeout:g}s ({size} bytes came)"
        ) from None
    except ClientDisconnect:
        raise ApiError(400, "client_disconnected", "the client went away before sending the whole body") from None
    return b"".join(chunks)


def create_app(
    model_path: str | Path,
    config: ServeConfig | None = None,
    *,
    faults: Faults | None = None,
    on_fatal: Callable[[str], None] | None = None,
) -> FastAPI:
    """Build the endpoint's ASGI app; the model loads in the background once the app starts.

    Args:
        model_path: Run directory or artifact folder.
        config: Serving options (defaults: :class:`ServeConfig`).
        faults: Fault injection for tests: adds the ``/_test/*`` routes (None in production).
        on_fatal: Called with a message when the model cannot be loaded.
    """
    config = config or ServeConfig()
    metrics = ServingMetrics()
    service = ModelService(model_path, config, metrics, on_fatal=on_fatal, faults=faults)
    capture = CaptureWriter.from_config(config)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        yield
        await service.stop()

    app = FastAPIOffline(
        title="binsight endpoint",
        version=__version__,
        description="Counts the items in a warehouse bin photo. SageMaker-compatible: /ping and /invocations; "
        "boto3's sagemaker-runtime client works against /endpoints/{name}/invocations.",
        lifespan=lifespan,
        static_url=DOCS_ASSETS_PATH,
        favicon_url=f"{DOCS_ASSETS_PATH}/favicon.png",
    )
    app.state.service = service
    app.state.metrics = metrics
    app.add_middleware(AccessLogMiddleware, metrics=metrics)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        request.state.error_code = exc.code
        return error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        request.state.error_code = code
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error in %s %s", request.method, request.url.path)
        request.state.error_code = "internal_error"
        return JSONResponse(error_body("internal_error", "internal server error; see the server log"), 500)

    @app.get("/ping", summary="Health: 200 when the model is loaded and answers, else 503", responses=PING_RESPONSES)
    async def ping() -> JSONResponse:
        if service.ready:
            return JSONResponse({"status": "ready"})
        body = {"status": service.status, **error_body("not_ready", service.detail)}
        return JSONResponse(body, status_code=503, headers={"Retry-After": "5"})

    async def invoke(request: Request) -> JSONResponse:
        info: dict[str, Any] = {}
        try:
            async with asyncio.timeout(config.request_timeout):
                body = await read_body(request, config.max_body_bytes, config.body_timeout)
                parsed = parse_invocation(
                    request.headers.get("content-type"),
                    body,
                    request.headers.get("x-amzn-sagemaker-custom-attributes"),
                )
                predictions = await service.predict(parsed, info)
        except TimeoutError:
            raise ApiError(
                504, "timeout", f"the prediction took longer than {config.request_timeout:g}s; retry later"
            ) from None
        except ApiError:
            raise
        except Exception:
            log.exception("prediction failed (request %s)", getattr(request.state, "request_id", "?"))
            raise ApiError(500, "inference_failed", "the model failed on this request; see the server log") from None
        finally:
            request.state.batch_size = info.get("batch_size")
        if capture is not None:
            await asyncio.to_thread(capture.record_request, request, parsed, predictions)
        if parsed.batched:
            return JSONResponse({"predictions": predictions})
        return JSONResponse(predictions[0])

    @app.post(
        "/invocations",
        summary="Predict the item count of one image (or a JSON batch)",
        openapi_extra=INVOCATION_DOC,
        responses=INVOCATION_RESPONSES,
    )
    async def invocations(request: Request) -> JSONResponse:
        return await invoke(request)

    @app.post(
        "/endpoints/{name}/invocations",
        summary="SageMaker Runtime path (boto3 invoke_endpoint): /invocations with SageMaker's errors",
        description="Errors come as SageMaker Runtime sends them, so botocore raises its modeled exceptions: "
        "a model error is 424 `ModelError` with `OriginalStatusCode`/`OriginalMessage`, a name this server "
        "does not serve is 400 `ValidationError`.",
        openapi_extra=ENDPOINT_INVOCATION_DOC,
        responses=ENDPOINT_INVOCATION_RESPONSES,
    )
    async def endpoint_invocations(request: Request) -> JSONResponse:
        name = str(request.path_params["name"])
        if config.endpoint_name and name != config.endpoint_name:
            request.state.error_code = "unknown_endpoint"
            with contextlib.suppress(ApiError):  # read the body, so the connection stays usable (keep-alive)
                await read_body(request, config.max_body_bytes, config.body_timeout)
            return runtime_error("ValidationError", 400, {"Message": f"Endpoint {name[:200]} not found."})
        try:
            return await invoke(request)
        except ApiError as exc:
            request.state.error_code = exc.code
            return runtime_error("ModelError", 424, runtime_error_body(exc), exc.headers)

    @app.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse, responses=METRICS_RESPONSES)
    async def prometheus() -> Response:
        data, content_type = metrics.render()
        return Response(data, media_type=content_type)

    if faults is not None:
        app.include_router(fault_routes(faults, lambda: service.batcher))
    return app
