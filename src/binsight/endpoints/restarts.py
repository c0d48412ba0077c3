"""When the endpoint supervisor restarts a dead model server, and when it gives up: :class:`RestartBudget`
(restarts in a row, exponential backoff, the endpoint config's ``max_restarts``).
"""

from __future__ import annotations

from binsight.endpoints.config import DEFAULT_MAX_RESTARTS

BACKOFF_START_S = 0.5  # wait before the first restart in a row; it doubles with each further one
BACKOFF_MAX_S = 30.0  # longest wait between two restarts
STABLE_S = 60.0  # a server healthy this long resets the count of restarts in a row (and so the backoff)


class RestartBudget:
    """Counts the restarts in a row that failed; gives the backoff before the next one and the limit.

    A restart fails when its server does not start (it exits, or gets no /ping 200 within the startup
    timeout) or dies less than ``STABLE_S`` after it became healthy, so a crash loop of servers that start
    and die a few seconds later backs off and ends too. A server that stayed healthy ``STABLE_S`` resets the
    count. ``max_restarts`` 0 never gives up.
    """

    def __init__(self, max_restarts: int = DEFAULT_MAX_RESTARTS) -> None:
        self.max_restarts = max_restarts
        self.in_a_row = 0  # restarts since the last server that stayed healthy STABLE_S

    def server_died(self, healthy_for: float) -> None:
        """Record the death of a server that had been healthy for ``healthy_for`` seconds."""
        if healthy_for >= STABLE_S:
            self.in_a_row = 0

    @property
    def exhausted(self) -> bool:
        """True when ``max_restarts`` restarts in a row have failed: time to give up."""
        return self.max_restarts > 0 and self.in_a_row >= self.max_restarts

    def next_delay(self) -> float:
        """Count one more restart; returns the seconds to wait before it (0.5, 1, 2 … up to BACKOFF_MAX_S)."""
        delay = min(BACKOFF_MAX_S, BACKOFF_START_S * 2.0 ** min(self.in_a_row, 16))
        self.in_a_row += 1
        return delay
