"""Fault injection: pauses at named points of long work, so tests can stop or kill it at a known moment.

Tests that stop or kill a training run or a fetch midway must not race a fast (or starved) machine. The work
calls its :class:`Faults` object at the points below; the object does nothing unless a test enabled it through
the environment of the process it starts (``BINSIGHT_TEST_*``), and production never sets those variables.

- ``BINSIGHT_TEST_HOLD_EPOCH=E``: each trainer waits at the end of epoch E (before its epoch-end callbacks)
  until its stop flag is set (SIGTERM/SIGINT), or, with ``BINSIGHT_TEST_BARRIER=DIR:N``, until N trainers in
  any processes have got there;
- ``BINSIGHT_TEST_HOLD_FETCH=N``: ``binsight data fetch`` downloads N files, then each further file waits until
  the fetch is stopped.

Every wait ends after :data:`HOLD_LIMIT_S` seconds at most, so a broken test cannot hang a process for ever.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from binsight.utils.signals import StopFlag

HOLD_EPOCH_ENV = "BINSIGHT_TEST_HOLD_EPOCH"
BARRIER_ENV = "BINSIGHT_TEST_BARRIER"
HOLD_FETCH_ENV = "BINSIGHT_TEST_HOLD_FETCH"
HOLD_LIMIT_S = 120.0


@dataclass
class Faults:
    """The fault-injection points; inert with the defaults.

    Attributes:
        hold_epoch: epoch (1-based) at whose end trainers wait; 0: never.
        barrier: ``(folder, n)``: instead of waiting for a stop, wait until ``n`` trainers reached the epoch.
        hold_fetch_after: files a fetch downloads before each further one waits for a stop; 0: never.
    """

    hold_epoch: int = 0
    barrier: tuple[Path, int] | None = None
    hold_fetch_after: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._fetches = 0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Faults:
        """The faults a test enabled for this process (none in production)."""
        env = os.environ if env is None else env
        barrier = None
        if env.get(BARRIER_ENV):
            folder, n = env[BARRIER_ENV].rsplit(":", 1)
            barrier = (Path(folder), int(n))
        return cls(
            hold_epoch=int(env.get(HOLD_EPOCH_ENV) or 0),
            barrier=barrier,
            hold_fetch_after=int(env.get(HOLD_FETCH_ENV) or 0),
        )

    def to_env(self) -> dict[str, str]:
        """The environment variables that enable these faults in a process a test starts."""
        env = {}
        if self.hold_epoch:
            env[HOLD_EPOCH_ENV] = str(self.hold_epoch)
        if self.barrier is not None:
            env[BARRIER_ENV] = f"{self.barrier[0]}:{self.barrier[1]}"
        if self.hold_fetch_after:
            env[HOLD_FETCH_ENV] = str(self.hold_fetch_after)
        return env

    def at_epoch_end(self, epoch: int, stop: StopFlag) -> None:
        """Called by the trainer after epoch ``epoch``'s checkpoint, before its epoch-end callbacks."""
        if not self.hold_epoch or epoch != self.hold_epoch:
            return
        if self.barrier is None:
            _wait(lambda: stop.requested)
            return
        folder, n = self.barrier
        (folder / f"{os.getpid()}-{uuid.uuid4().hex}").touch()
        _wait(lambda: len(os.listdir(folder)) >= n)

    def before_fetch(self, stop: StopFlag) -> None:
        """Called by a fetch worker before each file."""
        if not self.hold_fetch_after:
            return
        with self._lock:
            self._fetches += 1
            n = self._fetches
        if n > self.hold_fetch_after:
            _wait(lambda: stop.requested)


def _wait(done: Callable[[], bool]) -> None:
    deadline = time.monotonic() + HOLD_LIMIT_S
    while not done() and time.monotonic() < deadline:
        time.sleep(0.01)
