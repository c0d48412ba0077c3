"""Stop requests: SIGTERM / SIGINT set a :class:`StopFlag`; long work (training, fetch) stops at its next safe point.

A signal never interrupts a batch, a download chunk or a file write: the handler only records the request and
the work loop checks :attr:`StopFlag.requested` where stopping is safe. A second Ctrl-C raises
``KeyboardInterrupt`` at once for a user who does not want to wait.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from types import FrameType

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopFlag:
    """A thread-safe "please stop" flag that keeps the first request's reason (and an optional code)."""

    def __init__(self) -> None:
        self._event = threading.Event()
        # Re-entrant: a signal handler may request a stop while the main thread is inside request().
        self._lock = threading.RLock()
        self.reason: str | None = None
        self.code: str | None = None

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def request(self, reason: str, code: str | None = None) -> None:
        """Ask the work to stop at its next safe point; the first reason (and code) is kept."""
        with self._lock:
            if not self._event.is_set():
                self.reason, self.code = reason, code
                self._event.set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True as soon as a stop is requested."""
        return self._event.wait(seconds)

    def clear(self) -> None:
        with self._lock:
            self.reason = self.code = None
            self._event.clear()


@contextlib.contextmanager
def stop_on_signals(
    flag: StopFlag,
    then: str = "saving a checkpoint after the current batch (Ctrl-C again to abort now)",
    reason: str | None = None,
    code: str | None = None,
    abort_on_second: tuple[int, ...] = (signal.SIGINT,),
) -> Iterator[StopFlag]:
    """Within the block, SIGTERM and SIGINT request a stop on ``flag`` instead of killing the process.

    Args:
        flag: the flag the work loop checks.
        then: what happens next, for the warning logged on the first signal.
        reason, code: recorded on the flag (default reason: the signal's name, e.g. ``SIGTERM``).
        abort_on_second: signals that raise ``KeyboardInterrupt`` once a stop was already requested.

    Handlers can only be installed from the main thread; elsewhere (e.g. a tuning trial in a worker thread)
    the block runs with the process's handlers unchanged and the caller's own flag still works.
    """
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    received: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:  # noqa: ARG001 - signal handler signature
        name = signal.Signals(signum).name
        if (received or flag.requested) and signum in abort_on_second:
            raise KeyboardInterrupt
        received.append(signum)
        log.warning("%s received: %s", name, then)
        flag.request(reason or name, code)

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
