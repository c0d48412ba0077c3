"""The endpoint registry (SQLite), the process helpers and the pieces of the supervisor that need no server."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from binsight.endpoints import procs
from binsight.endpoints.store import (
    CREATING,
    FAILED,
    IN_SERVICE,
    UPDATING,
    EndpointRegistry,
    binsight_home,
)
from binsight.errors import BinsightError
from binsight.utils.net import free_port


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("BINSIGHT_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def make(reg: EndpointRegistry, name: str = "demo", port: int = 18080, status: str = IN_SERVICE) -> dict:
    reg.create_endpoint(name, "/models/a", "torch", port, options={"max_batch_size": 4}, model_meta={"version": "v1"})
    reg.set_endpoint(name, status=status)
    return reg.get_endpoint(name)


def counts(reg: EndpointRegistry) -> tuple[int, int, int]:
    return len(reg.list_endpoints()), len(reg.list_configs()), len(reg.list_models())


def test_home_comes_from_binsight_home(home):
    assert binsight_home() == home.resolve()
    reg = EndpointRegistry()
    assert reg.path == home.resolve() / "endpoints.db" and reg.path.is_file()
    with sqlite3.connect(reg.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_create_registers_model_config_and_endpoint(home):
    reg = EndpointRegistry()
    row = reg.create_endpoint("demo", "/models/a", "onnx", 18080, options={"max_wait_ms": 2}, model_meta={"name": "m"})
    assert row["status"] == CREATING and row["health"] == "starting"
    assert row["url"] == "http://127.0.0.1:18080" and row["backend"] == "onnx"
    assert row["artifact"] == "/models/a" and row["artifact_name"] == "m" and row["options"] == {"max_wait_ms": 2}
    assert row["config_name"].startswith("demo-config-") and row["model_name"].startswith("demo-model-")
    assert counts(reg) == (1, 1, 1)


def test_duplicate_name_or_port_is_refused_and_nothing_half_written(home):
    reg = EndpointRegistry()
    make(reg, "demo", 18080)
    with pytest.raises(BinsightError, match="already exists"):
        reg.create_endpoint("demo", "/models/b", "torch", 18081)
    with pytest.raises(BinsightError, match="port 18080 is already used by endpoint 'demo'"):
        reg.create_endpoint("other", "/models/b", "torch", 18080)
    assert counts(reg) == (1, 1, 1)  # the failed creates rolled back their model and config rows


def test_update_commit_replaces_config_and_drops_the_old_one(home):
    reg = EndpointRegistry()
    old = make(reg)
    with pytest.raises(BinsightError, match="only an InService endpoint"):
        reg.set_endpoint("demo", status=CREATING)
        reg.begin_update("demo", "/models/b", "torch", {}, {})
    reg.set_endpoint("demo", status=IN_SERVICE)
    new = reg.begin_update("demo", "/models/b", "torch", {}, {"version": "v2"})
    row = reg.get_endpoint("demo")
    assert row["status"] == UPDATING and row["pending_config"] == new and row["config_name"] == old["config_name"]
    assert counts(reg) == (1, 2, 2)
    reg.finish_update("demo", new)
    row = reg.get_endpoint("demo")
    assert row["status"] == IN_SERVICE and row["config_name"] == new and row["pending_config"] is None
    assert row["artifact"] == "/models/b" and row["artifact_version"] == "v2"
    assert counts(reg) == (1, 1, 1)
    assert reg.get_config(old["config_name"]) is None


def test_update_rollback_keeps_the_old_model_and_says_why(home):
    reg = EndpointRegistry()
    old = make(reg)
    new = reg.begin_update("demo", "/models/b", "torch", {}, {})
    reg.finish_update("demo", None, "model server stopped (exit code 1)")
    row = reg.get_endpoint("demo")
    assert row["status"] == IN_SERVICE and row["config_name"] == old["config_name"]
    assert row["failure_reason"] == "update failed: model server stopped (exit code 1)"
    assert reg.get_config(new) is None and counts(reg) == (1, 1, 1)


def test_remove_endpoint_removes_only_its_own_rows(home):
    reg = EndpointRegistry()
    make(reg, "a", 18080)
    make(reg, "a-config-x", 18081)  # a name that starts like a's config names must survive
    removed = reg.remove_endpoint("a")
    assert removed["endpoints"] == ["a"] and len(removed["endpoint_configs"]) == 1 and len(removed["models"]) == 1
    assert [r["name"] for r in reg.list_endpoints()] == ["a-config-x"] and counts(reg) == (1, 1, 1)


def test_remove_all_is_idempotent(home):
    reg = EndpointRegistry()
    make(reg, "a", 18080)
    make(reg, "b", 18081)
    removed = reg.remove_all()
    assert removed["endpoints"] == ["a", "b"] and len(removed["models"]) == 2 and counts(reg) == (0, 0, 0)
    assert reg.remove_all() == {"endpoints": [], "endpoint_configs": [], "models": []}


def test_set_endpoint_rejects_bad_values(home):
    reg = EndpointRegistry()
    make(reg)
    with pytest.raises(ValueError):
        reg.set_endpoint("demo", status="Running")
    with pytest.raises(ValueError):
        reg.set_endpoint("demo", url="http://elsewhere")
    assert reg.set_endpoint("missing", health="healthy") is False


def _bump(home: str, n: int) -> None:
    reg = EndpointRegistry(home)
    for _ in range(n):
        reg.increment_restarts("demo")
        reg.set_endpoint("demo", health="healthy")


def test_concurrent_processes_do_not_lose_or_corrupt_writes(home):
    reg = EndpointRegistry()
    make(reg)
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_bump, args=(str(home), 20)) for _ in range(3)]
    for w in workers:
        w.start()
    _bump(str(home), 20)
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    assert reg.get_endpoint("demo")["restarts"] == 80
    with sqlite3.connect(reg.path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_pid_alive_counts_zombies_as_dead():
    assert procs.pid_alive(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while procs.pid_alive(child.pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(child.pid, 0)  # still a zombie (not reaped): os.kill alone would call it alive
    assert not procs.pid_alive(child.pid)
    child.wait()
    assert not procs.pid_alive(child.pid) and not procs.pid_alive(None)


def test_ports_free_and_taken():
    port = free_port()
    assert procs.port_free("127.0.0.1", port)
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        assert not procs.port_free("127.0.0.1", port)
    assert procs.wait_port_free("127.0.0.1", port, timeout=2)


def test_stop_group_terminates_a_whole_session(tmp_path):
    # A stand-in supervisor: a new session whose leader has a child, both with "binsight" in their argv.
    script = tmp_path / "binsight_fake.py"
    script.write_text(
        "import subprocess, sys, time\n"
        "if len(sys.argv) == 1: subprocess.Popen([sys.executable, sys.argv[0], 'child'])\n"
        "time.sleep(60)\n"
    )
    leader = subprocess.Popen([sys.executable, str(script)], start_new_session=True)
    deadline = time.monotonic() + 10
    while len(procs.group_members(leader.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    members = procs.group_members(leader.pid)
    assert leader.pid in members and len(members) == 2
    procs.stop_group(leader.pid, timeout=5)
    leader.wait(5)
    assert procs.group_members(leader.pid) == []
    assert not any(procs.pid_alive(pid) for pid in members)


def test_stale_rows_become_failed_and_cleanup_removes_them(home):
    from binsight.endpoints.api import cleanup, describe_endpoint, list_endpoints

    reg = EndpointRegistry()
    make(reg)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    reg.set_endpoint("demo", supervisor_pid=gone.pid)
    [row] = list_endpoints()
    assert row["status"] == FAILED and f"supervisor process {gone.pid} is gone" in row["failure_reason"]
    assert describe_endpoint("demo")["ping"]["healthy"] is False
    removed = cleanup()
    assert removed["endpoints"] == ["demo"] and len(removed["models"]) == 1 and removed["processes"] == []
    assert counts(reg) == (0, 0, 0)
    assert cleanup() == {"endpoints": [], "endpoint_configs": [], "models": [], "processes": []}


def test_api_rejects_bad_input_before_touching_the_registry(home, tmp_path):
    from binsight.endpoints.api import create_endpoint, delete_endpoint, invoke_endpoint

    with pytest.raises(BinsightError, match="bad endpoint name"):
        create_endpoint("bad name!", tmp_path)
    with pytest.raises(BinsightError, match="no model artifact"):
        create_endpoint("demo", tmp_path / "nothing")
    with pytest.raises(BinsightError, match="unknown backend"):
        create_endpoint("demo", tmp_path, backend="tensorrt")
    with pytest.raises(BinsightError, match="no endpoint named 'ghost'"):
        delete_endpoint("ghost")
    with pytest.raises(BinsightError, match="no endpoint named 'ghost'"):
        invoke_endpoint("ghost", b"x")
    assert counts(EndpointRegistry()) == (0, 0, 0)


def test_failure_reason_prefers_error_lines_over_access_log(tmp_path):
    from binsight.endpoints.failures import exit_description, failure_reason

    log = tmp_path / "server.log"
    log.write_text(
        "=== old start ===\n2026-01-01 00:00:00,000 ERROR binsight.serving: old failure\n=== new start ===\n"
    )
    offset = log.stat().st_size
    with open(log, "a") as f:
        f.write("2026-01-01 00:00:01,000 INFO uvicorn.error: Started server process [1]\n")
        f.write("2026-01-01 00:00:02,000 ERROR binsight.serving: model.safetensors is corrupt\n")
        f.write('{"path": "/ping", "status": 503, "error": null}\n')
        f.write("2026-01-01 00:00:03,000 INFO uvicorn.error: Finished server process [1]\n")
    assert failure_reason(log, offset) == "ERROR binsight.serving: model.safetensors is corrupt"
    assert failure_reason(log, 0).endswith("model.safetensors is corrupt")
    assert exit_description(-9) == "killed by SIGKILL" and exit_description(1) == "exit code 1"


def test_every_serve_setting_reaches_the_server_through_its_config_file(tmp_path):
    from binsight.config.loader import dump_yaml, load_config
    from binsight.config.schemas import ServeConfig
    from binsight.endpoints.config import EndpointConfig
    from binsight.endpoints.supervisor import serve_command

    config = EndpointConfig().replace(backend="onnx", max_batch_size=2, body_timeout=7.5, max_restarts=1)
    stored = config.to_options()
    assert "backend" not in stored and stored["max_restarts"] == 1 and stored["body_timeout"] == 7.5
    again = EndpointConfig.from_options(stored, "onnx")
    assert again == config and again.serve.max_wait_ms == ServeConfig().max_wait_ms
    (tmp_path / "serve.yaml").write_text(dump_yaml(again.serve))
    assert load_config(ServeConfig, tmp_path / "serve.yaml") == config.serve
    cmd = serve_command("/m", tmp_path / "serve.yaml", 5, 6)
    assert cmd[1:4] == ["-m", "binsight", "serve"]
    joined = " ".join(cmd)
    assert "--model /m" in joined and f"--config {tmp_path / 'serve.yaml'}" in joined
    assert "--fd 5" in joined and "--join-fd 6" in joined
    with pytest.raises(BinsightError, match="unknown backend"):
        EndpointConfig.from_options(stored, "tensorrt")


def test_list_table_formatting():
    from binsight.cli.endpoint import format_age, format_table

    assert [format_age(s) for s in (5, 125, 7200, 200000)] == ["5s", "2m", "2h", "2d"]
    row = {"name": "demo", "status": "InService", "health": "healthy", "url": "http://127.0.0.1:1"}
    row.update(artifact_name="tiny", artifact_version="t1", restarts=2, created_at=time.time() - 90)
    header, line = format_table([row]).splitlines()
    assert header.split() == ["NAME", "STATUS", "HEALTH", "URL", "MODEL", "RESTARTS", "AGE"]
    assert line.split() == ["demo", "InService", "healthy", "http://127.0.0.1:1", "tiny:t1", "2", "1m"]


def test_cli_serve_settings_are_validated_before_anything_is_registered(home, tmp_path):
    from tests.conftest import run_cli
    from tests.e2e.test_endpoint_lifecycle import make_artifact

    artifact = make_artifact(tmp_path / "model", "v1")
    bad = run_cli("endpoint", "create", "x", "--model", artifact, "--set", "foo=1", "--no-wait", check=False)
    assert bad.returncode == 1 and "unknown key serve.foo" in bad.stderr and "Traceback" not in bad.stderr
    bad = run_cli("endpoint", "create", "x", "--model", artifact, "--set", "body_timeout=0", check=False)
    assert bad.returncode == 1 and "body_timeout" in bad.stderr
    assert counts(EndpointRegistry()) == (0, 0, 0)
