"""``binsight review`` as a real server: a headless Chromium answers by keyboard and click, undoes, and a second
browser gets another bin; the export trains a model; kill -9 during answers loses no committed answer.

Browser tests need Chromium (Debian's ``chromium``, installed by ``.ci/run``) and the ``playwright`` package; they
skip with the reason when either is missing (Playwright's own browser download is not used).
"""

from __future__ import annotations

import csv
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from binsight.utils.net import free_port
from tests.conftest import cli_env, run_cli
from tests.integration.audit_helpers import copy_audit, make_audit

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


@pytest.fixture(scope="module")
def audit_template(tmp_path_factory) -> Path:
    return make_audit(tmp_path_factory.mktemp("review"), n_good=30)


@pytest.fixture
def audit_dir(audit_template, tmp_path) -> Path:
    return copy_audit(audit_template, tmp_path / "audit")


class ReviewServer:
    """``python -m binsight review DIR`` on a free loopback port."""

    def __init__(self, audit_dir: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = audit_dir.parent / f"review-{self.port}.log"
        cmd = [sys.executable, "-m", "binsight", "review", str(audit_dir), "--port", str(self.port), *args]
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=cli_env())
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                if httpx.get(self.url + "/api/progress", timeout=2).status_code in (200, 401):  # 401: a token
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.proc.kill()  # never leave a server behind
        self.proc.wait()
        raise AssertionError(f"review server not up:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)


@pytest.fixture
def server(audit_dir):
    srv = ReviewServer(audit_dir)
    yield srv
    srv.stop()


def _browser():
    if CHROMIUM is None:
        pytest.skip("no Chromium found (apt-get install chromium; .ci/run installs it)")
    playwright = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    return playwright


def _start(context, url: str, name: str):
    page = context.new_page()
    page.goto(url)
    page.fill("#reviewer", name)
    page.click("#start")
    page.wait_for_selector("body[data-bin]")
    return page


def _bin(page) -> str:
    return page.get_attribute("body", "data-bin")


def _wait_other_bin(page, old: str) -> str:
    page.wait_for_function("old => document.body.dataset.bin !== old", arg=old)
    return _bin(page)


def test_browser_answers_by_keyboard_and_click_undo_second_reviewer_and_export(server, audit_dir):
    sync_api = _browser()
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            ann = _start(browser.new_context(), server.url, "ann")
            first = _bin(ann)
            ann.wait_for_function("() => document.getElementById('photo').naturalWidth > 0")  # the photo loads
            ann.keyboard.press("3")  # keyboard
            second = _wait_other_bin(ann, first)
            ann.click("button[data-answer='1']")  # click
            third = _wait_other_bin(ann, second)
            ann.keyboard.press("z")  # undo the click: the second bin comes back
            assert _wait_other_bin(ann, third) == second
            ann.click("button[data-answer='4']")
            now = _wait_other_bin(ann, second)
            ann.click("#photo-box")  # zoom
            assert "zoom" in ann.get_attribute("#photo-box", "class")
            assert "2 of" in ann.inner_text("#progress-text")
            bob = _start(browser.new_context(), server.url, "bob")  # a second browser session
            shown = _bin(bob)
            assert shown not in (now, first, second)
            bob.keyboard.press("m")  # more than 5: settled, no label
            _wait_other_bin(bob, shown)  # the bin shown before the key (read after it, it could already be the next)
        finally:
            browser.close()
    out = audit_dir / "labels.csv"
    proc = run_cli("review", "export", audit_dir, "--out", out)
    with out.open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["reviewer"], r["expected_quantity"]) for r in rows] == [("ann", "3"), ("ann", "4")]
    assert "1 more than 5" in proc.stderr


def test_exported_labels_train_a_model(server, audit_dir, tmp_path):
    with httpx.Client(base_url=server.url, headers={"X-Reviewer": "cat"}) as client:
        state = client.get("/api/next").json()
        while state["bin"] is not None:
            count = str(state["bin"]["predicted"] % 5 + 1)  # any labels spread over the classes
            state = client.post("/api/answer", json={"bin": state["bin"]["id"], "answer": count}).json()
    labels = tmp_path / "labels.csv"
    run_cli("review", "export", audit_dir, "--out", labels)
    run_cli("data", "split", "--src", labels, "--out", tmp_path / "split")
    run_cli(
        "train",
        "--data",
        tmp_path / "split",
        "--out",
        tmp_path / "run",
        "model=tiny_cnn",
        "img_size=32",
        "epochs=1",
        "batch_size=8",
        "weights=none",
    )
    assert (tmp_path / "run" / "artifact" / "model.json").is_file()


def test_token_required_off_loopback_and_on_request(audit_dir):
    srv = ReviewServer(audit_dir, "--token", "s3cret")
    try:
        assert httpx.get(srv.url + "/api/progress").status_code == 401
        assert httpx.get(srv.url + "/api/progress?token=wrong").status_code == 401
        ok = httpx.get(srv.url + "/?token=s3cret")
        assert ok.status_code == 200 and ok.cookies.get("binsight_review_token") == "s3cret"
        assert httpx.get(srv.url + "/api/progress", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    finally:
        srv.stop()
    proc = subprocess.run(
        [sys.executable, "-c", "from binsight.cli.review import is_loopback as f; print(f('0.0.0.0'), f('::1'))"],
        capture_output=True,
        text=True,
        env=cli_env(),
        check=True,
    )
    assert proc.stdout.split() == ["False", "True"]


def test_kill_9_during_answers_loses_no_committed_answer(audit_dir):
    srv = ReviewServer(audit_dir)
    committed: list[tuple[int, str]] = []
    stop = threading.Event()

    def answer_loop(name: str) -> None:
        with httpx.Client(base_url=srv.url, headers={"X-Reviewer": name}, timeout=5) as client:
            try:
                state = client.get("/api/next").json()
                while state["bin"] is not None and not stop.is_set():
                    answer = str(state["bin"]["id"] % 6)
                    res = client.post("/api/answer", json={"bin": state["bin"]["id"], "answer": answer})
                    if res.status_code != 200:
                        break
                    committed.append((state["bin"]["id"], answer))  # the server confirmed it
                    state = res.json()
            except httpx.HTTPError:
                return  # the server died under us: what it confirmed must be on disk

    threads = [threading.Thread(target=answer_loop, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while len(committed) < 8 and time.monotonic() < deadline:
        time.sleep(0.005)
    srv.proc.send_signal(signal.SIGKILL)
    srv.proc.wait()
    stop.set()
    for t in threads:
        t.join(10)
    assert len(committed) >= 8
    with sqlite3.connect(audit_dir / "review.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        stored = set(conn.execute("SELECT bin, answer FROM answers WHERE undone = 0").fetchall())
    assert set(committed) <= stored
    again = ReviewServer(audit_dir)  # the queue carries on from the database
    try:
        progress = httpx.get(again.url + "/api/progress").json()
        assert progress["settled"] == len(stored) >= len(committed)
    finally:
        again.stop()
