"""uvicorn's h11 protocol with the two limits uvicorn lacks: a header deadline and a connection cap.

uvicorn bounds the header size (``h11_max_incomplete_event_size``) and closes idle keep-alive connections
(``timeout_keep_alive``), but a connection that sends nothing, or sends its headers a byte at a time
(slowloris), is kept for ever. :class:`GuardedH11Protocol` closes a connection that has not completed a
request's headers within ``header_timeout`` seconds of connecting, or of its first byte after a finished
response, and closes new connections at once beyond ``max_connections``. The body deadline and size are
the app's (``asgi.read_body``). A subclass of the maintained protocol keeps HTTP parsing in h11.

At shutdown (SIGTERM: an endpoint update retires this server) connections are drained, not cut: the last
request on each is answered with ``Connection: close``. The connections the server then closes itself are
closed with a reset when nothing written can be lost by it (every byte acknowledged, or a loopback peer,
where the reset queues behind the data), so the endpoint's port is not left with TIME_WAIT entries that keep
it from being bound again; other connections are closed normally.
"""

from __future__ import annotations

import asyncio
import fcntl
import ipaddress
import logging
import socket
import struct
import termios
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

log = logging.getLogger("binsight.serving")
DRAIN_IDLE_S = 1.0  # at shutdown, how long an idle kept-alive connection may still bring one last request


class GuardedH11Protocol(H11Protocol):
    """:class:`H11Protocol` plus a header deadline and a connection cap (set by :func:`guarded_protocol`)."""

    header_timeout = 10.0
    max_connections = 256

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._header_timer: asyncio.TimerHandle | None = None
        self._cycle_when_armed: object = None
        self._graces = 0
        self._shutting_down = False
        self._drain_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        if len(self.connections) > self.max_connections:
            log.warning("refusing a connection: %d open (max_connections)", len(self.connections) - 1)
            self.transport.close()
            return
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._drain_timer is not None:
            self._drain_timer.cancel()
        super().connection_lost(exc)

    def shutdown(self) -> None:
        """Drain instead of cutting: a request in flight is answered with ``Connection: close``; an idle
        kept-alive connection gets :data:`DRAIN_IDLE_S` for the request its client may be sending right now
        (answered the same way) before it is closed, so no client sees its request cut off."""
        self._shutting_down = True
        if self.cycle is None or self.cycle.response_complete:
            self._drain_timer = self.loop.call_later(DRAIN_IDLE_S, self._close_if_idle)
            return
        self._announce_close()
        super().shutdown()

    def _announce_close(self) -> None:
        cycle = self.cycle
        if cycle is not None and not cycle.response_started:
            cycle.keep_alive = False
            cycle.default_headers = [*cycle.default_headers, (b"connection", b"close")]

    def _close_if_idle(self) -> None:
        self._drain_timer = None
        if not self.transport.is_closing() and (self.cycle is None or self.cycle.response_complete):
            self._reset_on_close()
            super().shutdown()

    def on_response_complete(self) -> None:
        if self._shutting_down:
            self._reset_on_close()
        super().on_response_complete()

    def _reset_on_close(self) -> None:
        """Make the coming close a reset (no TIME_WAIT) when nothing written is still unacknowledged."""
        sock = self.transport.get_extra_info("socket")
        if sock is None or self.transport.get_write_buffer_size():
            return
        try:
            unacked = struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]
            peer = ipaddress.ip_address(sock.getpeername()[0])
            mapped = getattr(peer, "ipv4_mapped", None)
            if unacked == 0 or peer.is_loopback or (mapped is not None and mapped.is_loopback):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except (OSError, ValueError):
            pass

    def data_received(self, data: bytes) -> None:
        if self._header_timer is None and (self.cycle is None or self.cycle.response_complete):
            self._arm()  # the first byte of a next request on a kept-alive connection
        super().data_received(data)
        if self.cycle is not self._cycle_when_armed:
            self._disarm()  # the headers are complete: a new request cycle began
            if self._shutting_down:  # a request on a draining connection: its answer closes the connection
                self._announce_close()

    def _unread_bytes(self) -> int:
        sock = self.transport.get_extra_info("socket")
        try:
            return int(struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0])
        except (AttributeError, OSError):
            return 0

    def _arm(self) -> None:
        self._disarm()
        self._graces = 0
        self._cycle_when_armed = self.cycle
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self._unread_bytes() > 0 and self._graces < 3:
            # Bytes wait in the kernel: the event loop is behind (overload), not the client. Look again soon.
            self._graces += 1
            self._header_timer = self.loop.call_later(0.5, self._headers_too_slow)
            return
        if not self.transport.is_closing() and self.cycle is self._cycle_when_armed:
            log.info("closing a connection that sent no complete request headers in %gs", self.header_timeout)
            self.transport.close()


def guarded_protocol(header_timeout: float, max_connections: int) -> type[GuardedH11Protocol]:
    """A :class:`GuardedH11Protocol` class with these limits (uvicorn takes a protocol class, not an object)."""
    return type(
        "GuardedH11Protocol",
        (GuardedH11Protocol,),
        {"header_timeout": header_timeout, "max_connections": max_connections},
    )
