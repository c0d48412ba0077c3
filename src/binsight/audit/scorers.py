"""Where an audit's probabilities come from: a model in this process, or a served endpoint over HTTP.

Both turn a list of encoded photos into calibrated class probabilities (or a :class:`DataError` per photo that
cannot be read), in parallel: :class:`LocalScorer` decodes and preprocesses in a thread pool and runs the
network in batches; :class:`EndpointScorer` sends concurrent requests (the endpoint batches them itself) with
the gateway's retrying HTTP client.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from binsight.errors import BinsightError, DataError
from binsight.inference.predictor import Predictor


def prediction_model(answer: dict) -> tuple[str, list[str]]:
    """The model version and class labels of a prediction JSON (``binsight predict``/serve/SageMaker's answer)."""
    return str((answer.get("model") or {}).get("version") or ""), [str(c) for c in answer.get("class_labels") or []]


def prediction_probs(answer: dict, class_labels: list[str]) -> np.ndarray:
    """The calibrated probabilities of a prediction JSON in ``class_labels`` order (KeyError when one is missing)."""
    probs = answer.get("probabilities") or {}
    return np.array([float(probs[c]) for c in class_labels], dtype=np.float64)


class LocalScorer:
    """Score photos with a :class:`Predictor` in this process.

    Args:
        predictor: The loaded model.
        workers: Threads decoding and preprocessing photos (PIL releases the GIL).
    """

    def __init__(self, predictor: Predictor, workers: int = 4) -> None:
        self.predictor = predictor
        self.version = predictor.meta.version or predictor.meta.name
        self.class_labels = list(predictor.class_labels)
        self.thresholds = dict(predictor.meta.decision_thresholds)
        self.workers = max(1, workers)
        self.pool: ThreadPoolExecutor | None = None  # made on the first batch of more than one photo

    def _prepare(self, data: bytes):
        try:
            return self.predictor.preprocess(self.predictor.decode(data))
        except DataError as exc:
            return exc

    def score(self, images: list[bytes]) -> list[np.ndarray | DataError]:
        import torch

        if len(images) > 1:
            if self.pool is None:
                self.pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="audit-decode")
            prepared = list(self.pool.map(self._prepare, images))
        else:
            prepared = [self._prepare(images[0])]
        good = [i for i, x in enumerate(prepared) if not isinstance(x, Exception)]
        out: list[np.ndarray | DataError] = list(prepared)  # errors stay in place
        step = self.predictor.max_batch
        for start in range(0, len(good), step):
            idx = good[start : start + step]
            probs = self.predictor.predict_proba(torch.stack([prepared[i] for i in idx]))
            for i, row in zip(idx, probs, strict=True):
                out[i] = row
        return out

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)


def resolve_endpoint(name_or_url: str) -> tuple[str, dict[str, float] | None]:
    """An endpoint URL and, for a local endpoint NAME, its model's review band.

    Returns:
        ``(url, thresholds)``: thresholds are None for a plain URL (the defaults are used).

    Raises:
        BinsightError: NAME is not a local endpoint.
    """
    if name_or_url.startswith(("http://", "https://")):
        return name_or_url, None
    from binsight.endpoints.api import describe_endpoint
    from binsight.inference.artifact import read_meta

    info = describe_endpoint(name_or_url, ping=False)
    thresholds = None
    if info.get("artifact"):
        try:
            thresholds = dict(read_meta(info["artifact"]).decision_thresholds)
        except BinsightError:
            thresholds = None
    return info["url"], thresholds


class EndpointScorer:
    """Score photos by POSTing them to a binsight/SageMaker-compatible endpoint.

    Args:
        url: The endpoint's base URL (``http://127.0.0.1:8080``) or its ``/invocations`` URL.
        thresholds: The review band of the served model (default: the artifact default 0.2 / 0.5).
        concurrency: Requests in flight at once.
        timeout: Seconds per request (retried on 429/503 and connection errors by the client).
    """

    def __init__(
        self, url: str, thresholds: dict[str, float] | None = None, concurrency: int = 8, timeout: float = 60.0
    ) -> None:
        from binsight.gateway.backends import HttpBackend

        self.client = HttpBackend(url, timeout=timeout, retries=4)
        self.timeout = timeout
        self.thresholds = dict(thresholds or {"review_low": 0.2, "review_high": 0.5})
        self.pool = ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="audit-http")
        self.version = ""
        self.class_labels: list[str] = []

    def _one(self, data: bytes) -> dict | DataError:
        from binsight.gateway.errors import GatewayError

        try:
            return self.client.predict(data, _content_type(data), None, time.monotonic() + self.timeout)
        except GatewayError as exc:
            if getattr(exc, "status", 500) in (400, 413, 415):
                return DataError(str(exc))
            raise BinsightError(f"endpoint {self.client.url} failed: {exc}") from None

    def probe(self, data: bytes) -> None:
        """Learn the served model's version and classes from one answer (needed before skipping cached bins)."""
        answer = self._one(data)
        if isinstance(answer, dict):
            self._learn(answer)

    def _learn(self, answer: dict) -> None:
        self.version, self.class_labels = prediction_model(answer)

    def score(self, images: list[bytes]) -> list[np.ndarray | DataError]:
        out: list[np.ndarray | DataError] = []
        for answer in self.pool.map(self._one, images):
            if isinstance(answer, Exception):
                out.append(answer)
                continue
            if not self.class_labels:
                self._learn(answer)
            try:
                out.append(prediction_probs(answer, self.class_labels))
            except (KeyError, TypeError, ValueError):
                raise BinsightError(
                    f"endpoint {self.client.url} answered without probabilities for classes {self.class_labels}: "
                    f"{json.dumps(answer)[:200]}"
                ) from None
        return out

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


def _content_type(data: bytes) -> str:
    return "image/png" if data[:8] == b"\x89PNG\r\n\x1a\n" else "image/jpeg"


def make_scorer(
    model: str | None,
    endpoint: str | None,
    *,
    backend: str = "torch",
    threads: int = 0,
    workers: int = 4,
    concurrency: int = 8,
):
    """``--model RUN`` → :class:`LocalScorer`; ``--endpoint NAME|URL`` → :class:`EndpointScorer`."""
    if bool(model) == bool(endpoint):
        raise BinsightError("give exactly one of --model RUN (a local model) or --endpoint NAME|URL (a served one)")
    if model:
        return LocalScorer(Predictor(Path(model), backend=backend, threads=threads or None), workers=workers)
    url, thresholds = resolve_endpoint(str(endpoint))
    return EndpointScorer(url, thresholds, concurrency=concurrency)
