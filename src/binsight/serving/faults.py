"""Fault injection for tests of a real model server: one object the model service consults, and the routes
that set it.

A production server has no :class:`Faults` (``None``) and no ``/_test/*`` routes; ``binsight serve`` creates
both only when ``BINSIGHT_TEST_HOOKS=1`` is set in its own environment (endpoint supervisors start servers
with a minimal environment that never carries it).

Routes: ``POST /_test/delay?ms=`` (every batch sleeps first), ``POST /_test/fail-batches?n=`` (the next n
batches raise), ``POST /_test/kill-worker?restart_after_ms=`` (the inference worker thread dies; the
service waits that long before restarting it).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from fastapi import APIRouter

from binsight.inputs.values import ApiError
from binsight.serving.batching import MicroBatcher


class Faults:
    """What a test asked the server to do wrong: slow batches, failing batches, a late worker restart."""

    def __init__(self) -> None:
        self.delay_s = 0.0
        self.fail_next_batches = 0
        self.restart_hold_s = 0.0

    def before_batch(self) -> None:
        """Called by the inference worker before each batch: sleep and/or raise as asked."""
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.fail_next_batches > 0:
            self.fail_next_batches -= 1
            raise RuntimeError("test hook: injected inference failure")

    def take_restart_hold(self) -> float:
        """Seconds to wait before restarting a dead worker (asked once, then reset)."""
        hold, self.restart_hold_s = self.restart_hold_s, 0.0
        return hold


def fault_routes(faults: Faults, batcher: Callable[[], MicroBatcher | None]) -> APIRouter:
    """The ``/_test/*`` routes driving ``faults``; ``batcher()`` returns the live MicroBatcher or None."""
    router = APIRouter(include_in_schema=False)

    def live() -> MicroBatcher:
        current = batcher()
        if current is None:
            raise ApiError(503, "not_ready", "the model is still loading", {"Retry-After": "1"})
        return current

    @router.post("/_test/kill-worker")
    async def kill_worker(restart_after_ms: float = 0.0) -> dict[str, bool]:
        faults.restart_hold_s = max(0.0, restart_after_ms) / 1000.0
        live().kill()
        return {"killed": True}

    @router.post("/_test/delay")
    async def delay(ms: float = 0.0) -> dict[str, float]:
        faults.delay_s = max(0.0, ms) / 1000.0
        return {"delay_ms": ms}

    @router.post("/_test/fail-batches")
    async def fail_batches(n: int = 1) -> dict[str, int]:
        faults.fail_next_batches = max(0, n)
        return {"fail_next_batches": faults.fail_next_batches}

    return router
