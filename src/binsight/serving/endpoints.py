"""Endpoint lifecycle, the local twin of SageMaker hosting: create, list, describe, invoke, update, delete,
cleanup. State lives in the registry (``registry.py``); each endpoint runs as a detached supervisor process
(``supervisor.py``) that owns a stable port and keeps a ``binsight serve`` child alive behind it.

Example::

    from binsight.serving.endpoints import create_endpoint, invoke_endpoint, cleanup

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
from pathlib import Path
from typing import Any

from binsight.errors import BinsightError
from binsight.serving import procs
from binsight.serving.registry import (
    CREATING,
    DELETING,
    FAILED,
    IN_SERVICE,
    UPDATING,
    EndpointRegistry,
    endpoint_dir,
)
from binsight.utils.net import free_port

__all__ = [
    "EndpointRegistry",
    "cleanup",
    "create_endpoint",
    "delete_endpoint",
    "describe_endpoint",
    "invoke_endpoint",
    "list_endpoints",
    "update_endpoint",
]

_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")  # SageMaker's endpoint-name rule
BACKENDS = ("torch", "torch-bf16", "torch-fp32", "onnx", "onnx-int8")
STALE_GRACE_S = 30.0  # a row younger than this may still be waiting for its supervisor's pid
DEFAULT_MAX_RESTARTS = 5  # failed restarts in a row before the supervisor gives up (0: never)


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


def _check_max_restarts(max_restarts: int) -> None:
    if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or max_restarts < 0:
        raise BinsightError(f"max_restarts must be a whole number >= 0 (0 = never give up), got {max_restarts!r}")


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
    folder = endpoint_dir(name, reg.home)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "supervisor.log", "ab") as out:
        # A new session: the supervisor outlives this process and its group holds all the endpoint's processes.
        proc = subprocess.Popen(
            [sys.executable, "-m", procs.SUPERVISOR_MODULE, "--home", str(reg.home), name],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            cwd=reg.home,  # never pin the caller's working directory (paths in the registry are absolute)
        )
    # Reap it if it exits while this (possibly long-lived) process still runs, so no zombie lingers.
    threading.Thread(target=proc.wait, name=f"reap-supervisor-{name}", daemon=True).start()
    reg.set_endpoint(name, supervisor_pid=proc.pid)
    return proc.pid


def _wait_settled(reg: EndpointRegistry, name: str, busy: str, timeout: float) -> dict[str, Any]:
    """Poll until the endpoint leaves status ``busy`` (or its supervisor dies); returns the row."""
    deadline = time.monotonic() + timeout
    while True:
        row = _reconcile(reg, _require(reg, name))
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
    backend: str = "torch",
    port: int | None = None,
    wait: bool = True,
    timeout: float = 120,
    host: str = "127.0.0.1",
    max_batch_size: int | None = None,
    max_wait_ms: float | None = None,
    max_restarts: int = DEFAULT_MAX_RESTARTS,
    home: str | Path | None = None,
) -> dict[str, Any]:
    """Register a model, an endpoint config and an endpoint, and start its supervisor.

    Args:
        name: Endpoint name (letters, digits, hyphens).
        model: Run directory or artifact folder.
        backend: ``torch``, ``onnx`` or ``onnx-int8``.
        port: The endpoint's stable port (default: a free one).
        wait: Block until the endpoint is InService (raise when it becomes Failed).
        timeout: Seconds the model server gets to answer /ping 200 (and the wait lasts).
        host: Address the endpoint listens on.
        max_batch_size: Dynamic batching limit passed to ``binsight serve``.
        max_wait_ms: Batching wait passed to ``binsight serve``.
        max_restarts: Restarts in a row that may fail (the server does not start, or dies within a minute
            of becoming healthy) before the endpoint becomes Failed and stops; 0 restarts for ever.
        home: Registry folder (default ``$BINSIGHT_HOME``).

    Returns:
        The endpoint as ``describe_endpoint`` reports it.

    Raises:
        BinsightError: bad name/model/port, the name exists, or (with ``wait``) the endpoint failed.
    """
    _check_name(name)
    if backend not in BACKENDS:
        raise BinsightError(f"unknown backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    if timeout <= 0:
        raise BinsightError("timeout must be > 0 seconds")
    _check_max_restarts(max_restarts)
    artifact, meta = _resolve_model(model)
    reg = _registry(home)
    if port is None:
        used = {row["port"] for row in reg.list_endpoints()}
        port = next(p for p in iter(lambda: free_port(host), None) if p not in used)
    elif not 1 <= port <= 65535:
        raise BinsightError(f"port {port} is out of range 1..65535")
    elif not procs.port_free(host, port):
        raise BinsightError(f"port {port} on {host} is in use; pick another --port or leave it out for a free one")
    options = {"max_batch_size": max_batch_size, "max_wait_ms": max_wait_ms, "startup_timeout": timeout,
               "max_restarts": max_restarts}  # fmt: skip
    options = {k: v for k, v in options.items() if v is not None}
    reg.create_endpoint(name, artifact, backend, port, host=host, options=options, model_meta=meta)
    try:
        _spawn_supervisor(reg, name)
    except OSError as exc:
        reg.remove_endpoint(name)
        raise BinsightError(f"could not start the supervisor of {name!r}: {exc}") from None
    if wait:
        row = _wait_settled(reg, name, CREATING, timeout + 10)
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
        message = body.get("error", {}).get("message", resp.text[:300]) if isinstance(body, dict) else resp.text
        raise BinsightError(f"endpoint {name!r} answered {resp.status_code}: {message}")
    return body


def update_endpoint(
    name: str,
    model: str | Path,
    backend: str | None = None,
    wait: bool = True,
    timeout: float = 120,
    max_restarts: int | None = None,
    home: str | Path | None = None,
) -> dict[str, Any]:
    """Swap the endpoint's model without a failed request (blue/green behind the stable port).

    The supervisor starts the new model server, switches the proxy once its /ping is 200, then lets the old
    server finish its in-flight requests and stops it. If the new server never gets ready, the old one
    keeps serving and the endpoint returns to InService with ``failure_reason`` saying why. ``max_restarts``
    (see :func:`create_endpoint`) applies from the switch on; None keeps the endpoint's current value.

    Raises:
        BinsightError: unknown endpoint, not InService, or (with ``wait``) the update failed.
    """
    reg = _registry(home)
    row = _reconcile(reg, _require(reg, name))
    backend = backend or row["backend"] or "torch"
    if backend not in BACKENDS:
        raise BinsightError(f"unknown backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    if max_restarts is not None:
        _check_max_restarts(max_restarts)
    artifact, meta = _resolve_model(model)
    options = dict(row["options"] or {}, startup_timeout=timeout)
    if max_restarts is not None:
        options["max_restarts"] = max_restarts
    config = reg.begin_update(name, artifact, backend, options, meta)
    procs.signal_process(row["supervisor_pid"], "SIGHUP")
    if not wait:
        return describe_endpoint(name, home=home, ping=False)
    row = _wait_settled(reg, name, UPDATING, timeout + 10)
    if row["config_name"] != config:
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
    return pid


def delete_endpoint(name: str, timeout: float = 20, home: str | Path | None = None) -> dict[str, list]:
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
    removed: dict[str, list] = dict(reg.remove_endpoint(name))
    removed["processes"] = stopped
    return removed


def cleanup(timeout: float = 20, home: str | Path | None = None) -> dict[str, list]:
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
    removed: dict[str, list] = dict(reg.remove_all())
    removed["processes"] = sorted(set(stopped))
    return removed
