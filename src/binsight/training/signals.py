"""Stop requests: SIGTERM / SIGINT (and time limits) set a flag; the trainer stops at the next safe point.

A signal never interrupts a batch or a checkpoint write: the handler only records the request, the training
loop checks :attr:`StopFlag.requested` after each batch, saves a checkpoint and raises
:class:`~binsight.errors.Interrupted`. A second SIGINT (Ctrl-C twice) raises ``KeyboardInterrupt`` at once
for a user who does not want to wait.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator

log = logging.getLogger(__name__)


class StopFlag:
    """A thread-safe "please stop" flag with the reason of the first request."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def request(self, reason: str) -> None:
        """Ask the trainer to stop at its next safe point; the first reason is kept."""
        if not self._event.is_set():
            self.reason = reason
            self._event.set()

    def clear(self) -> None:
        self.reason = ""
        self._event.clear()


@contextlib.contextmanager
def stop_on_signals(flag: StopFlag, signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)) -> Iterator[StopFlag]:
    """Within the block, SIGTERM and SIGINT request a stop on ``flag`` instead of killing the process.

    Handlers can only be installed from the main thread; elsewhere (e.g. a tuning trial in a worker thread)
    the block runs with the process's handlers unchanged and the caller's own flag still works.
    """
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = {}

    def handler(signum: int, frame) -> None:  # noqa: ARG001 - signal handler signature
        name = signal.Signals(signum).name
        if flag.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        log.warning("%s received: saving a checkpoint after the current batch (Ctrl-C again to abort now)", name)
        flag.request(name)

    for sig in signals:
        previous[sig] = signal.signal(sig, handler)
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
