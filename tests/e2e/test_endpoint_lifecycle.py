"""Endpoint lifecycle end to end: real supervisors, real `binsight serve` children, real HTTP on loopback.

BINSIGHT_HOME is a tmp folder for the module, and the module ends with a cleanup, so no process outlives it
(the ``home`` fixture of tests/e2e/conftest.py).
Model servers take seconds to start on a busy 2-core machine, so the tests share one endpoint, ``demo``:
each test (re)creates it when it is missing, so any test also runs alone.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from binsight.endpoints import procs
from binsight.endpoints.api import (
    create_endpoint,
    delete_endpoint,
    describe_endpoint,
    invoke_endpoint,
    list_endpoints,
    update_endpoint,
)
from binsight.endpoints.store import EndpointRegistry
from binsight.utils.net import free_port
from tests.conftest import cli_env, run_cli

pytestmark = pytest.mark.timeout(120)


def make_artifact(folder: Path, version: str) -> Path:
    """A tiny_cnn artifact with random weights (64 px input): loads in a blink, predicts garbage."""
    import torch

    from binsight.inference.artifact import ArtifactMeta, save_artifact
    from binsight.models import create_model

    torch.manual_seed(0)
    model = create_model("tiny_cnn", 5)
    meta = ArtifactMeta(
        name="tiny", architecture="tiny_cnn", class_labels=["1", "2", "3", "4", "5"], input_size=64, version=version
    )
    return save_artifact(folder, model.state_dict(), meta)


def jpeg(seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("artifacts")
    return make_artifact(root / "v1", "v1"), make_artifact(root / "v2", "v2")


def alive_pids(pids) -> list[int]:
    return [pid for pid in pids if pid and procs.pid_alive(pid)]


def can_bind(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def ping(url: str, timeout: float = 2) -> int | None:
    try:
        return httpx.get(url + "/ping", timeout=timeout).status_code
    except httpx.HTTPError:
        return None


def demo(artifacts) -> dict:
    """The shared endpoint, created (through the Python API) when an earlier test did not leave it InService."""
    if any(row["name"] == "demo" and row["status"] == "InService" for row in list_endpoints()):
        return describe_endpoint("demo")
    if any(row["name"] == "demo" for row in list_endpoints()):
        run_cli("endpoint", "delete", "demo")
    return create_endpoint("demo", artifacts[0], timeout=60)


def test_cli_create_invoke_list_describe(home, artifacts, tmp_path):
    if any(row["name"] == "demo" for row in list_endpoints()):
        run_cli("endpoint", "delete", "demo")
    image = tmp_path / "bin.jpg"
    image.write_bytes(jpeg())
    env = {k: v for k, v in cli_env().items() if k != "BINSIGHT_NO_PROGRESS"}  # progress lines on (not a tty)
    created = run_cli("endpoint", "create", "demo", "--model", artifacts[0], "--startup-timeout", "80", env=env)
    url = created.stdout.strip()
    assert url.startswith("http://127.0.0.1:") and "InService" in created.stderr
    assert re.search(r"^endpoint demo: Creating \(\d+ s\)$", created.stderr, re.M), created.stderr

    pred = json.loads(run_cli("endpoint", "invoke", "demo", image, "--expected-quantity", "3").stdout)
    assert pred["model"] == {"name": "tiny", "version": "v1"}
    assert pred["predicted_count"] in (1, 2, 3, 4, 5) and abs(sum(pred["probabilities"].values()) - 1) < 1e-3
    assert pred["check"]["expected_quantity"] == 3

    table = run_cli("endpoint", "list").stdout.splitlines()
    assert table[0].split()[:3] == ["NAME", "STATUS", "HEALTH"]
    assert table[1].split()[:5] == ["demo", "InService", "healthy", url, "tiny:v1"]

    info = json.loads(run_cli("endpoint", "describe", "demo").stdout)
    assert info["status"] == "InService" and info["ping"] == {"status_code": 200, "healthy": True}
    iso = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
    assert re.fullmatch(iso, info["created_at"]) and re.fullmatch(iso, info["updated_at"])
    [listed] = json.loads(run_cli("endpoint", "list", "--json").stdout)
    assert listed["created_at"] == info["created_at"]
    assert info["url"] == url and info["artifact"] == str(artifacts[0].resolve()) and info["restarts"] == 0
    assert Path(info["logs"]["server"]).is_file() and Path(info["logs"]["supervisor"]).is_file()
    assert len(alive_pids([info["supervisor_pid"], info["server_pid"]])) == 2


def test_boto3_on_the_endpoint_knows_its_name(home, artifacts):
    import boto3

    info = create_endpoint("named", artifacts[0])  # its own endpoint: the demo's port checks stay its own
    runtime = boto3.client("sagemaker-runtime", endpoint_url=info["url"], region_name="us-east-1",
                           aws_access_key_id="testing", aws_secret_access_key="testing")  # fmt: skip
    try:
        answer = runtime.invoke_endpoint(EndpointName="named", Body=jpeg(1), ContentType="image/jpeg")
        assert json.loads(answer["Body"].read())["model"]["version"] == "v1"
        with pytest.raises(runtime.exceptions.ClientError) as caught:
            runtime.invoke_endpoint(EndpointName="demo", Body=jpeg(1), ContentType="image/jpeg")
        assert caught.value.response["Error"]["Code"] == "ValidationError"
        with pytest.raises(runtime.exceptions.ModelError) as bad:
            runtime.invoke_endpoint(EndpointName="named", Body=b"not a jpeg", ContentType="image/jpeg")
        assert bad.value.response["OriginalStatusCode"] == 400
    finally:
        runtime.close()
        delete_endpoint("named")


def test_killed_server_is_restarted_and_ping_tells_the_truth(home, artifacts):
    info = demo(artifacts)
    url, first_server, restarts = info["url"], info["server_pid"], info["restarts"]
    assert ping(url) == 200
    os.kill(first_server, signal.SIGKILL)

    # A connection that arrives while no server runs waits in the socket's backlog and is answered by the next
    # server, so a patient /ping would only see the restarted one. A new server needs seconds to import torch
    # and load its model; a /ping that gets no answer within half a second reports the dead one.
    seen_down, deadline = False, time.monotonic() + 60
    while time.monotonic() < deadline:
        code = ping(url, timeout=0.5)
        seen_down |= code != 200
        if seen_down and code == 200:
            break
        time.sleep(0.05)
    assert seen_down, "/ping never reported the dead server"
    assert ping(url) == 200, "the supervisor did not bring the server back"
    after = describe_endpoint("demo")
    assert after["restarts"] == restarts + 1 and after["health"] == "healthy" and after["status"] == "InService"
    assert after["server_pid"] not in (None, first_server) and procs.pid_alive(after["server_pid"])
    assert invoke_endpoint("demo", jpeg(1))["model"]["version"] == info["artifact_version"]


def test_update_under_load_fails_no_request(home, artifacts):
    info = demo(artifacts)
    old_server, old_version = info["server_pid"], info["artifact_version"]
    new_version = "v2" if old_version == "v1" else "v1"
    results: list[tuple[int, str]] = []
    errors: list[str] = []
    stop = threading.Event()
    body = jpeg(2)

    def load() -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                try:
                    resp = client.post(
                        f"{info['url']}/endpoints/demo/invocations",
                        content=body,
                        headers={"Content-Type": "image/jpeg"},
                    )
                    version = resp.json().get("model", {}).get("version", "?") if resp.status_code == 200 else "?"
                    results.append((resp.status_code, version))
                except httpx.HTTPError as exc:
                    errors.append(repr(exc))
                time.sleep(0.02)

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    try:
        updated = update_endpoint("demo", artifacts[new_version == "v2"], timeout=60)
        deadline = time.monotonic() + 20
        while sum(v == new_version for _, v in results) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(35)
    assert errors == []
    assert results and all(code == 200 for code, _ in results), [r for r in results if r[0] != 200][:5]
    versions = [v for _, v in results]
    assert versions[0] == old_version and versions[-1] == new_version
    assert old_version not in versions[versions.index(new_version) :], "an old-model answer came after the switch"
    assert updated["artifact_version"] == new_version and updated["status"] == "InService"
    assert updated["config_name"] != info["config_name"] and updated["port"] == info["port"]
    deadline = time.monotonic() + 20
    while procs.pid_alive(old_server) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not procs.pid_alive(old_server), "the old model server was not stopped after the switch"
    assert [m["artifact_version"] for m in EndpointRegistry().list_models()] == [new_version]  # old record gone


def test_cli_delete_stops_processes_and_frees_the_port(home, artifacts):
    info = demo(artifacts)
    pids = procs.group_members(info["supervisor_pid"])
    assert info["supervisor_pid"] in pids and info["server_pid"] in pids
    deleted = run_cli("endpoint", "delete", "demo", "--grace-period", "15")
    assert "deleted endpoint demo" in deleted.stdout and "deleted model demo-model-" in deleted.stdout
    assert alive_pids(pids) == [] and can_bind(info["port"])
    assert "no endpoint named 'demo'" in run_cli("endpoint", "describe", "demo", check=False).stderr
    reg = EndpointRegistry()
    assert not [r for r in reg.list_endpoints() + reg.list_configs() + reg.list_models() if "demo" in r["name"]]


def test_broken_artifact_gives_failed_with_reason(home, artifacts, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.json").write_text((artifacts[0] / "model.json").read_text())
    (broken / "model.safetensors").write_bytes(b"\x00" * 64)
    proc = run_cli("endpoint", "create", "broken", "--model", broken, "--timeout", "60", check=False, timeout=90)
    assert proc.returncode == 1 and "failed" in proc.stderr and "corrupt" in proc.stderr
    [row] = [r for r in list_endpoints() if r["name"] == "broken"]
    assert row["status"] == "Failed" and "corrupt" in row["failure_reason"]
    deadline = time.monotonic() + 10
    while procs.group_members(row["supervisor_pid"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert procs.group_members(row["supervisor_pid"]) == []  # a failed endpoint leaves no process behind


def test_cleanup_stops_everything_and_is_idempotent(home, artifacts):
    ready = demo(artifacts)
    starting = create_endpoint("starting", artifacts[1], wait=False)  # cleaned up while still Creating
    reg = EndpointRegistry()
    reg.create_endpoint("stale", str(artifacts[0]), "torch", free_port())  # a row with no process at all
    deadline = time.monotonic() + 20
    while len(procs.group_members(starting["supervisor_pid"])) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    pids = procs.group_members(ready["supervisor_pid"]) + procs.group_members(starting["supervisor_pid"])
    assert len(alive_pids(pids)) == 4  # two supervisors, two model servers

    out = run_cli("cleanup", "--timeout", "15").stdout  # the old spelling of --grace-period
    for name in ("demo", "starting", "stale"):
        assert f"deleted endpoint {name}\n" in out
    assert out.count("deleted endpoint config ") >= 3 and out.count("deleted model ") >= 3
    assert alive_pids(pids) == []
    assert can_bind(ready["port"]) and can_bind(starting["port"])
    assert (reg.list_endpoints(), reg.list_configs(), reg.list_models()) == ([], [], [])
    again = run_cli("cleanup")
    assert again.returncode == 0 and again.stdout.strip() == "nothing to clean up"
