"""``binsight train`` through the real command line: the run directory, config errors, SIGTERM and resume."""

from __future__ import annotations

import csv
import json
import logging
import signal
import subprocess
import sys
import time

import pytest
import yaml

from tests.conftest import cli_env, run_cli
from tests.integration.train_helpers import TINY, make_split


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    return make_split(tmp_path_factory.mktemp("data"))


@pytest.fixture
def env(tmp_path):
    return cli_env(BINSIGHT_CACHE_DIR=str(tmp_path / "cache"))


def test_train_writes_the_full_run_directory(split, tmp_path, env):
    proc = run_cli("train", "--data", split, "--project", tmp_path / "runs", *TINY, "epochs=2", "name=demo", env=env)
    run = tmp_path / "runs" / "train" / "demo"
    assert f"run: {run}" in proc.stdout and "best epoch" in proc.stdout
    for rel in [
        "config.yaml",
        "metrics.csv",
        "weights/last.pt",
        "weights/best.pt",
        "artifact/model.json",
        "artifact/model.safetensors",
        "curves.png",
        "confusion_matrix.png",
    ]:
        assert (run / rel).is_file(), f"{rel} missing"
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["data"] == str(split.resolve()) and config["model"] == "tiny_cnn" and config["epochs"] == 2
    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert list(rows[0]) == ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "val_macro_f1", "lr", "seconds"]
    meta = json.loads((run / "artifact" / "model.json").read_text())
    assert meta["name"] == "demo" and meta["architecture"] == "tiny_cnn"
    assert meta["class_labels"] == ["1", "2", "3"] and meta["input_size"] == 32 and meta["resize"] == "letterbox"
    assert len(meta["training_data_hash"]) == 64 and meta["version"].startswith("demo-")
    best = max(rows, key=lambda r: float(r["val_macro_f1"]))
    assert meta["metrics"]["macro_f1"] == pytest.approx(float(best["val_macro_f1"]))

    # The artifact's weights load into a fresh model of the recorded architecture.
    from binsight.inference.artifact import load_weights
    from binsight.models import create_model

    create_model(meta["architecture"], len(meta["class_labels"]), head=meta["head"]).load_state_dict(load_weights(run))


def test_train_with_no_settings_trains_the_real_photo_recipe(split, tmp_path, env):
    """No --config and no keys: the whole ImageNet Lite0 fine-tuned, ordinal head, thresholds at evaluate."""
    proc = run_cli("train", "--data", split, "--project", tmp_path / "runs", "epochs=2", env=env)
    run = tmp_path / "runs" / "train" / "exp"
    assert f"run: {run}" in proc.stdout
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert (config["model"], config["weights"], config["head"], config["loss"]) == (
        "efficientnet_lite0", "imagenet", "ordinal", "auto"
    )  # fmt: skip
    assert not config["freeze_backbone"] and config["augment"] == "light" and config["decision"] == "macro_f1"
    assert (config["lr"], config["patience"]) == (3.0e-4, 3)
    meta = json.loads((run / "artifact" / "model.json").read_text())
    assert (meta["architecture"], meta["head"], meta["input_size"]) == ("efficientnet_lite0", "ordinal", 224)
    assert meta["amp"] == "auto"  # the torch backend serves in the precision the model was trained in
    run_cli("evaluate", "--model", run, env=env)
    meta = json.loads((run / "artifact" / "model.json").read_text())
    assert len(meta["class_bias"]) == 3, "evaluate fits per-class decision thresholds for the default decision"


def test_config_errors_exit_2_naming_the_key(split, tmp_path, env):
    proc = run_cli("train", "--data", split, "--project", tmp_path, "epoch=3", check=False, env=env)
    assert proc.returncode == 2
    assert "unknown key epoch" in proc.stderr and "did you mean epochs" in proc.stderr
    proc = run_cli("train", "--data", split, "--project", tmp_path, "augment=heavy", check=False, env=env)
    assert proc.returncode == 2 and "augment" in proc.stderr and "'strong'" in proc.stderr
    assert not (tmp_path / "train").exists(), "a config error must not create a run directory"
    proc = run_cli("train", "--resume", tmp_path / "nothing", check=False, env=env)
    assert proc.returncode == 1 and "not a training run directory" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_sigterm_saves_a_checkpoint_and_resume_finishes(split, tmp_path, env, monkeypatch, caplog, capsys):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "binsight", "train", "--data", str(split), "--out", str(run), *TINY, "epochs=100000"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines = []
    try:
        deadline = time.monotonic() + 120
        for line in proc.stderr:  # wait until an epoch has been logged: training is under way
            lines.append(line)
            if "epoch 1/100000" in line or time.monotonic() > deadline:
                break
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr = "".join(lines) + rest
    assert proc.returncode == 3, stderr
    assert "SIGTERM received" in stderr
    assert f"binsight train --resume {run}" in stderr
    assert (run / "weights" / "last.pt").is_file()
    assert not (run / "artifact").exists()

    with open(run / "metrics.csv") as f:
        done = len(list(csv.DictReader(f)))
    # Finish the epoch it was in (or the next one) instead of all 100000. The command line runs in-process
    # here (the same code as the subprocess above, minus a second torch start-up).
    from binsight.cli.main import main

    monkeypatch.setenv("BINSIGHT_CACHE_DIR", env["BINSIGHT_CACHE_DIR"])
    with caplog.at_level(logging.INFO):
        assert main(["train", "--resume", str(run), f"epochs={done + 1}"]) == 0
    assert any("resuming from" in r.getMessage() for r in caplog.records)
    assert f"run: {run}" in capsys.readouterr().out
    with open(run / "metrics.csv") as f:
        assert len(list(csv.DictReader(f))) == done + 1
    assert (run / "artifact" / "model.json").is_file()
    assert yaml.safe_load((run / "config.yaml").read_text())["epochs"] == done + 1
