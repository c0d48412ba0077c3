"""The endpoint client API, run in the caller's process (the CLI, the pipeline): create, list, describe,
invoke, update, delete, cleanup. State lives in the registry (``store.py``); each endpoint runs as a detached
supervisor process (``supervisor.py``) that owns the endpoint's listening socket and runs ``binsight serve``
children on it. The contract with the supervisor is the registry row plus its :class:`EndpointConfig`.

Example::

    from binsight.endpoints.api import create_endpoint, invoke_endpoint, cleanup

    info = create_endpoint("demo", "runs/train/exp")          # blocks until InService
    pred = invoke_endpoint("demo", open("bin.jpg", "rb").read(), expected_quantity=3)
    cleanup()                                                # every endpoint, config and model gone
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from binsight.endpoints import procs
from binsight.endpoints.config import EndpointConfig
from binsight.endpoints.store import (
    CREATING,
    DELETING,
    FAILED,
    IN_SERVICE,
    UPDATING,
    EndpointRegistry,
    endpoint_dir,
    private_dir,
)
from binsight.errors import BinsightError
from binsight.utils.net import free_port

__all__ = [
    "cleanup",
    "create_endpoint",
    "delete_endpoint",
    "describe_endpoint",
    "invoke_endpoint",
    "list_endpoints",
    "update_endpoint",
]

_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")  # SageMaker's endpoint-name rule
STALE_GRACE_S = 30.0  # a row younger than this may still be waiting for its supervisor's pid


def _registry(home: str | Path | None = None) -> EndpointRegistry:
    return EndpointRegistry(home)


def _resolve_model(model: str | Path) -> tuple[str, dict[str, str]]:
    """The absolute artifact folder plus its name/version (empty when model.json is unreadable: the server
    then fails to start and the endpoint becomes Failed with the reason, as on SageMaker)."""
    from binsight.inference.artifact import read_meta, resolve_artifact_dir

    folder = resolve_artifact_dir(model).resolve()
    try:
        meta = read_meta(folder)
        return str(folder), {"name": meta.name, "version": meta.version}
    except BinsightError:
        return str(folder), {}


def _check_name(name: str) -> None:
    if not _NAME.match(name or ""):
        raise BinsightError(
            f"bad endpoint name {name!r}: use 1-63 letters, digits and hyphens, starting with a letter or digit"
        )


def _require(reg: EndpointRegistry, name: str) -> dict[str, Any]:
    row = reg.get_endpoint(name)
    if row is None:
        raise BinsightError(f"no endpoint named {name!r} (see `binsight endpoint list`)")
    return row


def _reconcile(reg: EndpointRegistry, row: dict[str, Any]) -> dict[str, Any]:
    """Mark a live-looking endpoint whose supervisor is gone as Failed (a stale row)."""
    if row["status"] not in (CREATING, IN_SERVICE, UPDATING):
        return row
    pid = row["supervisor_pid"]
    if procs.is_supervisor(pid, row["name"]):
        return row
    if pid is None and time.time() - row["created_at"] < STALE_GRACE_S:
        return row
    reason = f"the supervisor process {pid} is gone (see {endpoint_dir(row['name'], reg.home)}/supervisor.log)"
    reg.set_endpoint(row["name"], status=FAILED, health="stopped", failure_reason=reason)
    return reg.get_endpoint(row["name"]) or row


def _spawn_supervisor(reg: EndpointRegistry, name: str) -> int:
    folder = private_dir(endpoint_dir(name, reg.home))
    with procs.open_private_log(folder / "supervisor.log") as out:
        # A new session: the supervisor outlives this process and its group holds all the endpoint's processes.
        proc = subprocess.Popen(
            [sys.executable, "-m", procs.SUPERVISOR_MODULE, "--home", str(reg.home), name],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            cwd=reg.home,  # never pin the caller's working directory (paths in the registry are absolute)
            env=procs.child_env(),
        )
    # Reap it if it exits while this (possibly long-lived) process still runs, so no zombie lingers.
    threading.Thread(target=proc.wait, name=f"reap-supervisor-{name}", daemon=True).start()
    reg.set_endpoint(name, supervisor_pid=proc.pid)
    return proc.pid


WaitCallback = Callable[[str, float], None]  # (status, seconds waited so far), called on every poll


def _wait_settled(
    reg: EndpointRegistry, name: str, busy: str, timeout: float, on_wait: WaitCallback | None = None
) -> dict[str, Any]:
    """Poll until the endpoint leaves status ``busy`` (or its supervisor dies); returns the row."""
    start = time.monotonic()
    deadline = start + timeout
    while True:
        row = _reconcile(reg, _require(reg, name))
        if on_wait is not None:
            on_wait(row["status"], time.monotonic() - start)
        if row["status"] != busy:
            return row
        if time.monotonic() > deadline:
            raise BinsightError(
                f"endpoint {name!r} is still {busy} after {timeout:g} s; it goes on in the background "
                f"(`binsight endpoint describe {name}`, logs in {endpoint_dir(name, reg.home)})"
            )
        time.sleep(0.2)


def create_endpoint(
    name: str,
    model: str | Path,
    config: EndpointConfig | None = None,
    *,
    port: int | None = None,
    host: str = "127.0.0.1",
    wait: bool = True,
    timeout: float | None = None,
    home: str | Path | None = None,
    on_wait: WaitCallback | None = None,
    **settings: Any,
) -> dict[str, Any]:
    """Register a model, an endpoint config and an endpoint, and start its supervisor.

    Args:
        name: Endpoint name (letters, digits, hyphens).
        model: Run directory or artifact folder.
        config: The endpoint config (default :class:`EndpointConfig`), changed by ``timeout`` and ``settings``.
        port: The endpoint's stable port (default: a free one).
        host: Address the endpoint listens on.
        wait: Block until the endpoint is InService (raise when it becomes Failed).
        timeout: Seconds the model server gets to answer /ping 200 (``startup_timeout``; the wait lasts as long).
        home: Registry folder (default ``$BINSIGHT_HOME``).
        on_wait: Called with (status, seconds waited) while ``wait`` polls (progress display).
        settings: Any :class:`ServeConfig` key (``backend``, ``max_batch_size``, ``body_timeout`` …) or
            ``max_restarts``: restarts in a row that may fail before the endpoint becomes Failed (0 = never).

    Returns:
        The endpoint as ``describe_endpoint`` reports it.

    Raises:
        BinsightError: bad name/model/port/setting, the name exists, or (with ``wait``) the endpoint failed.
    """
    _check_name(name)
    config = (config or EndpointConfig()).replace(startup_timeout=timeout, **settings)
    artifact, meta = _resolve_model(model)
    reg = _registry(home)
    if port is None:
        used = {row["port"] for row in reg.list_endpoints()}
        port = next(p for p in iter(lambda: free_port(host), None) if p not in used)
    elif not 1 <= port <= 65535:
        raise BinsightError(f"port {port} is out of range 1..65535")
    elif not procs.port_free(host, port):
        raise BinsightError(f"port {port} on {host} is in use; pick another --port or leave it out for a free one")
    reg.create_endpoint(
        name, artifact, config.serve.backend, port, host=host, options=config.to_options(), model_meta=meta
    )
    try:
        _spawn_supervisor(reg, name)
    except OSError as exc:
        reg.remove_endpoint(name)
        raise BinsightError(f"could not start the supervisor of {name!r}: {exc}") from None
    if wait:
        row = _wait_settled(reg, name, CREATING, config.startup_timeout + 10, on_wait)
        if row["status"] == FAILED:
            raise BinsightError(
                f"endpoint {name!r} failed: {row['failure_reason']} "
                f"(logs in {endpoint_dir(name, reg.home)}; delete it with `binsight endpoint delete {name}`)"
            )
    return describe_endpoint(name, home=home, ping=wait)


def list_endpoints(home: str | Path | None = None) -> list[dict[str, Any]]:
    """Every endpoint with its model, status, health and restart count (stale rows reported Failed)."""
    reg = _registry(home)
    return [_reconcile(reg, row) for row in reg.list_endpoints()]


def ping_endpoint(url: str, timeout: float = 2.0) -> dict[str, Any]:
    """A live ``GET /ping`` through the endpoint's front port: ``{"status_code", "healthy"[, "error"]}``."""
    import httpx

    try:
        code = httpx.get(url + "/ping", timeout=timeout).status_code
    except httpx.HTTPError as exc:
        return {"status_code": None, "healthy": False, "error": f"{type(exc).__name__}: {exc}"}
    return {"status_code": code, "healthy": code == 200}


