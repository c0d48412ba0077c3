"""SageMaker training containers: SM_* environment mapping, hyperparameter flags, a job that resumes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from binsight.errors import BinsightError, DataError
from binsight.training.sagemaker import prepare_split, sagemaker_env, sagemaker_train_args
from tests.conftest import cli_env
from tests.integration.train_helpers import make_split

pytestmark = pytest.mark.ddp


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        "SM_HOSTS": json.dumps(["algo-1", "algo-2"]),
        "SM_CURRENT_HOST": "algo-2",
        "SM_NUM_GPUS": "0",
        "SM_NUM_CPUS": "2",
        "SM_MODEL_DIR": str(tmp_path / "model"),
        "SM_OUTPUT_DATA_DIR": str(tmp_path / "output"),
        "BINSIGHT_SM_CHECKPOINT_DIR": str(tmp_path / "checkpoints"),
    }
    env.update(extra)
    return env


def test_environment_maps_to_hosts_ranks_and_channels(tmp_path):
    assert sagemaker_env({}) is None
    (tmp_path / "checkpoints").mkdir()
    sm = sagemaker_env(_env(tmp_path, SM_CHANNEL_TRAIN=str(tmp_path / "train")))
    assert sm.node_rank == 1 and sm.master_addr == "algo-1" and sm.workers_per_host() == 1
    assert sm.channels == {"train": tmp_path / "train"} and sm.checkpoint_dir == tmp_path / "checkpoints"
    assert sagemaker_env(_env(tmp_path, SM_NUM_GPUS="4")).workers_per_host() == 4
    with pytest.raises(BinsightError, match="not one of SM_HOSTS"):
        sagemaker_env(_env(tmp_path, SM_CURRENT_HOST="algo-9"))
    with pytest.raises(BinsightError, match="JSON list"):
        sagemaker_env(_env(tmp_path, SM_HOSTS="algo-1,algo-2"))


def test_multi_host_job_launches_with_static_ranks_at_the_first_host(tmp_path, monkeypatch):
    split = make_split(tmp_path / "data", n_train=4, n_val=2, n_test=1, size=20)
    for key in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    sm = sagemaker_env(_env(tmp_path, SM_CHANNEL_TRAIN=str(split)))
    args = sagemaker_train_args(sm, ["--lr", "0.001"])
    assert args[args.index("--data") + 1] == str(split)  # a whole split folder is used as it is
    assert args[args.index("--rdzv-endpoint") + 1] == "algo-1:29500"
    assert args[args.index("--node-rank") + 1] == "1" and args[args.index("--nnodes") + 1] == "2"
    assert "--auto-resume" in args and args[args.index("--lr") : args.index("--lr") + 2] == ["--lr", "0.001"]


def test_separate_channels_become_one_split(tmp_path):
    root = make_split(tmp_path / "data", n_train=4, n_val=2, n_test=1, size=20)
    channels = {}
    for name, csv in (("train", "train"), ("validation", "val")):
        folder = tmp_path / name
        folder.mkdir()
        text = (root / f"{csv}.csv").read_text().replace("../images/", str(root.parent / "images") + "/")
        (folder / f"{csv}.csv").write_text(text)
        channels[f"SM_CHANNEL_{name.upper()}"] = str(folder)
    sm = sagemaker_env(_env(tmp_path, **channels))
    split = prepare_split(sm, work=tmp_path / "work")
    assert len((split / "train.csv").read_text().splitlines()) == 5 and (split / "test.csv").is_file()
    only_train = sagemaker_env(_env(tmp_path, SM_CHANNEL_TRAIN=channels["SM_CHANNEL_TRAIN"]))
    with pytest.raises(DataError, match="validation"):
        prepare_split(only_train, work=tmp_path / "work2")


def test_a_job_trains_publishes_and_a_restarted_job_resumes_from_the_checkpoint_folder(tmp_path):
    split = make_split(tmp_path / "data", n_train=12, n_val=6, n_test=2, size=36)
    (tmp_path / "checkpoints").mkdir()
    env = cli_env(
        **_env(tmp_path, SM_HOSTS='["algo-1"]', SM_CURRENT_HOST="algo-1", SM_CHANNEL_TRAIN=str(split)),
        TRAINING_JOB_NAME="job1",
        BINSIGHT_CACHE_DIR=str(tmp_path / "cache"),
    )
    # SageMaker style: --key value pairs, JSON-quoted strings, Python booleans.
    hyper = [
        "--model",
        '"tiny_cnn"',
        "--weights",
        "none",
        "--freeze_backbone",
        "false",
        "--img-size",
        "32",
        "--batch_size",
        "4",
        "--augment",
        "none",
    ]
    hyper += ["--deterministic", "True", "--patience", "0"]
    code = "from binsight.training.sagemaker import main; raise SystemExit(main())"

    def job(*extra: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-c", code, *hyper, *extra]
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)

    first = job("--epochs", "1")
    assert first.returncode == 0, first.stderr
    assert json.loads((tmp_path / "model" / "model.json").read_text())["architecture"] == "tiny_cnn"
    assert (tmp_path / "model" / "model.safetensors").is_file()
    assert len((tmp_path / "output" / "metrics.csv").read_text().splitlines()) == 2
    assert (tmp_path / "checkpoints" / "job1" / "weights" / "last.pt").is_file()
    again = job("--epochs", "2")  # the restarted job (e.g. after a spot interruption) continues the run
    assert again.returncode == 0, again.stderr
    assert "resuming from" in again.stderr
    assert len((tmp_path / "output" / "metrics.csv").read_text().splitlines()) == 3
