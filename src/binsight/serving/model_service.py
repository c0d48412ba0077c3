"""The model behind the endpoint: background loading, warm-up, health, and the request path
(decode + preprocess in a thread pool → micro-batcher → prediction JSON).

States: ``loading`` (model not yet usable) → ``ready`` ↔ ``unhealthy`` (the last batches all failed) /
``restarting`` (the inference worker died and is being replaced); ``failed`` when the model cannot be
loaded at all. ``/ping`` answers 200 only in ``ready`` with a healthy worker, and only after a warm-up
prediction went through the whole path.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from binsight.config.schemas import ServeConfig
from binsight.inputs.images import ImageLimits, decode_image
from binsight.inputs.values import ApiError
from binsight.serving.batching import MicroBatcher, QueueFullError, WorkerUnavailableError
from binsight.serving.faults import Faults
from binsight.serving.metrics import ServingMetrics
from binsight.serving.schemas import InvocationRequest

log = logging.getLogger("binsight.serving")

SUPERVISE_INTERVAL_S = 0.1
# How often an unhealthy (failing) worker is probed with a warm-up prediction.
PROBE_INTERVAL_S = 2.0


def _warm_up_image() -> bytes:
    """A small grey JPEG that exercises decode → preprocess → inference like a real request."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (128, 120, 110)).save(buf, format="JPEG")
    return buf.getvalue()


