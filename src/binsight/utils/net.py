"""Small network helpers."""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port the OS says is free on ``host`` now (another process may still take it before the caller binds
    it, so callers retry)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]
