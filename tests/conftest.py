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