def describe_endpoint(name: str, home: str | Path | None = None, ping: bool = True) -> dict[str, Any]:
    """All registry fields of the endpoint, its config and model, log paths and (``ping``) a live /ping."""
    reg = _registry(home)
    row = dict(_reconcile(reg, _require(reg, name)))
    folder = endpoint_dir(name, reg.home)
    row["logs"] = {"supervisor": str(folder / "supervisor.log"), "server": str(folder / "server.log")}
    row["invocation_url"] = f"{row['url']}/endpoints/{name}/invocations"
    if ping:
        row["ping"] = ping_endpoint(row["url"]) if row["status"] != FAILED else {"status_code": None, "healthy": False}
    return row


def invoke_endpoint(
    name: str,
    image_bytes: bytes,
    content_type: str = "image/jpeg",
    expected_quantity: int | None = None,
    timeout: float = 60,
    home: str | Path | None = None,
) -> dict[str, Any]:
    """POST an image to ``/endpoints/NAME/invocations`` and return the prediction JSON.

    Raises:
        BinsightError: unknown or not-serving endpoint, unreachable server, or an error answer (its message).
    """
    import httpx

    reg = _registry(home)
    row = _reconcile(reg, _require(reg, name))
    if row["status"] not in (IN_SERVICE, UPDATING):
        reason = f": {row['failure_reason']}" if row["failure_reason"] else ""
        raise BinsightError(f"endpoint {name!r} is {row['status']}, not InService{reason}")
    headers = {"Content-Type": content_type, "Accept": "application/json"}
    if expected_quantity is not None:
        headers["X-Amzn-SageMaker-Custom-Attributes"] = f"expected_quantity={int(expected_quantity)}"
    try:
        resp = httpx.post(f"{row['url']}/endpoints/{name}/invocations", content=image_bytes, headers=headers,
                          timeout=timeout)  # fmt: skip
    except httpx.HTTPError as exc:
        raise BinsightError(f"endpoint {name!r} at {row['url']} is unreachable: {exc}") from None
    try:
        body = resp.json()
    except ValueError:
        body = {"error": {"message": resp.text[:300]}}
    if resp.status_code != 200:
        body = body if isinstance(body, dict) else {}
        message = body.get("error", {}).get("message") or body.get("Message") or resp.text[:300]
        status = body.get("OriginalStatusCode", resp.status_code)  # a ModelError (424) carries the model's status
        raise BinsightError(f"endpoint {name!r} answered {status}: {message}")
    if not isinstance(body, dict):
        raise BinsightError(f"endpoint {name!r} answered JSON that is not an object")
    return body


