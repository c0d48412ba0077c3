"""Prometheus metrics of the endpoint, in a registry of their own (no process-global state, so several apps
can live in one process, e.g. in tests).

Exposed at ``GET /metrics``:

- ``binsight_requests_total{method,path,status}`` — every HTTP request.
- ``binsight_request_latency_seconds{path}`` — request latency histogram.
- ``binsight_errors_total{code}`` — error responses by error code.
- ``binsight_batch_size`` — histogram of the batch sizes the inference worker ran.
- ``binsight_inference_seconds`` — histogram of the time one batch took in the backend.
- ``binsight_queue_depth`` — inputs waiting for the inference worker.
- ``binsight_ready`` — 1 when ``/ping`` answers 200.
- ``binsight_worker_restarts_total`` — inference worker restarts after it died.
- ``binsight_model_info{name,version,architecture,backend,...}`` — the model being served.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64, 128, 256)


class ServingMetrics:
    """The endpoint's Prometheus collectors.

    Args:
        queue_depth: Called at scrape time for the current queue depth (None → the gauge stays 0).
    """

    def __init__(self, queue_depth: Callable[[], float] | None = None) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "binsight_requests", "HTTP requests by method, path and status", ["method", "path", "status"], registry=r
        )
        self.latency = Histogram(
            "binsight_request_latency_seconds", "HTTP request latency", ["path"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.errors = Counter("binsight_errors", "Error responses by error code", ["code"], registry=r)
        self.batch_size = Histogram(
            "binsight_batch_size", "Inputs per batch run by the inference worker", buckets=BATCH_BUCKETS, registry=r
        )
        self.inference_seconds = Histogram(
            "binsight_inference_seconds", "Backend time per batch", buckets=LATENCY_BUCKETS, registry=r
        )
        self.batch_failures = Counter("binsight_batch_failures", "Batches whose inference raised", registry=r)
        self.queue_depth = Gauge("binsight_queue_depth", "Inputs waiting for the inference worker", registry=r)
        if queue_depth is not None:
            self.queue_depth.set_function(queue_depth)
        self.ready = Gauge("binsight_ready", "1 when /ping answers 200", registry=r)
        self.worker_restarts = Counter(
            "binsight_worker_restarts", "Inference worker restarts after it died", registry=r
        )
        self.model_info = Info("binsight_model", "The model being served", registry=r)

    def observe_batch(self, size: int, seconds: float, ok: bool) -> None:
        """Record one batch of the inference worker (thread-safe; called from the worker)."""
        self.batch_size.observe(size)
        self.inference_seconds.observe(seconds)
        if not ok:
            self.batch_failures.inc()

    def observe_request(self, method: str, path: str, status: int, seconds: float) -> None:
        """Record one finished HTTP request."""
        self.requests.labels(method, path, str(status)).inc()
        self.latency.labels(path).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
