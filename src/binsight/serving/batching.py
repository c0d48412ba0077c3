"""Dynamic micro-batching: requests from the event loop feed ONE inference worker thread.

The worker takes the first waiting item, then keeps collecting until it has ``max_batch_size`` items or
``max_wait_ms`` has passed since it took the first, and runs them as one batch. Under load, items pile up
while a batch runs, so the next batch fills at once and the wait never applies. With ``wait_for_arrivals``
the worker only waits for inputs that callers have announced with :meth:`MicroBatcher.arriving` (a server
announces a request while its image is decoded): a lone request at low load then runs at once instead of
waiting ``max_wait_ms`` for company that is not coming.

The queue is bounded: :meth:`MicroBatcher.submit` raises :class:`QueueFullError` at once when
``queue_size`` items are already waiting (the server answers 503 with ``Retry-After``), so latency stays
bounded instead of growing without limit.

One bad batch fails only its own requests; the worker keeps running. If the worker thread itself dies,
:attr:`MicroBatcher.alive` turns False, the items it was running fail with :class:`WorkerUnavailableError`,
waiting items stay queued, and :meth:`MicroBatcher.restart` starts a fresh thread that picks them up.

Example::

    batcher = MicroBatcher(lambda batch: model(batch), max_batch_size=8, max_wait_ms=5)
    batcher.start()
    probs_row = await batcher.submit(chw_array)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


class QueueFullError(Exception):
    """The batcher's queue is full: the caller should retry later (HTTP 503)."""


class WorkerUnavailableError(Exception):
    """The inference worker stopped or died while the item was waiting or running (HTTP 503)."""


class WorkerKilled(BaseException):
    """Raised inside the worker by :meth:`MicroBatcher.kill` to simulate a crashed thread."""


@dataclass
class _Item:
    x: np.ndarray
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop
    enqueued: float = field(default_factory=time.perf_counter)


def _resolve(item: _Item, result: object = None, error: BaseException | None = None) -> None:
    """Complete ``item``'s future from any thread (the future belongs to the event loop)."""

    def apply() -> None:
        if item.future.done():  # cancelled by a timeout or a gone client
            return
        if error is not None:
            item.future.set_exception(error)
        else:
            item.future.set_result(result)

    # A closed loop raises RuntimeError: nobody waits for the answer any more.
    with contextlib.suppress(RuntimeError):
        item.loop.call_soon_threadsafe(apply)


BatchCallback = Callable[[int, float, bool], None]