def update_endpoint(
    name: str,
    model: str | Path,
    *,
    wait: bool = True,
    timeout: float | None = None,
    home: str | Path | None = None,
    on_wait: WaitCallback | None = None,
    **settings: Any,
) -> dict[str, Any]:
    """Swap the endpoint's model without a failed request (blue/green on the endpoint's socket).

    The supervisor starts the new model server on the endpoint's socket next to the old one, waits until its
    /ping is 200, then SIGTERMs the old one, which stops accepting and finishes its in-flight requests. If the
    new server never gets ready, the old one keeps serving and the endpoint returns to InService with
    ``failure_reason`` saying why. ``timeout`` and ``settings`` (as in :func:`create_endpoint`) change the
    current endpoint config; what is not given stays as it is. ``on_wait`` as in :func:`create_endpoint`.

    Raises:
        BinsightError: unknown endpoint, not InService, a bad setting, or (with ``wait``) the update failed.
    """
    reg = _registry(home)
    row = _reconcile(reg, _require(reg, name))
    current = EndpointConfig.from_options(row["options"], row["backend"])
    config = current.replace(startup_timeout=timeout, **settings)
    artifact, meta = _resolve_model(model)
    config_name = reg.begin_update(name, artifact, config.serve.backend, config.to_options(), meta)
    procs.signal_process(row["supervisor_pid"], "SIGHUP")
    if not wait:
        return describe_endpoint(name, home=home, ping=False)
    row = _wait_settled(reg, name, UPDATING, config.startup_timeout + 10, on_wait)
    if row["config_name"] != config_name:
        reason = (row["failure_reason"] or "unknown").removeprefix("update failed: ")
        raise BinsightError(f"update of {name!r} failed, the old model still serves: {reason}")
    return describe_endpoint(name, home=home)


def _endpoint_group(row: dict[str, Any]) -> int | None:
    """The process group of the endpoint's supervisor, or None when nothing of it can be safely signalled."""
    pid = row["supervisor_pid"]
    if not pid:
        return None
    if procs.pid_alive(pid) and not procs.is_supervisor(pid, row["name"]):
        return None  # the pid was recycled by an unrelated process: never signal it
    return int(pid)


def delete_endpoint(name: str, timeout: float = 20, home: str | Path | None = None) -> dict[str, list[Any]]:
    """Stop the endpoint (SIGTERM, SIGKILL after ``timeout``), free its port, remove its registry rows.

    Returns:
        What was removed: ``{"endpoints", "endpoint_configs", "models", "processes"}``.
    """
    reg = _registry(home)
    row = _require(reg, name)
    reg.set_endpoint(name, status=DELETING)
    group = _endpoint_group(row)
    stopped = procs.group_members(group) if group else []
    if group:
        procs.stop_group(group, timeout)
    procs.wait_port_free(row["host"], row["port"], timeout=5)
    removed: dict[str, list[Any]] = dict(reg.remove_endpoint(name))
    removed["processes"] = stopped
    return removed


def cleanup(timeout: float = 20, home: str | Path | None = None) -> dict[str, list[Any]]:
    """Remove EVERY endpoint, endpoint config and model, and stop their processes (stale rows and orphaned
    supervisors of this registry included). Idempotent: a second call removes nothing.

    Returns:
        ``{"endpoints", "endpoint_configs", "models", "processes"}`` — the names and pids removed.
    """
    reg = _registry(home)
    rows = reg.list_endpoints()
    for row in rows:
        reg.set_endpoint(row["name"], status=DELETING)
    groups = {g for g in map(_endpoint_group, rows) if g}
    groups |= set(procs.find_supervisors(reg.home))  # supervisors whose rows are already gone
    stopped = [pid for group in groups for pid in procs.group_members(group)]
    procs.stop_groups(sorted(groups), timeout)  # all at once: N endpoints take as long as the slowest
    for row in rows:
        procs.wait_port_free(row["host"], row["port"], timeout=5)
    removed: dict[str, list[Any]] = dict(reg.remove_all())
    removed["processes"] = sorted(set(stopped))
    return removed
