"""The endpoint supervisor: one detached process per endpoint (``python -m binsight.endpoints.supervisor``).

It owns the endpoint's listening socket and never parses HTTP: each model server is a ``binsight serve``
child that inherits the socket (``--join-fd``) and a private loopback socket of its own (``--fd``), on which
the supervisor probes its ``/ping``. Once that answers 200 the supervisor records the server and sends it
SIGUSR1, and only then does it accept on the endpoint's socket. Every server setting comes from the
endpoint config, written as YAML (``--config FILE``).

- Creating: start a server; InService once its private ``/ping`` is 200, or Failed with the reason from
  ``server.log``.
- A server dies: start another (exponential backoff, counted in the registry's ``restarts``) until
  ``max_restarts`` restarts in a row have failed, then Failed (see :class:`RestartBudget`). Meanwhile new
  connections wait in the socket's backlog and are answered by the next server.
- Update (blue/green): start the new config's server; once it is healthy, SIGTERM the old one (it stops
  accepting and finishes its in-flight requests), wait :data:`HANDOVER_S`, and let the new one join the
  socket: connections arriving in between wait in the backlog. No request is proxied, dropped, or answered
  by the old model after the new one answered.
- SIGTERM stops everything gracefully; SIGHUP makes it look at the registry at once (``endpoint update``).

Model servers get a minimal environment and a parent-death signal: a killed supervisor leaves none behind.

Run by ``binsight endpoint create`` (never by hand)::

    python -m binsight.endpoints.supervisor --home ~/.local/state/binsight NAME
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from binsight.config.loader import dump_yaml
from binsight.endpoints import procs
from binsight.endpoints.config import EndpointConfig
from binsight.endpoints.failures import exit_description, failure_reason
from binsight.endpoints.restarts import RestartBudget
from binsight.endpoints.store import (
    DELETING,
    FAILED,
    IN_SERVICE,
    UPDATING,
    EndpointRegistry,
    endpoint_dir,
    private_dir,
)
from binsight.utils.net import listening_socket

log = logging.getLogger("binsight.endpoint")

POLL_S = 0.5  # how often the registry and the server process are looked at
PING_EVERY_S = 1.0  # how often the current server's /ping is probed for the health column
STOP_TIMEOUT_S = 15.0  # SIGTERM → SIGKILL for a model server that is not draining requests
BACKLOG = 1024  # connections the endpoint's socket holds while no server accepts (a restart)
HANDOVER_S = 0.25  # after SIGTERM, the time an old server takes to stop accepting (uvicorn looks every 0.1 s)


@dataclass(eq=False)
class ModelServer:
    """One ``binsight serve`` child: its process, its endpoint config and its private health port."""

    config_name: str
    config: EndpointConfig
    artifact: str
    proc: subprocess.Popen[bytes]
    health_port: int
    log_offset: int
    started_at: float = field(default_factory=time.monotonic)

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.health_port}/ping"

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None


def serve_command(artifact: str, config_file: Path, health_fd: int, endpoint_fd: int) -> list[str]:
    """The ``binsight serve`` command line of a model server on an endpoint's socket."""
    return [sys.executable, "-m", "binsight", "serve", "--model", artifact, "--config", str(config_file),
            "--fd", str(health_fd), "--join-fd", str(endpoint_fd)]  # fmt: skip


