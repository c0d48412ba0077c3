"""A closed-loop HTTP load generator (httpx async): C concurrent clients, each posting the next body as soon
as its previous answer arrived, for a bounded time and a bounded number of requests. Loopback only.

    from loadgen import run_load
    stats = run_load("http://127.0.0.1:8080/invocations", bodies, concurrency=8, duration=10)

Records requests/s (completed answers of any status / wall time), successful requests/s, p50/p90/p99
latency of successful requests, and errors (non-2xx statuses and transport errors, by kind).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from urllib.parse import urlparse

import httpx
import numpy as np


def _check_loopback(url: str) -> None:
    host = urlparse(url).hostname or ""
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError(f"the load generator only targets loopback addresses, not {host!r}")


async def _load(
    url: str,
    bodies: Sequence[bytes],
    concurrency: int,
    duration: float,
    max_requests: int,
    content_type: str,
    timeout: float,
) -> dict:
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    issued = 0
    deadline = time.perf_counter() + duration
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:

        async def worker(seed: int) -> None:
            nonlocal issued
            i = seed
            while time.perf_counter() < deadline and issued < max_requests:
                issued += 1
                body = bodies[i % len(bodies)]
                i += concurrency
                start = time.perf_counter()
                try:
                    r = await client.post(url, content=body, headers={"content-type": content_type})
                    if 200 <= r.status_code < 300:
                        latencies.append(time.perf_counter() - start)
                    else:
                        errors[str(r.status_code)] += 1
                except httpx.HTTPError as exc:
                    errors[type(exc).__name__] += 1

        start = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(concurrency)))
        wall = time.perf_counter() - start

    ok = len(latencies)
    lat = np.asarray(latencies) * 1000 if latencies else np.zeros(1)
    return {
        "concurrency": concurrency,
        "requests": ok + sum(errors.values()),
        "ok": ok,
        "errors": dict(errors),
        "error_count": sum(errors.values()),
        "wall_s": round(wall, 2),
        "rps": round((ok + sum(errors.values())) / wall, 2),
        "ok_rps": round(ok / wall, 2),
        "p50_ms": round(float(np.percentile(lat, 50)), 1) if ok else None,
        "p90_ms": round(float(np.percentile(lat, 90)), 1) if ok else None,
        "p99_ms": round(float(np.percentile(lat, 99)), 1) if ok else None,
    }


def run_load(
    url: str,
    bodies: Sequence[bytes],
    concurrency: int,
    duration: float = 10.0,
    max_requests: int = 10_000,
    content_type: str = "image/jpeg",
    timeout: float = 120.0,
) -> dict:
    """Drive ``url`` with ``concurrency`` closed-loop clients for ``duration`` s or ``max_requests`` requests."""
    _check_loopback(url)
    return asyncio.run(_load(url, bodies, concurrency, duration, max_requests, content_type, timeout))
