"""boto3 clients, created lazily and reused across warm Lambda invocations (creating one costs ~50 ms)."""

from __future__ import annotations

import threading
from typing import Any

_CLIENTS: dict[tuple[Any, ...], Any] = {}
_LOCK = threading.Lock()


def client(service: str, *, endpoint_url: str | None, region: str | None, timeout: float, retries: int) -> Any:
    """A cached boto3 client for ``service``.

    Args:
        service: ``"s3"`` or ``"sagemaker-runtime"``.
        endpoint_url: a custom endpoint (S3-compatible store, local endpoint) or ``None`` for AWS.
        region: the AWS region; ``us-east-1`` is used for a custom endpoint when none is configured.
        timeout: connect and read timeout in seconds.
        retries: botocore's own attempts (1 = no retry; the SageMaker backend retries by itself).
    """
    key = (service, endpoint_url, region, timeout, retries)
    with _LOCK:
        cached = _CLIENTS.get(key)
        if cached is not None:
            return cached
        import boto3
        from botocore.config import Config

        options: dict[str, Any] = {}
        if service == "s3" and endpoint_url:
            # S3-compatible stores on custom hosts rarely support virtual-hosted bucket names.
            options["s3"] = {"addressing_style": "path"}
        config = Config(
            connect_timeout=timeout,
            read_timeout=timeout,
            retries={"mode": "standard", "total_max_attempts": retries},
            **options,
        )
        if not region and endpoint_url:
            region = "us-east-1"
        made = boto3.client(service, endpoint_url=endpoint_url, region_name=region, config=config)
        _CLIENTS[key] = made
        return made
