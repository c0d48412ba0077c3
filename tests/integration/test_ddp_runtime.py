"""Deliberate stops under ``binsight train --nproc N --max-restarts K``: ``max_runtime`` and stop signals end the
run once (exit 3, one resume command), without consuming the agent's restarts; ``--resume`` gets a fresh budget.

Real torchrun workers on loopback (gloo), tiny data, as in test_ddp.py.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from binsight.training.checkpoint import load_checkpoint
from tests.conftest import cli_env, held_env
from tests.integration.test_ddp import TINY, _binsight
from tests.integration.train_helpers import make_split

pytestmark = pytest.mark.ddp


def _attempts(output: str) -> int:
    """How often the agent started the worker group (each start joins a new process group; torch logs a failed
    worker as ``failed (exitcode: N)``, its INFO line "will restart worker group" is not shown)."""
    assert "failed (exitcode" not in output, output
    return output.count("rank 0/2 joined the gloo process group")


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> Path:
    return make_split(tmp_path_factory.mktemp("ddp-runtime"), n_train=24, n_val=6, n_test=2, size=36)


def _resume_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if "Resume with:" in line or "binsight train --resume" in line]


def test_max_runtime_stops_the_group_once_with_exit_3_and_no_restart(split, tmp_path):
    run = tmp_path / "run"
    # Far more epochs than fit in 4 s: the budget, not the epoch count, ends this run.
    proc = _binsight(
        "train", "--data", split, *TINY, "batch_size=4", "epochs=100000", "max_runtime=4", "--nproc", "2",
        "--max-restarts", "2", "--out", run, cache=tmp_path / "cache",
    )  # fmt: skip
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == 3, output
    assert _attempts(output) == 1
    assert "max_runtime of 4s is near" in output, output
    assert _resume_lines(output) == [f"Resume with: binsight train --nproc 2 --resume {run}"], output
    state = load_checkpoint(run / "weights" / "last.pt")
    assert state["world_size"] == 2 and len(state["rank_states"]) == 2
    assert not state["finished"] and state["epoch"] < 100000
    assert not (run / "artifact").exists()  # stopped, not finished


def test_a_run_stopped_by_max_runtime_resumes_with_a_fresh_budget_and_finishes(split, tmp_path):
    run = tmp_path / "run"
    # The job's clock says its 120 s were used up long ago (as for a group restarted near the limit): the
    # workers stop after their first batch.
    spent = cli_env(BINSIGHT_JOB_START=repr(time.time() - 1000))
    args = ["train", "--data", split, *TINY, "batch_size=4", "epochs=2", "max_runtime=120", "--nproc", "2"]
    proc = _binsight(*args, "--max-restarts", "1", "--out", run, cache=tmp_path / "cache", env=spent)
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == 3, output
    assert _attempts(output) == 1
    assert "in epoch 1 after batch 1: max_runtime of 120s is near" in output, output
    resume = f"binsight train --nproc 2 --resume {run}"
    assert _resume_lines(output) == [f"Resume with: {resume}"], output
    assert load_checkpoint(run / "weights" / "last.pt")["batch_in_epoch"] == 1

    # The printed command, as a user runs it (plus an override, which must reach the workers): a new launcher,
    # a new 120 s budget (a carried-over clock would stop it again at once), and the run finishes.
    proc = _binsight(*resume.split()[1:], "epochs=3", cache=tmp_path / "cache")
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == 0, output
    assert "resuming from" in output and "epoch 0, batch 1, step 1" in output, output  # 0 finished epochs
    epochs = [int(r.split(",")[0]) for r in (run / "metrics.csv").read_text().splitlines()[1:]]
    assert epochs == [1, 2, 3]
    assert (run / "artifact" / "model.json").is_file()


def test_sigterm_to_the_launcher_stops_once_without_a_restart(split, tmp_path):
    run = tmp_path / "run"
    proc = _binsight(
        "train", "--data", split, *TINY, "batch_size=4", "epochs=5", "--nproc", "2", "--max-restarts", "2",
        "--out", run, cache=tmp_path / "cache", env=held_env(tmp_path, epoch=1),
    )  # fmt: skip  # the workers wait after epoch 1 until stopped: the signal lands mid-run
    last = run / "weights" / "last.pt"
    deadline = time.monotonic() + 90
    while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGTERM)
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == 3, output
    assert _attempts(output) == 1
    assert "training stopped after epoch 1: SIGTERM received" in output, output
    assert _resume_lines(output) == [f"Resume with: binsight train --nproc 2 --resume {run}"], output
    state = load_checkpoint(last)
    assert state["epoch"] == 1 and len(state["rank_states"]) == 2


def test_the_stop_record_is_written_once_per_machine_and_only_for_a_waiting_launcher(tmp_path):
    from binsight.training.protocol import STOP_FILE_ENV, StopRecord, WorkerEnv, hand_stop_to_launcher

    def worker(rank: int, local_rank: int, stop_file=None) -> WorkerEnv:
        env = {"RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(local_rank)}
        return WorkerEnv.from_env({**env, STOP_FILE_ENV: str(stop_file)} if stop_file else env)

    path = tmp_path / "stop.json"
    assert not hand_stop_to_launcher("training stopped after epoch 2: SIGTERM received.", "SIGTERM", worker(0, 0))
    assert not path.exists()  # no launcher waits: the worker raises Interrupted and exits 3 as before

    assert hand_stop_to_launcher("rank 1 says", "a stop signal on another worker", worker(1, 1, path))
    assert not path.exists() and StopRecord.read(path) is None  # only local rank 0 writes
    assert hand_stop_to_launcher("training stopped after epoch 2: SIGTERM received.", "SIGTERM", worker(0, 0, path))
    record = StopRecord.read(path)
    assert record.message == "training stopped after epoch 2: SIGTERM received."
    assert (record.reason, record.rank, record.world_size) == ("SIGTERM", 0, 2)
    path.write_text("{not json")
    assert StopRecord.read(path) is None