class Supervisor:
    """Keeps one endpoint's model server alive on the endpoint's socket."""

    def __init__(self, home: Path, name: str) -> None:
        self.registry = EndpointRegistry(home)
        self.name = name
        self.folder = private_dir(endpoint_dir(name, self.registry.home))
        self.server_log = self.folder / "server.log"
        self.socket: socket.socket | None = None
        self.current: ModelServer | None = None
        self.healthy_since = 0.0  # monotonic time the current server became the healthy one
        self.retiring: set[asyncio.Task[None]] = set()
        self.stop_event = asyncio.Event()
        self.wake = asyncio.Event()
        self.pinger = httpx.AsyncClient(timeout=2.0)

    # -- lifecycle ----------------------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stop_event.set)
        loop.add_signal_handler(signal.SIGINT, self.stop_event.set)
        loop.add_signal_handler(signal.SIGHUP, self.wake.set)
        row = self.registry.get_endpoint(self.name)
        if row is None:
            log.error("endpoint %s is not in the registry %s", self.name, self.registry.path)
            return 1
        self.registry.set_endpoint(self.name, supervisor_pid=os.getpid())
        error: str | None = None
        try:
            try:
                self.socket = listening_socket(row["host"], row["port"], BACKLOG)
            except OSError as exc:
                error = f"cannot listen on {row['host']}:{row['port']}: {exc.strerror or exc} (is the port in use?)"
            if error is None:
                config = EndpointConfig.from_options(row["options"], row["backend"])
                server, error = await self.start_server(row["config_name"], config, row["artifact"])
                if server is not None:
                    self.activate(server)
                    self.registry.set_endpoint(self.name, status=IN_SERVICE, failure_reason=None)
                    log.info("endpoint %s InService at %s", self.name, row["url"])
                    error = await self.monitor()
            if error is not None and not self.stop_event.is_set():
                self.mark_failed(error)
        finally:
            await self.shutdown()
        return 0 if error is None else 1

    def mark_failed(self, reason: str) -> None:
        """Set the endpoint Failed with ``reason`` (never over a delete that is under way)."""
        log.error("endpoint %s failed: %s", self.name, reason)
        row = self.registry.get_endpoint(self.name)
        if row is None or row["status"] == DELETING:
            return
        if row["pending_config"]:  # an update that arrived while restarting: drop its records
            self.registry.finish_update(self.name, None, reason)
        self.registry.set_endpoint(self.name, status=FAILED, health="stopped", failure_reason=reason)

    async def shutdown(self) -> None:
        """Stop every model server (each finishes its in-flight requests, old ones of an update included), then
        close the endpoint's socket."""
        servers = [self.current] if self.current else []
        await asyncio.gather(*(self.stop_server(s) for s in servers), *self.retiring, return_exceptions=True)
        if self.socket is not None:
            self.socket.close()
        await self.pinger.aclose()
        row = self.registry.get_endpoint(self.name)
        if row is not None and row["supervisor_pid"] == os.getpid():
            self.registry.set_endpoint(self.name, health="stopped", server_pid=None, backend_port=None)
        log.info("supervisor of %s stopped", self.name)

    # -- model servers ------------------------------------------------------------------------------

    async def start_server(
        self, config_name: str, config: EndpointConfig, artifact: str
    ) -> tuple[ModelServer | None, str | None]:
        """Start ``binsight serve`` for an endpoint config and wait until its private /ping is 200.

        Returns:
            (server, None) when it is ready, else (None, reason) after stopping it.
        """
        assert self.socket is not None
        config_file = self.folder / f"{config_name}.serve.yaml"
        with procs.open_private_log(config_file.with_suffix(".partial")) as out:
            # The server answers /endpoints/NAME/invocations for this endpoint's name only (others: ValidationError).
            out.write(dump_yaml(dataclasses.replace(config.serve, endpoint_name=self.name)).encode())
        config_file.with_suffix(".partial").replace(config_file)
        health = listening_socket("127.0.0.1", 0)
        try:
            with procs.open_private_log(self.server_log) as out:
                out.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting {config_name} ===\n".encode())
                out.flush()
                offset = out.tell()
                # Started from the event loop's thread: the parent-death signal follows the thread that forks.
                proc = subprocess.Popen(
                    serve_command(artifact, config_file, health.fileno(), self.socket.fileno()),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=procs.child_env(),
                    pass_fds=(health.fileno(), self.socket.fileno()),
                    preexec_fn=procs.die_with_parent(),  # noqa: PLW1509 - only a prctl call between fork and exec
                )
            server = ModelServer(config_name, config, artifact, proc, health.getsockname()[1], offset)
        finally:
            health.close()  # the child holds its own copy
        log.info("started model server pid %d (health port %d, %s)", proc.pid, server.health_port, config_name)
        error = await self.wait_ready(server, config.startup_timeout)
        if error is None:
            return server, None
        await self.stop_server(server)
        return None, error

    async def wait_ready(self, server: ModelServer, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not server.alive:
                code = exit_description(server.proc.returncode)
                return f"model server stopped ({code}): {failure_reason(self.server_log, server.log_offset)}"
            if self.stop_event.is_set():
                return "stopped while starting"
            if await self.ping(server) == 200:
                return None
            await asyncio.sleep(0.2)
        reason = failure_reason(self.server_log, server.log_offset)
        return f"model server not ready after {timeout:g} s (last log line: {reason})"

    async def ping(self, server: ModelServer) -> int | None:
        try:
            return (await self.pinger.get(server.health_url)).status_code
        except httpx.HTTPError:
            return None

    async def stop_server(self, server: ModelServer, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM (the server stops accepting and finishes in-flight requests), SIGKILL after ``timeout``."""
        proc = server.proc
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        deadline = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if proc.poll() is None:
            log.warning("model server pid %d ignored SIGTERM for %g s: SIGKILL", proc.pid, timeout)
            proc.kill()
            await asyncio.to_thread(proc.wait)

    def activate(self, server: ModelServer) -> None:
        """Record ``server`` as the endpoint's current one, then let it accept on the endpoint's socket."""
        self.current = server
        self.healthy_since = time.monotonic()
        self.registry.set_endpoint(
            self.name, health="healthy", server_pid=server.proc.pid, backend_port=server.health_port,
            failure_reason=None,
        )  # fmt: skip
        with contextlib.suppress(ProcessLookupError):
            server.proc.send_signal(signal.SIGUSR1)

    async def retire(self, server: ModelServer) -> None:
        """Stop an old server: it stops accepting at once and gets the request timeout to finish its requests."""
        drain = server.config.serve.request_timeout + 10
        await self.stop_server(server, timeout=drain)
        log.info("stopped old model server pid %d (%s)", server.proc.pid, exit_description(server.proc.returncode))

    # -- the watch loop -----------------------------------------------------------------------------

    async def monitor(self) -> str | None:
        """Watch the registry and the server until stopped; returns why the endpoint failed, or None."""
        last_ping, health = 0.0, "healthy"
        budget = RestartBudget()
        while not self.stop_event.is_set():
            row = self.registry.get_endpoint(self.name)
            if row is None or row["status"] == DELETING:
                log.info("endpoint %s is being deleted: stopping", self.name)
                return None
            if row["status"] == UPDATING and row["pending_config"]:
                await self.update(row["pending_config"])
            current = self.current
            if current is not None and not current.alive:
                budget.max_restarts = current.config.max_restarts
                budget.server_died(time.monotonic() - self.healthy_since)
                error = await self.restart(current, budget)
                if error is not None:
                    return error
                health = "healthy"
            elif current is not None and time.monotonic() - last_ping >= PING_EVERY_S:
                last_ping = time.monotonic()
                now = "healthy" if await self.ping(current) == 200 else "unhealthy"
                if now != health and current.alive:
                    health = now
                    self.registry.set_endpoint(self.name, health=health)
            self.wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.wake.wait(), POLL_S)
        return None

    async def restart(self, dead: ModelServer, budget: RestartBudget) -> str | None:
        """Bring a dead model server back, with exponential backoff.

        Returns:
            None once a new server is healthy (or the supervisor is stopping), else the reason to give up:
            ``budget.max_restarts`` restarts in a row failed.
        """
        reason = exit_description(dead.proc.returncode)
        if dead.proc.returncode is None or dead.proc.returncode >= 0:
            reason += f": {failure_reason(self.server_log, dead.log_offset)}"
        what = f"model server died ({reason})"
        while not self.stop_event.is_set():
            if budget.exhausted:
                n = budget.in_a_row
                return (
                    f"gave up on the model server after {n} failed restart{'s' * (n != 1)} in a row "
                    f"(max_restarts={budget.max_restarts}); last: {reason}"
                )
            delay = budget.next_delay()
            count = self.registry.increment_restarts(self.name)
            self.registry.set_endpoint(self.name, health="restarting", server_pid=None, failure_reason=what)
            limit = budget.max_restarts or "unlimited"
            log.warning("%s; restart #%d in %.1f s (%d/%s in a row)", what, count, delay, budget.in_a_row, limit)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.stop_event.wait(), delay)
            if self.stop_event.is_set():
                break
            server, error = await self.start_server(dead.config_name, dead.config, dead.artifact)
            if server is not None:
                self.activate(server)
                return None
            reason = error or "unknown"
            what = f"restart #{count} failed ({reason})"
        return None

    async def update(self, config_name: str) -> None:
        """Blue/green: start the new config's server on the endpoint's socket; once it is healthy (and so
        accepting), retire the old one. A new server that never gets ready is stopped; the old one serves on."""
        stored = self.registry.get_config(config_name)
        if stored is None:
            self.registry.finish_update(self.name, None, f"endpoint config {config_name} vanished")
            return
        config = EndpointConfig.from_options(stored["options"], stored["backend"])
        log.info("updating %s to %s (%s)", self.name, config_name, stored["artifact"])
        server, error = await self.start_server(config_name, config, stored["artifact"])
        if server is None:
            log.error("update of %s failed, keeping the old model: %s", self.name, error)
            self.registry.finish_update(self.name, None, error)
            return
        old = self.current
        if old is not None:
            old.proc.terminate()  # it stops accepting now and finishes its in-flight requests
            task = asyncio.create_task(self.retire(old))
            self.retiring.add(task)
            task.add_done_callback(self.retiring.discard)
            await asyncio.sleep(HANDOVER_S)
        self.activate(server)
        self.registry.finish_update(self.name, config_name)
        log.info("endpoint %s now serves %s; the old server drains", self.name, config_name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m binsight.endpoints.supervisor")
    parser.add_argument("--home", required=True, help="the BINSIGHT_HOME holding endpoints.db")
    parser.add_argument("name", help="endpoint name")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per health probe would flood the log
    supervisor: Supervisor | None = None
    try:
        supervisor = Supervisor(Path(args.home), args.name)
        return asyncio.run(supervisor.run())
    except Exception as exc:  # a bug here must still leave a reason in the registry, not a silent death
        log.exception("supervisor crashed")
        with contextlib.suppress(Exception):
            EndpointRegistry(Path(args.home)).set_endpoint(
                args.name, status=FAILED, health="stopped", failure_reason=f"supervisor crashed: {exc}"
            )
        return 1


if __name__ == "__main__":
    sys.exit(main())