class MicroBatcher:
    """Collect single inputs into batches for one worker thread.

    Args:
        infer: Runs one float32 NCHW batch and returns one result row per input (e.g. probabilities).
        max_batch_size: Largest batch handed to ``infer``.
        max_wait_ms: How long the worker waits for more items after the first one of a batch.
        queue_size: Items allowed to wait; one more raises :class:`QueueFullError`.
        failure_threshold: After this many failed batches in a row, :attr:`healthy` turns False until a batch
            succeeds again.
        on_batch: Called from the worker after each batch with (size, seconds, ok) — for metrics.
        name: Worker thread name.
        wait_for_arrivals: Wait (up to ``max_wait_ms``) only while announced inputs are on their way, instead
            of always.
    """

    def __init__(
        self,
        infer: Callable[[np.ndarray], np.ndarray],
        max_batch_size: int = 8,
        max_wait_ms: float = 5.0,
        queue_size: int = 64,
        failure_threshold: int = 3,
        on_batch: BatchCallback | None = None,
        name: str = "binsight-infer",
        wait_for_arrivals: bool = False,
    ) -> None:
        if max_batch_size < 1 or queue_size < 1 or failure_threshold < 1 or max_wait_ms < 0:
            raise ValueError("need max_batch_size >= 1, queue_size >= 1, failure_threshold >= 1, max_wait_ms >= 0")
        self.infer = infer
        self.max_batch_size = int(max_batch_size)
        self.max_wait = float(max_wait_ms) / 1000.0
        self.queue_size = int(queue_size)
        self.failure_threshold = int(failure_threshold)
        self.on_batch = on_batch
        self.name = name
        self.wait_for_arrivals = wait_for_arrivals
        self._arriving = 0  # inputs announced by arriving() and not yet queued (or given up)
        self.consecutive_failures = 0
        self.batches_run = 0
        self._queue: deque[_Item] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._kill = False
        self._thread: threading.Thread | None = None
        self._generation = 0

    # -- lifecycle --------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the worker thread (no-op when it is already running)."""
        with self._cond:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stopping = False
            self._kill = False
            self._generation += 1
            self._thread = threading.Thread(target=self._run, name=f"{self.name}-{self._generation}", daemon=True)
            self._thread.start()

    def restart(self) -> None:
        """Start a fresh worker after the previous one died; queued items are kept for it."""
        self.consecutive_failures = 0
        self.start()

    def stop(self, timeout: float | None = 30.0, drain: bool = True) -> None:
        """Stop the worker; with ``drain`` it first finishes the items already queued.

        Items still queued when it stops (or when ``drain`` is False) fail with WorkerUnavailableError.
        """
        with self._cond:
            self._stopping = True
            if not drain:
                pending = list(self._queue)
                self._queue.clear()
            else:
                pending = []
            self._cond.notify_all()
        for item in pending:
            _resolve(item, error=WorkerUnavailableError("the server is shutting down"))
        if self._thread is not None:
            self._thread.join(timeout)
        with self._cond:
            leftover = list(self._queue)
            self._queue.clear()
        for item in leftover:
            _resolve(item, error=WorkerUnavailableError("the server is shutting down"))

    def kill(self) -> None:
        """Make the worker thread die (as if it crashed) before its next batch (fault injection)."""
        with self._cond:
            self._kill = True
            self._cond.notify_all()

    @property
    def alive(self) -> bool:
        """True while the worker thread runs."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def healthy(self) -> bool:
        """The worker runs and the last ``failure_threshold`` batches did not all fail."""
        return self.alive and self.consecutive_failures < self.failure_threshold

    @property
    def queue_depth(self) -> int:
        """Items waiting for the worker (not counting the batch it is running)."""
        return len(self._queue)

    # -- submit -----------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def arriving(self, n: int = 1) -> Iterator[None]:
        """Announce ``n`` inputs that will be queued within the block (e.g. while their images are decoded).

        With ``wait_for_arrivals`` the worker holds a started batch open for them, up to ``max_wait_ms``.
        """
        with self._cond:
            self._arriving += n
        try:
            yield
        finally:
            with self._cond:
                self._arriving -= n
                self._cond.notify_all()

    def enqueue(self, x: np.ndarray, force: bool = False) -> asyncio.Future[Any]:
        """Queue one CHW input from the running event loop.

        Returns:
            A future of ``(result_row, batch_size)``: the input's row of ``infer``'s output and the size of
            the batch it ran in.

        Args:
            x: One float32 CHW input.
            force: Queue even when full (warm-up probes must not be refused by back-pressure).

        Raises:
            QueueFullError: ``queue_size`` items are already waiting.
            WorkerUnavailableError: the batcher is stopping.
        """
        loop = asyncio.get_running_loop()
        item = _Item(x, loop.create_future(), loop)
        with self._cond:
            if self._stopping:
                raise WorkerUnavailableError("the server is shutting down")
            if not force and len(self._queue) >= self.queue_size:
                raise QueueFullError(f"{len(self._queue)} requests are already waiting")
            self._queue.append(item)
            self._cond.notify()
        return item.future

    async def submit(self, x: np.ndarray, force: bool = False) -> np.ndarray:
        """Queue ``x`` and wait for its result row (see :meth:`enqueue` for the errors)."""
        row, _ = await self.enqueue(x, force=force)
        return np.asarray(row)

    # -- worker -----------------------------------------------------------------------------------------------
    def _take_batch(self) -> list[_Item] | None:
        """Block until a batch is ready; None when stopping with an empty queue."""
        with self._cond:
            while not self._queue and not self._stopping and not self._kill:
                self._cond.wait()
            if self._kill:
                raise WorkerKilled("killed by test hook")
            if not self._queue:
                return None
            batch = [self._queue.popleft()]
            deadline = time.perf_counter() + self.max_wait
            while len(batch) < self.max_batch_size:
                if self._queue:
                    batch.append(self._queue.popleft())
                    continue
                remaining = deadline - time.perf_counter()
                if remaining <= 0 or self._stopping or (self.wait_for_arrivals and self._arriving <= 0):
                    break
                self._cond.wait(remaining)
            return batch

    def _run(self) -> None:
        batch: list[_Item] = []
        try:
            while True:
                batch = self._take_batch() or []
                if not batch:
                    return
                self._run_batch(batch)
                batch = []
        except BaseException as exc:  # the thread is dying: fail what it held so no caller waits forever
            for item in batch:
                _resolve(item, error=WorkerUnavailableError(f"the inference worker stopped: {exc}"))
            log.error("inference worker died: %s: %s", type(exc).__name__, exc)

    def _run_batch(self, batch: list[_Item]) -> None:
        live = [item for item in batch if not item.future.done()]
        if not live:
            return
        start = time.perf_counter()
        rows = None
        error: Exception | None = None
        try:
            rows = np.asarray(self.infer(np.stack([item.x for item in live])))
            if len(rows) != len(live):
                raise RuntimeError(f"inference returned {len(rows)} rows for a batch of {len(live)}")
        except Exception as exc:  # one bad batch must not take the worker down
            log.exception("inference failed for a batch of %d", len(live))
            error = exc
        # Health and metrics first, so a caller woken by its answer already sees them updated.
        self.batches_run += 1
        self.consecutive_failures = 0 if error is None else self.consecutive_failures + 1
        if self.on_batch is not None:
            try:
                self.on_batch(len(live), time.perf_counter() - start, error is None)
            except Exception:  # metrics must never break inference
                log.exception("batch callback failed")
        if error is not None or rows is None:
            for item in live:
                _resolve(item, error=error)
            return
        for item, row in zip(live, rows, strict=True):
            _resolve(item, result=(row, len(live)))
