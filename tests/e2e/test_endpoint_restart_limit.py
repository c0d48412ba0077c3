"""The supervisor's restart limit: real supervisors, real `binsight serve` children, real loopback.

A model server that keeps failing (it no longer starts, or it dies soon after becoming healthy) must not be
restarted for ever: after ``--max-restarts`` failed restarts in a row the endpoint becomes Failed with the
count and the last reason, and its supervisor frees the port and exits. The tests use a limit of 1 or 2,
so the whole story (backoff 0.5 s, then 1 s) takes two or three server starts.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import pytest

from binsight.endpoints import procs
from binsight.endpoints.api import cleanup, create_endpoint, describe_endpoint, list_endpoints, update_endpoint
from binsight.endpoints.config import EndpointConfig
from binsight.endpoints.restarts import BACKOFF_MAX_S, STABLE_S, RestartBudget
from binsight.endpoints.store import EndpointRegistry
from binsight.errors import BinsightError
from binsight.utils.net import free_port
from tests.conftest import run_cli
from tests.e2e.test_endpoint_lifecycle import can_bind, make_artifact

pytestmark = pytest.mark.timeout(120)


def wait_for(predicate, timeout: float = 60, every: float = 0.1):
    """Poll ``predicate`` until it returns something truthy; returns that (or the last falsy value)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every)


def backoff_delays(name: str, home: Path) -> list[float]:
    """The waits the supervisor announced before each restart ("restart #N in X s") in its log."""
    text = (home / "endpoints" / name / "supervisor.log").read_text()
    return [float(x) for x in re.findall(r"restart #\d+ in ([\d.]+) s", text)]


def assert_stopped_and_cleaned(info: dict, name: str, cli: bool) -> None:
    """No process of the endpoint is left, its port is free, and cleanup (CLI or API) removes its records."""
    group = info["supervisor_pid"]
    assert wait_for(lambda: procs.group_members(group) == [], timeout=30), procs.group_members(group)
    assert not procs.pid_alive(info["supervisor_pid"]) and can_bind(info["port"])
    if cli:
        table = run_cli("endpoint", "list").stdout
        assert re.search(rf"^{name}\s+Failed\s+stopped\s", table, re.M), table
        assert f"deleted endpoint {name}\n" in run_cli("cleanup").stdout
    else:
        assert [(r["status"], r["health"]) for r in list_endpoints() if r["name"] == name] == [("Failed", "stopped")]
        assert name in cleanup()["endpoints"]
    assert not [r for r in EndpointRegistry().list_endpoints() if r["name"] == name]


def test_unloadable_artifact_after_inservice_gives_failed_with_the_count(home, tmp_path):
    artifact = make_artifact(tmp_path / "model", "v1")
    created = run_cli("endpoint", "create", "gone", "--model", artifact, "--max-restarts", "1", timeout=90)
    assert "InService" in created.stderr
    info = describe_endpoint("gone")
    assert info["options"]["max_restarts"] == 1 and info["restarts"] == 0

    (artifact / "model.safetensors").write_bytes(b"\x00" * 16)  # the model can no longer be loaded
    os.kill(info["server_pid"], signal.SIGKILL)
    row = wait_for(lambda: (r := describe_endpoint("gone", ping=False))["status"] == "Failed" and r, timeout=60)
    assert row, describe_endpoint("gone", ping=False)
    reason = row["failure_reason"]
    assert reason.startswith("gave up on the model server after 1 failed restart in a row"), reason
    assert "(max_restarts=1); last: model server stopped (exit code 1)" in reason and "corrupt or truncated" in reason
    assert row["restarts"] == 1 and row["health"] == "stopped" and row["server_pid"] is None
    assert backoff_delays("gone", home) == [0.5]

    described = json.loads(run_cli("endpoint", "describe", "gone").stdout)
    assert described["status"] == "Failed" and described["ping"]["healthy"] is False
    assert described["failure_reason"] == reason
    assert_stopped_and_cleaned(info, "gone", cli=True)


def test_crash_loop_of_healthy_servers_backs_off_and_gives_up(home, tmp_path):
    """Servers that start fine and die seconds later count as failed restarts (the backoff grows)."""
    artifact = make_artifact(tmp_path / "model", "v1")
    info = create_endpoint("loop", artifact, timeout=60, max_restarts=2)
    killed: list[int] = []

    def healthy_server() -> int | None:
        row = describe_endpoint("loop", ping=False)
        if row["health"] == "healthy" and row["server_pid"] not in (None, *killed):
            return row["server_pid"]
        return None

    for _ in range(3):  # the first server, then both restarts: each dies a moment after becoming healthy
        pid = wait_for(healthy_server, timeout=60)
        assert pid, describe_endpoint("loop", ping=False)
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)
    row = wait_for(lambda: (r := describe_endpoint("loop", ping=False))["status"] == "Failed" and r, timeout=30)
    assert row, describe_endpoint("loop", ping=False)
    assert row["failure_reason"].startswith("gave up on the model server after 2 failed restarts in a row")
    assert row["failure_reason"].endswith("last: killed by SIGKILL") and row["restarts"] == 2
    assert backoff_delays("loop", home) == [0.5, 1.0]  # not 0.5 s for ever
    assert not any(procs.pid_alive(pid) for pid in killed)
    assert_stopped_and_cleaned(info, "loop", cli=False)


def test_bad_max_restarts_is_refused_before_anything_is_registered(home, tmp_path):
    artifact = make_artifact(tmp_path / "model", "v1")
    proc = run_cli("endpoint", "create", "neg", "--model", artifact, "--max-restarts", "-1", check=False)
    assert proc.returncode == 1 and "max_restarts must be a whole number >= 0" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not [r for r in EndpointRegistry().list_endpoints() if r["name"] == "neg"]
    EndpointRegistry().create_endpoint("idle", str(artifact), "torch", free_port())  # a row only: update checks first
    with pytest.raises(BinsightError, match="max_restarts must be"):
        update_endpoint("idle", artifact, max_restarts=-3)
    assert len(EndpointRegistry().list_configs()) == 1  # no pending config was registered
    run_cli("endpoint", "delete", "idle")


def test_restart_budget_counts_failures_in_a_row_and_resets_after_a_stable_server():
    budget = RestartBudget(max_restarts=3)
    budget.server_died(healthy_for=2.0)  # the first death: no restart has failed yet
    assert not budget.exhausted
    delays = [budget.next_delay() for _ in range(3)]
    assert delays == [0.5, 1.0, 2.0] and budget.exhausted
    budget.server_died(healthy_for=STABLE_S)  # a server that stayed up long enough wipes the slate
    assert not budget.exhausted and budget.next_delay() == 0.5

    never = RestartBudget(max_restarts=0)
    delays = [never.next_delay() for _ in range(40)]
    assert not never.exhausted and delays[-1] == BACKOFF_MAX_S and delays == sorted(delays)
    assert EndpointConfig.from_options({}).max_restarts == 5
    assert EndpointConfig.from_options({"max_restarts": 0}).max_restarts == 0
