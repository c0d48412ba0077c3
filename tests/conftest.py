"""Shared fixtures: the real CLI as a subprocess, the ABID sample (skipped when absent), free ports."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from binsight.faults import Faults
from binsight.utils.net import free_port

REPO = Path(__file__).resolve().parents[1]
ABID_SAMPLE = Path(os.environ.get("BINSIGHT_ABID_SAMPLE", REPO.parent / "shared" / "abid-sample"))

# Tests share 2 cores between pytest and the processes it starts: keep each one to a single thread.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ["BINSIGHT_NO_PROGRESS"] = "1"


def load_benchmark(name: str):
    """A script under benchmarks/ imported as a module (they are scripts, not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"BINSIGHT_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


def held_env(tmp_path: Path, epoch: int = 0, barrier: int = 0, fetch: int = 0, **extra: str) -> dict[str, str]:
    """:func:`cli_env` for a command whose trainers pause after ``epoch`` (until stopped, or with ``barrier`` > 0
    until ``barrier`` trainers in any processes have got there), or whose fetch pauses after ``fetch`` files.

    The pauses are :class:`binsight.faults.Faults`, enabled through the started process's environment: tests pin
    the moment they stop or kill work deterministically instead of racing a fast (or starved) machine."""
    folder = None
    if barrier:
        folder = tmp_path / "test-hooks" / "barrier"
        folder.mkdir(parents=True, exist_ok=True)
    faults = Faults(hold_epoch=epoch, barrier=(folder, barrier) if folder else None, hold_fetch_after=fetch)
    return cli_env(**faults.to_env(), **extra)


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