class ModelService:
    """Owns the Predictor, the decode thread pool and the micro-batcher of one endpoint.

    Args:
        model_path: Run directory or artifact folder.
        config: Serving options (backend, batching, queue, threads, timeouts).
        metrics: Where batches, readiness and restarts are recorded.
        on_fatal: Called with a message when the model cannot be loaded (the server exits).
        faults: Fault injection for tests (None in production).
    """

    def __init__(
        self,
        model_path: str | Path,
        config: ServeConfig,
        metrics: ServingMetrics,
        on_fatal: Callable[[str], None] | None = None,
        faults: Faults | None = None,
    ) -> None:
        self.model_path = Path(model_path)
        self.faults = faults
        self.image_limits = ImageLimits(config.max_image_pixels, config.max_decode_ratio)
        self.config = config
        self.metrics = metrics
        self.on_fatal = on_fatal
        self.status = "loading"
        self.detail = "loading the model"
        self.predictor: Any = None
        self.batcher: MicroBatcher | None = None
        decode_threads = config.decode_threads or min(4, os.cpu_count() or 1)
        self.pool = ThreadPoolExecutor(max_workers=decode_threads, thread_name_prefix="binsight-decode")
        self.inflight = 0
        # Waiting + running inputs allowed at once; beyond this a request is refused before decoding.
        self.capacity = config.queue_size + config.max_batch_size
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._warm_image = b""
        metrics.queue_depth.set_function(lambda: self.batcher.queue_depth if self.batcher else 0)

    # -- lifecycle --------------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Begin loading in the background; returns at once so the server listens while the model loads."""
        self._tasks.append(asyncio.create_task(self._load(), name="binsight-load"))

    async def stop(self) -> None:
        """Finish queued work, stop the worker and the decode pool."""
        self._closing = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.batcher is not None:
            await asyncio.to_thread(self.batcher.stop, 30.0, True)
        self.pool.shutdown(wait=False, cancel_futures=True)
        self._set_status("stopped", "shut down")

    def _set_status(self, status: str, detail: str) -> None:
        if status != self.status:
            log.info("model status: %s (%s)", status, detail)
        self.status, self.detail = status, detail
        self.metrics.ready.set(1 if self.ready else 0)

    @property
    def ready(self) -> bool:
        """True when ``/ping`` should answer 200."""
        return self.status == "ready" and self.batcher is not None and self.batcher.healthy

    def _build(self) -> None:
        from binsight.inference.predictor import Predictor

        cfg = self.config
        predictor = Predictor(self.model_path, backend=cfg.backend, threads=cfg.threads or None)
        # One direct run at the largest batch so the backend's first-call set-up is not paid by a request.
        size = predictor.preset.size
        predictor.predict_proba(np.zeros((cfg.max_batch_size, 3, size, size), dtype=np.float32))
        self.predictor = predictor
        self._warm_image = _warm_up_image()

    async def _load(self) -> None:
        start = time.perf_counter()
        try:
            await asyncio.to_thread(self._build)
        except Exception as exc:
            message = f"cannot load the model from {self.model_path}: {exc}"
            log.error(message)
            self._set_status("failed", message)
            if self.on_fatal is not None:
                self.on_fatal(message)
            return
        p = self.predictor
        self.metrics.model_info.info(
            {
                "name": str(p.meta.name),
                "version": str(p.meta.version),
                "architecture": str(p.meta.architecture),
                "backend": str(self.config.backend),
                "classes": ",".join(p.class_labels),
                "input_size": str(p.meta.input_size),
            }
        )
        cfg = self.config
        self.batcher = MicroBatcher(
            self._infer,
            max_batch_size=cfg.max_batch_size,
            max_wait_ms=cfg.max_wait_ms,
            queue_size=cfg.queue_size,
            failure_threshold=cfg.failure_threshold,
            on_batch=self.metrics.observe_batch,
            wait_for_arrivals=True,
        )
        self.batcher.start()
        if await self._warm_up():
            self._set_status("ready", f"model loaded in {time.perf_counter() - start:.1f}s")
        else:
            self._set_status("unhealthy", "warm-up prediction failed")
        self._tasks.append(asyncio.create_task(self._supervise(), name="binsight-supervise"))

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        if self.faults is not None:
            self.faults.before_batch()
        return np.asarray(self.predictor.predict_proba(batch))

    async def _warm_up(self) -> bool:
        """One prediction through decode → preprocess → worker; True when it succeeded."""
        assert self.batcher is not None
        try:
            async with asyncio.timeout(self.config.request_timeout):
                x = await asyncio.get_running_loop().run_in_executor(self.pool, self._prepare, self._warm_image)
                row = await self.batcher.submit(x, force=True)
            self.predictor.format_prediction(row)
            return True
        except Exception as exc:
            log.warning("warm-up prediction failed: %s: %s", type(exc).__name__, exc)
            return False

    async def _supervise(self) -> None:
        """Restart a dead worker; probe a failing one; keep the status (and /ping) honest."""
        last_probe = 0.0
        while not self._closing:
            await asyncio.sleep(SUPERVISE_INTERVAL_S)
            batcher = self.batcher
            assert batcher is not None
            if not batcher.alive:
                self._set_status("restarting", "the inference worker died; restarting it")
                if self.faults is not None:
                    await asyncio.sleep(self.faults.take_restart_hold())
                batcher.restart()
                self.metrics.worker_restarts.inc()
                ok = await self._warm_up()
                self._set_status("ready" if ok else "unhealthy", "worker restarted" if ok else "warm-up failed")
            elif batcher.consecutive_failures >= batcher.failure_threshold:
                self._set_status("unhealthy", f"the last {batcher.consecutive_failures} batches failed")
                if time.monotonic() - last_probe >= PROBE_INTERVAL_S:
                    last_probe = time.monotonic()
                    if await self._warm_up():
                        self._set_status("ready", "a probe prediction succeeded again")
            elif self.status == "unhealthy":
                self._set_status("ready", "predictions succeed again")
            else:
                self.metrics.ready.set(1 if self.ready else 0)

    # -- request path -----------------------------------------------------------------------------------------
    def _prepare(self, data: bytes, content_type: str = "") -> np.ndarray:
        """Check, decode and preprocess one image (runs in the decode pool); bad bytes → 400 ``invalid_image``."""
        try:
            img = decode_image(data, content_type, self.image_limits)
        except ApiError as exc:
            raise ApiError(400, "invalid_image", exc.message) from None
        x = self.predictor.preprocess(img)
        return x.numpy() if hasattr(x, "numpy") else np.asarray(x, dtype=np.float32)

    def _refuse_unless_serving(self) -> None:
        if (
            self.status in ("loading", "failed", "restarting", "stopped")
            or self.batcher is None
            or not self.batcher.alive
        ):
            raise ApiError(
                503, "not_ready", f"the model is not ready ({self.status}: {self.detail})", {"Retry-After": "5"}
            )

    async def predict(self, request: InvocationRequest, info: dict[str, Any]) -> list[dict[str, Any]]:
        """Predict every image of ``request``; ``info['batch_size']`` records the batch it ran in.

        Raises:
            ApiError: 400 for an undecodable image, 503 when not ready or overloaded.
        """
        self._refuse_unless_serving()
        n = len(request.images)
        if n > self.capacity:
            raise ApiError(
                400,
                "too_many_instances",
                f"{n} images in one request; this server takes at most {self.capacity} at once "
                "(queue size + max batch size)",
            )
        if self.inflight + n > self.capacity:
            raise ApiError(
                503,
                "overloaded",
                f"{self.inflight} inputs in flight (limit {self.capacity}); retry shortly",
                {"Retry-After": "1"},
            )
        self.inflight += n
        futures: list[asyncio.Future[Any]] = []
        try:
            loop = asyncio.get_running_loop()
            assert self.batcher is not None
            # Announced while decoding: a batch the worker has started waits for these inputs, and only these.
            with self.batcher.arriving(n):
                xs = await asyncio.gather(
                    *(
                        loop.run_in_executor(self.pool, self._prepare, img, request.content_type)
                        for img in request.images
                    )
                )
                try:
                    for x in xs:
                        futures.append(self.batcher.enqueue(x))
                except QueueFullError as exc:
                    raise ApiError(
                        503, "overloaded", f"the inference queue is full ({exc}); retry shortly", {"Retry-After": "1"}
                    ) from None
            results = await asyncio.gather(*futures)
        except WorkerUnavailableError as exc:
            raise ApiError(503, "not_ready", str(exc), {"Retry-After": "5"}) from None
        finally:
            self.inflight -= n
            for fut in futures:
                fut.cancel()  # no-op when done; frees the worker from inputs nobody waits for
        info["batch_size"] = max(size for _, size in results)
        return [
            self.predictor.format_prediction(row, expected)
            for (row, _), expected in zip(results, request.expected, strict=True)
        ]
