"""The endpoint supervisor: one detached process per endpoint (``python -m binsight.serving.supervisor``).

It owns the endpoint's stable port (a reverse proxy, see ``proxy.py``) and runs ``binsight serve`` as its
child on a private port. It sets the endpoint InService once the server's ``/ping`` is 200, or Failed with
the reason from ``server.log``; restarts the server when it dies (exponential backoff, counted in the
registry's ``restarts``) until ``max_restarts`` restarts in a row have failed, then sets the endpoint Failed
and stops (see :class:`RestartBudget`); and performs updates: start the new server, switch the proxy once it
is healthy, let the old server finish its in-flight requests, then SIGTERM it. SIGTERM stops everything
gracefully; SIGHUP wakes it up to look at the registry at once (``binsight endpoint update`` sends it).

What lives where: this module holds the :class:`Supervisor` and ``main``; the restart count, backoff and limit
(:class:`RestartBudget`, :func:`max_restarts_of`) live in :mod:`binsight.serving.restarts`, and the failure
wording (:func:`failure_reason`, :func:`exit_description`) in :mod:`binsight.serving.failures`. All of these
stay importable from here.

Run by ``binsight endpoint create`` (never by hand)::

    python -m binsight.serving.supervisor --home ~/.local/state/binsight NAME
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from binsight.serving.failures import exit_description, failure_reason
from binsight.serving.proxy import Backend, ReverseProxy
from binsight.serving.registry import (
    DELETING,
    FAILED,
    IN_SERVICE,
    UPDATING,
    EndpointRegistry,
    endpoint_dir,
)
from binsight.serving.restarts import (  # noqa: F401 - BACKOFF_*/STABLE_S: importable from here as before
    BACKOFF_MAX_S,
    BACKOFF_START_S,
    STABLE_S,
    RestartBudget,
    max_restarts_of,
)
from binsight.utils.net import free_port

log = logging.getLogger("binsight.endpoint")

POLL_S = 0.5  # how often the registry and the server process are looked at
PING_EVERY_S = 1.0  # how often the server's /ping is probed for the health column
STOP_TIMEOUT_S = 15.0  # SIGTERM → SIGKILL for a model server
DRAIN_TIMEOUT_S = 70.0  # longest wait for an old server's in-flight requests after an update


class _ProxyServer(uvicorn.Server):
    """uvicorn without its own signal handling: the supervisor decides when the proxy stops."""

    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[override]
        yield


def serve_command(config: dict[str, Any], port: int) -> list[str]:
    """The ``binsight serve`` command line for an endpoint config on a private loopback port."""
    cmd = [sys.executable, "-m", "binsight", "serve", "--model", config["artifact"], "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--backend", config["backend"]]
    options = config.get("options") or {}
    for key, flag in (("max_batch_size", "--max-batch-size"), ("max_wait_ms", "--max-wait-ms")):
        if options.get(key) is not None:
            cmd += [flag, str(options[key])]
    return cmd


class Supervisor:
    """Keeps one endpoint's model server alive behind a stable front port."""

    def __init__(self, home: Path, name: str) -> None:
        self.registry = EndpointRegistry(home)
        self.name = name
        self.folder = endpoint_dir(name, self.registry.home)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.server_log = self.folder / "server.log"
        self.proxy = ReverseProxy(name)
        self.current: Backend | None = None
        self.healthy_since = 0.0  # monotonic time the current server became the healthy one
        self.retiring: set[asyncio.Task] = set()
        self._retiring_backends: set[Backend] = set()
        self.stop_event = asyncio.Event()
        self.wake = asyncio.Event()
        self.pinger = httpx.AsyncClient(timeout=2.0)
        self.http: _ProxyServer | None = None
        self.http_task: asyncio.Task | None = None

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
        try:
            error = await self.start_proxy(row["host"], row["port"])
            if error is None:
                config = self.registry.get_config(row["config_name"])
                timeout = float(config["options"].get("startup_timeout", 120))
                backend, error = await self.start_backend(config, timeout)
                if backend is not None:
                    self.activate(backend)
                    self.registry.set_endpoint(self.name, status=IN_SERVICE, failure_reason=None)
                    log.info("endpoint %s InService at %s", self.name, row["url"])
                    error = await self.monitor(config)
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

    async def start_proxy(self, host: str, port: int) -> str | None:
        """Bind the endpoint's stable port and serve the proxy on it; returns an error or None."""
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            return f"cannot listen on {host}:{port}: {exc.strerror or exc} (is the port in use?)"
        config = uvicorn.Config(
            self.proxy,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=int(DRAIN_TIMEOUT_S),
            server_header=False,
            date_header=False,
        )
        self.http = _ProxyServer(config)
        self.http_task = asyncio.create_task(self.http.serve(sockets=[sock]))
        while not self.http.started:
            if self.http_task.done():
                return f"the proxy on {host}:{port} stopped at start-up"
            await asyncio.sleep(0.02)
        return None

    async def shutdown(self) -> None:
        """Stop taking requests, let in-flight ones finish, stop every model server, close the proxy."""
        if self.http is not None and self.http_task is not None:
            self.http.should_exit = True
            with contextlib.suppress(Exception):
                await self.http_task
        for task in list(self.retiring):
            task.cancel()
        backends = [self.current] if self.current else []
        await asyncio.gather(*(self.stop_backend(b) for b in backends + list(self._retiring_backends)))
        await self.proxy.aclose()
        await self.pinger.aclose()
        row = self.registry.get_endpoint(self.name)
        if row is not None and row["supervisor_pid"] == os.getpid():
            self.registry.set_endpoint(self.name, health="stopped", server_pid=None, backend_port=None)
        log.info("supervisor of %s stopped", self.name)

    # -- model servers ------------------------------------------------------------------------------

    async def start_backend(self, config: dict[str, Any], timeout: float) -> tuple[Backend | None, str | None]:
        """Start ``binsight serve`` for ``config`` and wait until its /ping is 200.

        Returns:
            (backend, None) when it is ready, else (None, reason) after stopping it.
        """
        error = "not started"
        for _ in range(3):  # a free port can be taken by someone else before the server binds it: retry
            port = free_port()
            with open(self.server_log, "ab") as out:
                out.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting {config['config_name']} ===\n".encode())
                out.flush()
                offset = out.tell()
                env = dict(os.environ, PYTHONUNBUFFERED="1", BINSIGHT_NO_PROGRESS="1")
                proc = subprocess.Popen(
                    serve_command(config, port), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env
                )
            backend = Backend(port, config["config_name"], proc, started_at=time.monotonic(), log_offset=offset)
            backend.meta = {"name": config.get("artifact_name"), "version": config.get("artifact_version")}
            log.info("started model server pid %d on port %d (%s)", proc.pid, port, config["config_name"])
            error = await self.wait_ready(backend, timeout)
            if error is None:
                return backend, None
            await self.stop_backend(backend)
            if "could not listen" not in error:
                break
        return None, error

    async def wait_ready(self, backend: Backend, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not backend.alive:
                code = exit_description(backend.proc.returncode if backend.proc else None)
                return f"model server stopped ({code}): {failure_reason(self.server_log, backend.log_offset)}"
            if self.stop_event.is_set():
                return "stopped while starting"
            if await self.ping(backend) == 200:
                return None
            await asyncio.sleep(0.2)
        reason = failure_reason(self.server_log, backend.log_offset)
        return f"model server not ready after {timeout:g} s (last log line: {reason})"

    async def ping(self, backend: Backend) -> int | None:
        try:
            return (await self.pinger.get(backend.url + "/ping")).status_code
        except httpx.HTTPError:
            return None

    async def stop_backend(self, backend: Backend) -> None:
        """SIGTERM (the server finishes in-flight requests), SIGKILL after STOP_TIMEOUT_S."""
        proc = backend.proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if proc.poll() is None:
            log.warning("model server pid %d ignored SIGTERM for %g s: SIGKILL", proc.pid, STOP_TIMEOUT_S)
            proc.kill()
            await asyncio.to_thread(proc.wait)

    def activate(self, backend: Backend) -> None:
        """Make ``backend`` the one the proxy forwards to (a single assignment: atomic in the event loop)."""
        self.current = backend
        self.proxy.backend = backend
        self.healthy_since = time.monotonic()
        self.registry.set_endpoint(
            self.name, health="healthy", server_pid=backend.proc.pid, backend_port=backend.port, failure_reason=None
        )

    async def retire(self, backend: Backend) -> None:
        """Wait for the old server's in-flight requests to finish, then stop it."""
        self._retiring_backends.add(backend)
        try:
            deadline = time.monotonic() + DRAIN_TIMEOUT_S
            log.info("draining model server pid %d (%d requests in flight)", backend.proc.pid, backend.inflight)
            while backend.inflight > 0 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            await self.stop_backend(backend)
            code = exit_description(backend.proc.returncode)
            log.info("stopped old model server pid %d (%s)", backend.proc.pid, code)
        finally:
            self._retiring_backends.discard(backend)

    # -- the watch loop -----------------------------------------------------------------------------

    async def monitor(self, config: dict[str, Any]) -> str | None:
        """Watch the registry and the server until stopped; returns why the endpoint failed, or None."""
        last_ping, health = 0.0, "healthy"
        budget = RestartBudget()
        while not self.stop_event.is_set():
            row = self.registry.get_endpoint(self.name)
            if row is None or row["status"] == DELETING:
                log.info("endpoint %s is being deleted: stopping", self.name)
                return
            if row["status"] == UPDATING and row["pending_config"]:
                config = await self.update(row["pending_config"]) or config
            current = self.current
            if current is not None and not current.alive:
                budget.max_restarts = max_restarts_of(config)
                budget.server_died(time.monotonic() - self.healthy_since)
                error = await self.restart(config, current, budget)
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

    async def restart(self, config: dict[str, Any], dead: Backend, budget: RestartBudget) -> str | None:
        """Bring a dead model server back, with exponential backoff.

        Returns:
            None once a new server is healthy (or the supervisor is stopping), else the reason to give up:
            ``budget.max_restarts`` restarts in a row failed.
        """
        reason = exit_description(dead.proc.returncode)
        if dead.proc.returncode is None or dead.proc.returncode >= 0:
            reason += f": {failure_reason(self.server_log, dead.log_offset)}"
        what = f"model server died ({reason})"
        timeout = float(config["options"].get("startup_timeout", 120))
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
            backend, error = await self.start_backend(config, timeout)
            if backend is not None:
                self.activate(backend)
                return None
            reason = error or "unknown"
            what = f"restart #{count} failed ({reason})"
        return None

    async def update(self, config_name: str) -> dict[str, Any] | None:
        """Blue/green: start the new config's server, switch once healthy, drain and stop the old one.

        Returns:
            The new config when the switch happened, None when the update failed (old server kept).
        """
        config = self.registry.get_config(config_name)
        if config is None:
            self.registry.finish_update(self.name, None, f"endpoint config {config_name} vanished")
            return None
        log.info("updating %s to %s (%s)", self.name, config_name, config["artifact"])
        timeout = float(config["options"].get("startup_timeout", 120))
        backend, error = await self.start_backend(config, timeout)
        if backend is None:
            log.error("update of %s failed, keeping the old model: %s", self.name, error)
            self.registry.finish_update(self.name, None, error)
            return None
        old = self.current
        self.activate(backend)
        self.registry.finish_update(self.name, config_name)
        log.info("endpoint %s now serves %s; draining the old server", self.name, config_name)
        if old is not None:
            task = asyncio.create_task(self.retire(old))
            self.retiring.add(task)
            task.add_done_callback(self.retiring.discard)
        return config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m binsight.serving.supervisor")
    parser.add_argument("--home", required=True, help="the BINSIGHT_HOME holding endpoints.db")
    parser.add_argument("name", help="endpoint name")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per health probe would flood the log
    supervisor = Supervisor(Path(args.home), args.name)
    try:
        return asyncio.run(supervisor.run())
    except Exception as exc:  # a bug here must still leave a reason in the registry, not a silent death
        log.exception("supervisor crashed")
        with contextlib.suppress(Exception):
            supervisor.registry.set_endpoint(
                args.name, status=FAILED, health="stopped", failure_reason=f"supervisor crashed: {exc}"
            )
        return 1


if __name__ == "__main__":
    sys.exit(main())
