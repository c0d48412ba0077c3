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


# A sitecustomize that every Python process started with :func:`held_env` loads: each trainer waits at the end of
# epoch ``BINSIGHT_TEST_HOLD_EPOCH`` until its stop flag is set (by SIGTERM/SIGINT, or by a time limit of 120 s),
# after first waiting, when ``BINSIGHT_TEST_BARRIER=DIR:N``, until N trainers have reached that point. Tests that
# stop or kill training mid-run use it to pin the moment deterministically instead of racing a fast machine.
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
"""


def held_env(tmp_path: Path, epoch: int, barrier: int = 0, **extra: str) -> dict[str, str]:
    """:func:`cli_env` for a command whose trainers pause after ``epoch``: until stopped, or (``barrier`` > 0)
    until ``barrier`` trainers, in any processes, have got there."""
    hooks = tmp_path / "test-hooks"
    hooks.mkdir(exist_ok=True)
    (hooks / "sitecustomize.py").write_text(_HOLD_SITECUSTOMIZE)
    pythonpath = os.pathsep.join(p for p in (str(hooks), os.environ.get("PYTHONPATH", "")) if p)
    env = cli_env(BINSIGHT_TEST_HOLD_EPOCH=str(epoch), PYTHONPATH=pythonpath, **extra)
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
