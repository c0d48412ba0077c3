"""Shared fixtures: the real CLI as a subprocess, the ABID sample (skipped when absent), free ports."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from binsight.utils.net import free_port

REPO = Path(__file__).resolve().parents[1]
ABID_SAMPLE = Path(os.environ.get("BINSIGHT_ABID_SAMPLE", REPO.parent / "shared" / "abid-sample"))

# Tests share 2 cores between pytest and the processes it starts: keep each one to a single thread.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ["BINSIGHT_NO_PROGRESS"] = "1"


def cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"BINSIGHT_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


# A sitecustomize that every Python process started with :func:`held_env` loads. Tests that stop or kill work
# midway use it to pin the moment deterministically instead of racing a fast (or starved) machine:
# - BINSIGHT_TEST_HOLD_EPOCH=E: each trainer waits at the end of epoch E until its stop flag is set (by
#   SIGTERM/SIGINT), or, with BINSIGHT_TEST_BARRIER=DIR:N, until N trainers have got there (120 s at most);
# - BINSIGHT_TEST_HOLD_FETCH=N: ``binsight data fetch`` downloads N files, then each further file waits until the
#   fetch is stopped (Ctrl-C), or 120 s.
_HOLD_SITECUSTOMIZE = """
import os, time
if os.environ.get("BINSIGHT_TEST_HOLD_EPOCH"):
    from binsight.training import trainer as _trainer

    _init = _trainer.Trainer.__init__

    def _held_init(self, *args, **kwargs):
        _init(self, *args, **kwargs)
        hold_epoch = int(os.environ["BINSIGHT_TEST_HOLD_EPOCH"])
        barrier = os.environ.get("BINSIGHT_TEST_BARRIER", "")

        def hold(epoch, row):
            if epoch != hold_epoch:
                return
            deadline = time.monotonic() + 120
            if barrier:
                folder, n = barrier.rsplit(":", 1)
                open(os.path.join(folder, f"{os.getpid()}-{id(self)}"), "w").close()
                while len(os.listdir(folder)) < int(n) and time.monotonic() < deadline:
                    time.sleep(0.01)
                return
            while not self.stop.requested and time.monotonic() < deadline:
                time.sleep(0.01)

        self.on_epoch_end.insert(0, hold)  # before a pruning report, which may end the trial

    _trainer.Trainer.__init__ = _held_init

if os.environ.get("BINSIGHT_TEST_HOLD_FETCH"):
    import threading
    from binsight.data import fetch as _fetch

    _fetch_one, _lock, _started = _fetch.fetch_one, threading.Lock(), [0]

    def _held_fetch_one(client, options, key, dest, stop):
        with _lock:
            _started[0] += 1
            n = _started[0]
        if n > int(os.environ["BINSIGHT_TEST_HOLD_FETCH"]):
            deadline = time.monotonic() + 120
            while not stop.is_set() and time.monotonic() < deadline:
                time.sleep(0.01)
        return _fetch_one(client, options, key, dest, stop)

    _fetch.fetch_one = _held_fetch_one
"""


def held_env(tmp_path: Path, epoch: int = 0, barrier: int = 0, fetch: int = 0, **extra: str) -> dict[str, str]:
    """:func:`cli_env` for a command whose trainers pause after ``epoch`` (until stopped, or with ``barrier`` > 0
    until ``barrier`` trainers in any processes have got there), or whose fetch pauses after ``fetch`` files."""
    hooks = tmp_path / "test-hooks"
    hooks.mkdir(exist_ok=True)
    (hooks / "sitecustomize.py").write_text(_HOLD_SITECUSTOMIZE)
    pythonpath = os.pathsep.join(p for p in (str(hooks), os.environ.get("PYTHONPATH", "")) if p)
    env = cli_env(PYTHONPATH=pythonpath, **extra)
    if epoch:
        env["BINSIGHT_TEST_HOLD_EPOCH"] = str(epoch)
    if fetch:
        env["BINSIGHT_TEST_HOLD_FETCH"] = str(fetch)
    if barrier:
        (hooks / "barrier").mkdir(exist_ok=True)
        env["BINSIGHT_TEST_BARRIER"] = f"{hooks / 'barrier'}:{barrier}"
    return env


def run_cli(*args: str, cwd: Path | None = None, check: bool = True, timeout: float = 600, env=None):
    """Run the real ``binsight`` command line in a subprocess and return the CompletedProcess."""
    proc = subprocess.run(
        [sys.executable, "-m", "binsight", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env or cli_env(),
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"binsight {' '.join(map(str, args))} exited {proc.returncode}\n"
            f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
        )
    return proc


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture(scope="session")
def abid_sample() -> Path:
    if not (ABID_SAMPLE / "labels.csv").is_file():
        pytest.skip(f"ABID sample not found at {ABID_SAMPLE} (set BINSIGHT_ABID_SAMPLE to its folder)")
    return ABID_SAMPLE


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def moto_server():
    """The fetch tests' S3: moto's real server on loopback (``MotoS3`` of tests/integration/test_fetch_support.py),
    one per test module."""
    from tests.integration.test_fetch_support import MotoS3

    server = MotoS3()
    yield server
    server.stop()


@pytest.fixture
def s3(moto_server):
    """``moto_server`` with every bucket forgotten, for a fetch test to seed. (The gateway tests define their own
    ``s3``: a boto3 client on a fresh bucket.)"""
    moto_server.reset()
    return moto_server


@pytest.fixture
def one_thread():
    """Torch on one thread during the test (the cores are shared); the previous count is restored after.

    Use it for a whole module with ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
