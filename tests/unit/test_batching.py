"""MicroBatcher: batches form up to the limit, the queue is bounded, bad batches and a dead worker are survived."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from binsight.serving.batching import MicroBatcher, QueueFullError, WorkerUnavailableError


def row_sums(batch: np.ndarray) -> np.ndarray:
    """A real 'model': one output row per input (its sum and the batch size)."""
    return np.stack([batch.reshape(len(batch), -1).sum(axis=1), np.full(len(batch), len(batch))], axis=1)


def run(coro):
    return asyncio.run(coro)


def test_concurrent_inputs_form_batches_up_to_the_limit():
    sizes: list[int] = []
    batcher = MicroBatcher(
        row_sums, max_batch_size=4, max_wait_ms=50, queue_size=64, on_batch=lambda n, s, ok: sizes.append(n)
    )
    batcher.start()

    async def main():
        xs = [np.full((1, 2, 2), i, dtype=np.float32) for i in range(10)]
        return await asyncio.gather(*(batcher.enqueue(x) for x in xs))

    try:
        results = run(main())
    finally:
        batcher.stop()
    # Each input gets its own row back, whatever batch it ran in.
    assert [float(row[0]) for row, _ in results] == [4.0 * i for i in range(10)]
    assert max(sizes) == 4 and sum(sizes) == 10
    assert all(size == int(row[1]) for row, size in results)


def test_a_lone_input_waits_at_most_about_max_wait():
    batcher = MicroBatcher(row_sums, max_batch_size=8, max_wait_ms=5, queue_size=4)
    batcher.start()
    try:
        row = run(batcher.submit(np.ones((1, 1, 1), dtype=np.float32)))
    finally:
        batcher.stop()
    assert row[1] == 1


def test_wait_for_arrivals_runs_a_lone_input_at_once_but_waits_for_an_announced_one():
    sizes: list[int] = []
    # A minute of max_wait: an input that waited for it would miss the 30 s answer deadline below.
    record = lambda n, s, ok: sizes.append(n)  # noqa: E731
    batcher = MicroBatcher(row_sums, max_batch_size=8, max_wait_ms=60_000, wait_for_arrivals=True, on_batch=record)
    batcher.start()

    async def main():
        lone = await asyncio.wait_for(batcher.enqueue(np.ones((1, 1, 1), np.float32)), 30)
        with batcher.arriving(2):  # two inputs announced (their images "decoding")
            first = batcher.enqueue(np.full((1, 1, 1), 2, np.float32))
            await asyncio.sleep(0.2)  # the worker holds the started batch open for the second
            second = batcher.enqueue(np.full((1, 1, 1), 3, np.float32))
        return lone, await asyncio.wait_for(asyncio.gather(first, second), 30)

    try:
        lone, pair = run(main())
    finally:
        batcher.stop()
    assert lone[1] == 1
    assert [size for _, size in pair] == [2, 2] and [float(row[0]) for row, _ in pair] == [2.0, 3.0]
    assert sizes == [1, 2]


def test_full_queue_raises_at_once_and_force_bypasses_it():
    gate = threading.Event()

    def blocked(batch):
        gate.wait(5)
        return row_sums(batch)

    batcher = MicroBatcher(blocked, max_batch_size=1, max_wait_ms=0, queue_size=2)
    batcher.start()

    async def main():
        first = batcher.enqueue(np.zeros((1, 1, 1), np.float32))
        while batcher.queue_depth:  # the worker took it and is blocked
            await asyncio.sleep(0.005)
        waiting = [batcher.enqueue(np.zeros((1, 1, 1), np.float32)) for _ in range(2)]
        with pytest.raises(QueueFullError):
            batcher.enqueue(np.zeros((1, 1, 1), np.float32))
        forced = batcher.enqueue(np.zeros((1, 1, 1), np.float32), force=True)
        assert batcher.queue_depth == 3
        gate.set()
        return await asyncio.gather(first, *waiting, forced)

    try:
        assert len(run(main())) == 4
    finally:
        gate.set()
        batcher.stop()


def test_a_failing_batch_fails_its_inputs_only_and_health_follows_consecutive_failures():
    calls = {"n": 0}

    def flaky(batch):
        calls["n"] += 1
        if batch.max() < 0:
            raise ValueError("negative input")
        return row_sums(batch)

    batcher = MicroBatcher(flaky, max_batch_size=1, max_wait_ms=0, queue_size=8, failure_threshold=2)
    batcher.start()

    async def main():
        bad = np.full((1, 1, 1), -1.0, np.float32)
        with pytest.raises(ValueError):
            await batcher.submit(bad)
        assert batcher.healthy
        with pytest.raises(ValueError):
            await batcher.submit(bad)
        assert not batcher.healthy and batcher.alive
        row = await batcher.submit(np.ones((1, 1, 1), np.float32))
        assert batcher.healthy
        return row

    try:
        assert run(main())[0] == 1.0
    finally:
        batcher.stop()
    assert calls["n"] == 3


def test_killed_worker_is_dead_until_restart_and_queued_inputs_survive():
    batcher = MicroBatcher(row_sums, max_batch_size=2, max_wait_ms=0, queue_size=8)
    batcher.start()

    async def main():
        batcher.kill()
        deadline = time.monotonic() + 5
        while batcher.alive and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert not batcher.alive and not batcher.healthy
        pending = batcher.enqueue(np.ones((1, 1, 1), np.float32))
        await asyncio.sleep(0.05)
        assert not pending.done()  # nobody runs it while the worker is dead
        batcher.restart()
        row, size = await asyncio.wait_for(pending, 5)
        return row, size

    try:
        row, size = run(main())
    finally:
        batcher.stop()
    assert row[0] == 1.0 and size == 1 and batcher.healthy is False  # stopped now


def test_stop_drains_queued_inputs_then_refuses_new_ones():
    def slow(batch):
        time.sleep(0.02)
        return row_sums(batch)

    batcher = MicroBatcher(slow, max_batch_size=1, max_wait_ms=0, queue_size=16)
    batcher.start()

    async def main():
        futures = [batcher.enqueue(np.ones((1, 1, 1), np.float32)) for _ in range(5)]
        await asyncio.to_thread(batcher.stop, 10.0, True)
        with pytest.raises(WorkerUnavailableError):
            batcher.enqueue(np.ones((1, 1, 1), np.float32))
        return await asyncio.gather(*futures)

    assert len(run(main())) == 5


def test_constructor_rejects_bad_limits():
    with pytest.raises(ValueError):
        MicroBatcher(row_sums, max_batch_size=0)
    with pytest.raises(ValueError):
        MicroBatcher(row_sums, queue_size=0)
