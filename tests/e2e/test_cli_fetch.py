"""The real ``binsight data fetch`` command line against moto's S3 server on loopback (anonymous requests)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import free_port, held_env, run_cli
from tests.integration.test_fetch_support import MotoS3, assert_dataset_equals, dataset_objects, write_udacity_list

IDS = ["00001", "00002", "00003"]


def fetch_args(url: str, out: Path, file_list: Path, *extra: str) -> list[str]:
    return ["data", "fetch", "--out", str(out), "--file-list", str(file_list), "--endpoint-url", url, *extra]


def report(out: Path) -> dict:
    return json.loads((out / "fetch_report.json").read_text())


def test_cli_fetch_end_to_end_then_rerun_skips(s3, tmp_path):
    objects = dataset_objects(IDS)
    s3.seed(objects)
    file_list = write_udacity_list(tmp_path / "file_list.json", IDS)
    out = tmp_path / "abid"

    first = run_cli(*fetch_args(s3.url, out, file_list, "--workers", "2"))
    assert_dataset_equals(out, objects)
    assert "downloaded 6 (resumed 0), skipped 0 already complete, failed 0" in first.stdout
    assert report(out)["downloaded"] == 6

    second = run_cli(*fetch_args(s3.url, out, file_list))
    assert "downloaded 0 (resumed 0), skipped 6 already complete" in second.stdout
    assert report(out)["skipped"] == 6 and report(out)["bytes"] == 0


def test_cli_plain_id_list_with_limit(s3, tmp_path):
    objects = dataset_objects(IDS)
    s3.seed(objects)
    id_list = tmp_path / "ids.txt"
    id_list.write_text("# subset\n1\n00002\n3\n")
    out = tmp_path / "abid"

    run_cli(*fetch_args(s3.url, out, id_list, "--limit", "2"))

    assert_dataset_equals(out, {k: v for k, v in objects.items() if "00003" not in k})
    assert not (out / "bin-images" / "00003.jpg").exists()
    assert report(out)["requested"] == 4


def test_cli_failures_exit_1_with_resume_hint(s3, tmp_path):
    objects = dataset_objects(IDS)
    objects["metadata/00002.json"] = b"{not json"
    s3.seed(objects)
    id_list = tmp_path / "ids.json"
    id_list.write_text(json.dumps(["00001", "00002", "00004"]))
    out = tmp_path / "abid"

    proc = run_cli(*fetch_args(s3.url, out, id_list, "--retries", "1"), check=False)

    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "3 of 6 files were not fetched" in proc.stderr and "re-run the same command" in proc.stderr
    assert "FAILED metadata/00002.json: corrupt" in proc.stdout
    assert "FAILED bin-images/00004.jpg: not_found" in proc.stdout
    reasons = sorted(f["reason"] for f in report(out)["failures"])
    assert reasons == ["corrupt", "not_found", "not_found"]
    assert not (out / "metadata" / "00002.json").exists() and (out / "bin-images" / "00002.jpg").is_file()


def test_cli_offline_fails_fast_with_a_clear_message(tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"
    id_list = tmp_path / "ids.txt"
    id_list.write_text("1\n2\n")

    proc = run_cli(*fetch_args(dead, tmp_path / "abid", id_list, "--retries", "1"), check=False)

    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert f"binsight: error: cannot reach S3 endpoint {dead} (" in proc.stderr
    assert "check your network or pass --endpoint-url" in proc.stderr


def test_cli_malformed_file_list_is_a_clear_error(tmp_path):
    bad = tmp_path / "file_list.json"
    bad.write_text('{"1": ["metadata/00001.json"')
    out = tmp_path / "abid"

    proc = run_cli(*fetch_args("http://127.0.0.1:9", out, bad), check=False)

    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "is not valid JSON" in proc.stderr and str(bad) in proc.stderr
    assert not out.exists()


def _start_fetch(url: str, out: Path, file_list: Path) -> subprocess.Popen:
    """A one-worker fetch that downloads 8 files, then waits (until Ctrl-C) before each further one."""
    cmd = [sys.executable, "-m", "binsight", *fetch_args(url, out, file_list, "--workers", "1", "--retries", "1")]
    env = held_env(out.parent, fetch=8)
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _complete_files(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if p.suffix in (".jpg", ".json") and p.parent.name in ("bin-images", "metadata")]


def _wait_for_files(proc: subprocess.Popen, out: Path, n: int, deadline_s: float = 120) -> None:
    """Wait until the fetch has written ``n`` files (a loaded machine can take many seconds to import torch)."""
    end = time.monotonic() + deadline_s
    while len(_complete_files(out)) < n and proc.poll() is None and time.monotonic() < end:
        time.sleep(0.01)
    assert len(_complete_files(out)) >= n, f"the fetch wrote {len(_complete_files(out))} files in {deadline_s} s"


def test_cli_killed_midway_completes_on_rerun_against_a_fresh_server(tmp_path):
    ids = [f"{n:05d}" for n in range(1, 61)]
    objects = dataset_objects(ids)
    file_list = write_udacity_list(tmp_path / "file_list.json", ids)
    out = tmp_path / "abid"
    first_server = MotoS3()
    try:
        first_server.reset()
        first_server.seed(objects)
        proc = _start_fetch(first_server.url, out, file_list)
        _wait_for_files(proc, out, 8)
        proc.kill()
        proc.communicate(timeout=10)
    finally:
        first_server.stop()
    assert proc.returncode == -signal.SIGKILL, "the fetch finished before it could be killed midway"
    done_before = len(_complete_files(out))
    assert done_before == 8  # the held fetch got no further

    # A new server process-wide shares moto's state: same bucket, same objects, new port.
    fresh = MotoS3()
    try:
        rerun = run_cli(*fetch_args(fresh.url, out, file_list, "--workers", "2"))
    finally:
        fresh.stop()
    assert_dataset_equals(out, objects)
    final = report(out)
    assert final["skipped"] >= done_before
    assert final["skipped"] + final["downloaded"] == len(objects) and final["failed"] == 0
    assert "failed 0" in rerun.stdout


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_cli_ctrl_c_or_sigterm_writes_the_report_and_exits_3(s3, tmp_path, sig):
    ids = [f"{n:05d}" for n in range(1, 61)]
    s3.seed(dataset_objects(ids))
    file_list = write_udacity_list(tmp_path / "file_list.json", ids)
    out = tmp_path / "abid"

    proc = _start_fetch(s3.url, out, file_list)
    _wait_for_files(proc, out, 8)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)

    assert proc.returncode == 3, stderr
    assert "Traceback" not in stderr and "re-run the same command to resume" in stderr
    assert f"{sig.name} received: stopping after the files in progress" in stderr
    interrupted = report(out)
    assert interrupted["downloaded"] == 8 and interrupted["not_attempted"] == len(ids) * 2 - 8
    assert interrupted["aborted"] == "interrupted by the user"
