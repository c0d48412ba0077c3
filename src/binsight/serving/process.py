"""Run the model server process under uvicorn: sockets, limits, logging, graceful shutdown, exit code.

The server listens at once and loads the model in the background (``/ping`` is 503 until a warm-up
prediction succeeded). It binds ``host:port`` itself before announcing anything (a busy port is an error,
exit 1), or serves listening sockets it inherited as file descriptors: ``fds`` at once, ``join_fds`` once
the process gets SIGUSR1 and the model is ready. An endpoint supervisor
owns the endpoint's socket and hands it over as a ``join_fds`` socket: a new server never accepts a request
it cannot answer yet, and the supervisor decides the moment it takes over from an old one. On SIGTERM or SIGINT
it stops accepting connections, lets in-flight requests finish (up to the request timeout), drains the
batcher and exits 0. If the model cannot be loaded it exits 1.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

import uvicorn

from binsight.config.schemas import ServeConfig
from binsight.errors import BinsightError
from binsight.serving.faults import Faults
from binsight.utils.net import listening_socket

log = logging.getLogger("binsight.serving")


class _AccessHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler :func:`configure_access_log` installed, so it is installed once."""


def configure_access_log(stream: TextIO | None = None) -> None:
    """Send ``binsight.access`` records to ``stream`` (stderr) as bare JSON lines, one per request."""
    logger = logging.getLogger("binsight.access")
    if any(isinstance(h, _AccessHandler) for h in logger.handlers):
        return
    handler = _AccessHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def check_model(model_path: str | Path, backend: str) -> Path:
    """Fail fast (before listening) when the artifact or the backend's model file is missing.

    Returns:
        The artifact folder.

    Raises:
        BinsightError: no artifact there, or no ONNX file for an ONNX backend.
    """
    from binsight.inference.artifact import read_meta, resolve_artifact_dir
    from binsight.inference.onnx_backend import onnx_file_for

    folder = resolve_artifact_dir(model_path)
    read_meta(folder)
    if backend.startswith("onnx"):
        onnx_file_for(folder, backend)
    return folder


def inherited_sockets(fds: Sequence[int]) -> list[socket.socket]:
    """Listening sockets from inherited file descriptors (their family is read from the descriptor).

    Raises:
        BinsightError: a descriptor is not an open listening socket.
    """
    sockets = []
    for fd in fds:
        try:
            sock = socket.socket(fileno=fd)
        except OSError as exc:
            raise BinsightError(f"--fd {fd} is not an open socket: {exc.strerror or exc}") from None
        if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            raise BinsightError(f"--fd {fd} is a socket that does not listen")
        sockets.append(sock)
    return sockets


class _Server(uvicorn.Server):
    """uvicorn's server that also accepts on ``join`` sockets once told to (SIGUSR1) and ``ready()``."""

    def __init__(self, config: uvicorn.Config, join: list[socket.socket], ready: Callable[[], bool]) -> None:
        super().__init__(config)
        self.join = join
        self.ready = ready
        self._joining: asyncio.Task[None] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.join and not self.should_exit:
            told = asyncio.Event()
            asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, told.set)
            self._joining = asyncio.create_task(self._join(told))

    async def _join(self, told: asyncio.Event) -> None:
        while not (told.is_set() and self.ready()):
            if self.should_exit:
                return
            await asyncio.sleep(0.02)
        loop = asyncio.get_running_loop()
        config = self.config

        def protocol() -> asyncio.Protocol:  # what uvicorn's own startup builds per connection
            return config.http_protocol_class(  # type: ignore[call-arg]
                config=config, server_state=self.server_state, app_state=self.lifespan.state
            )

        for sock in self.join:
            self.servers.append(await loop.create_server(protocol, sock=sock, backlog=config.backlog))
        log.info("the model is ready: accepting on %d inherited socket(s)", len(self.join))


def run_server(
    model_path: str | Path,
    config: ServeConfig,
    *,
    faults: Faults | None = None,
    fds: Sequence[int] = (),
    join_fds: Sequence[int] = (),
) -> int:
    """Serve ``model_path`` until SIGTERM/SIGINT; returns the process exit code.

    Args:
        model_path: Run directory or artifact folder.
        config: Host, port, backend, batching and limits.
        faults: Fault injection for tests (adds the ``/_test/*`` routes).
        fds: Inherited listening sockets served at once, instead of binding ``config.host:config.port``.
        join_fds: Inherited listening sockets served once SIGUSR1 came and the model is ready.
    """
    import prometheus_client

    from binsight.serving.asgi import create_app
    from binsight.serving.protocol import guarded_protocol

    check_model(model_path, config.backend)
    sockets, join = inherited_sockets(fds), inherited_sockets(join_fds)
    if not sockets and not join:
        # Bind before announcing anything: a busy port fails here (exit 1), not after "serving on ...".
        try:
            sockets = [listening_socket(config.host, config.port, backlog=2048)]
        except OSError as exc:
            raise BinsightError(
                f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc} "
                "(another server on that port? pick another with --port, or port=0 for a free one)"
            ) from None
    configure_access_log()
    # One process serves one model: drop the *_created series, which only double the /metrics text.
    prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
    exit_code = 0
    server: _Server | None = None

    def on_fatal(message: str) -> None:
        nonlocal exit_code
        exit_code = 1
        if server is not None:
            server.should_exit = True

    app = create_app(model_path, config, faults=faults, on_fatal=on_fatal)
    uv_config = uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        http=guarded_protocol(config.header_timeout, config.max_connections),
        h11_max_incomplete_event_size=config.max_header_bytes,
        timeout_keep_alive=max(1, round(config.keep_alive_timeout)),
        log_config=None,
        access_log=False,  # our middleware writes one JSON line per request instead
        lifespan="on",
        timeout_graceful_shutdown=int(config.request_timeout) + 5,
        server_header=False,
    )
    server = _Server(uv_config, join, lambda: bool(app.state.service.ready))
    # uvicorn re-raises the signal after its graceful shutdown; a Python-level handler turns that into a
    # clean exit 0 instead of death by SIGTERM.
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    if fds or join_fds:
        where = ", ".join(f"fd {fd}" for fd in [*fds, *join_fds])
    else:
        host, port = sockets[0].getsockname()[:2]
        where = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    try:
        log.info(
            "serving %s on %s (backend %s, max batch %d, max wait %g ms, queue %d)",
            model_path,
            where,
            config.backend,
            config.max_batch_size,
            config.max_wait_ms,
            config.queue_size,
        )
        server.run(sockets=sockets or None)
    finally:
        signal.signal(signal.SIGTERM, previous)
    if not server.started and exit_code == 0:
        raise BinsightError(f"could not listen on {where} (is the port already in use?)")
    return exit_code
