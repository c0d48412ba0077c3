"""`binsight tune` through the real CLI: a small study, its outputs, best.yaml into `binsight train`, resume,
parallel workers, and a worker killed with SIGKILL whose trial is failed, retried and resumed."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from binsight.config import TrainConfig, from_dict
from tests.conftest import held_env, run_cli
from tests.integration.train_helpers import make_split

TINY_TUNE = [
    "train.model=tiny_cnn",
    "train.weights=none",
    "train.img_size=32",
    "train.epochs=2",
    "train.max_train_batches=1",
    "train.augment=none",
    "space.batch_size=[4,8]",
    "startup_trials=2",
]


def read_trials(tune_dir: Path) -> list[dict[str, str]]:
    with (tune_dir / "trials.csv").open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> Path:
    return make_split(tmp_path_factory.mktemp("tune-data"), n_train=18, n_val=9, size=32)


@pytest.fixture(scope="module")
def study(split, tmp_path_factory) -> tuple[Path, Path, subprocess.CompletedProcess]:
    """One 3-trial study, shared by the tests that read its outputs (the CLI run is the slow part)."""
    root = tmp_path_factory.mktemp("tune-run")
    cache = root / "cache"
    proc = run_cli(
        "tune", "--data", split, "--trials", "3", "--project", root / "runs", *TINY_TUNE, f"train.cache_dir={cache}"
    )
    return root / "runs" / "tune" / "study", cache, proc


def test_study_writes_table_plots_summary_and_best_yaml(study):
    tune_dir, _, proc = study
    rows = read_trials(tune_dir)
    assert [int(r["trial"]) for r in rows] == [0, 1, 2]
    assert {r["state"] for r in rows} <= {"COMPLETE", "PRUNED"}
    assert {"lr", "weight_decay", "batch_size", "freeze_backbone", "patience", "value", "duration_s"} <= set(rows[0])
    for r in rows:
        assert (tune_dir / "trials" / r["trial"] / "metrics.csv").is_file()
        assert float(r["lr"]) > 0 and r["batch_size"] in ("4", "8")
    summary = json.loads((tune_dir / "summary.json").read_text())
    assert sum(summary["states"].values()) == 3
    complete = [r for r in rows if r["state"] == "COMPLETE"]
    best = max(complete, key=lambda r: float(r["value"]))
    assert summary["best_trial"] == int(best["trial"])
    assert summary["best_value"] == pytest.approx(float(best["value"]))
    assert summary["time_to_best_s"] is not None and summary["time_to_best_s"] <= summary["study_wall_s"]
    assert (tune_dir / "optimization_history.png").stat().st_size > 1000
    # importances need two complete trials: either the plot exists or a note says why not
    assert (tune_dir / "param_importances.png").is_file() or summary["notes"]
    assert "best trial" in proc.stdout and "trial  state" in proc.stdout
    assert (tune_dir / "journal.log").is_file()  # the default storage


def test_best_yaml_is_a_complete_config_that_binsight_train_runs(study, tmp_path):
    tune_dir, _, _ = study
    summary = json.loads((tune_dir / "summary.json").read_text())
    data = yaml.safe_load((tune_dir / "best.yaml").read_text())
    assert set(data) == set(TrainConfig.__dataclass_fields__)  # every key, nothing else
    cfg = from_dict(TrainConfig, data)
    for key, value in summary["best_params"].items():
        assert getattr(cfg, key) == pytest.approx(value) if isinstance(value, float) else getattr(cfg, key) == value
    assert cfg.model == "tiny_cnn" and cfg.img_size == 32 and Path(cfg.data).is_dir()
    proc = run_cli("train", "--config", tune_dir / "best.yaml", "--out", tmp_path / "retrain")
    assert (tmp_path / "retrain" / "artifact" / "model.json").is_file()
    assert "best epoch" in proc.stdout
    assert from_dict(TrainConfig, yaml.safe_load((tmp_path / "retrain" / "config.yaml").read_text())) == cfg


def test_resume_adds_trials_to_the_same_study(study):
    tune_dir, _, _ = study
    before = (tune_dir / "journal.log").stat().st_size
    run_cli("tune", "--resume", tune_dir, "--trials", "4")
    rows = read_trials(tune_dir)
    assert [int(r["trial"]) for r in rows] == [0, 1, 2, 3]
    assert (tune_dir / "trials" / "3" / "metrics.csv").is_file()
    assert (tune_dir / "journal.log").stat().st_size > before
    assert json.loads((tune_dir / "summary.json").read_text())["trials"] == 4


def test_parallel_workers_run_the_budget_exactly_once(split, tmp_path):
    out = tmp_path / "par"
    # the first trial waits after epoch 1 until a second has got there, which only the other worker can start
    env = held_env(tmp_path, epoch=1, barrier=2)
    run_cli("tune", "--data", split, "--trials", "4", "--workers", "2", "--out", out, *TINY_TUNE, env=env)
    rows = read_trials(out)
    numbers = [int(r["trial"]) for r in rows]
    assert sorted(numbers) == [0, 1, 2, 3]  # exactly the budget, no duplicate trial
    assert {r["state"] for r in rows} <= {"COMPLETE", "PRUNED"}
    assert sorted(p.name for p in (out / "trials").iterdir()) == ["0", "1", "2", "3"]
    logs = [(out / "logs" / f"worker-{i}.log").read_text() for i in range(2)]
    ran = [log.count("run directory:") for log in logs]
    assert sum(ran) == 4 and all(n >= 1 for n in ran), ran  # both worker processes trained trials
    params = {(r["lr"], r["weight_decay"]) for r in rows}
    assert len(params) == 4  # the workers did not draw the same parameters


def test_killed_worker_trial_is_failed_retried_and_resumed(split, tmp_path):
    out = tmp_path / "killed"
    args = [*TINY_TUNE, "train.epochs=10", "train.max_train_batches=0", "space.patience=[0]", "pruner=none"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "binsight", "tune", "--data", str(split), "--trials", "1", "--out", str(out), *args],
        env=held_env(tmp_path, epoch=2),  # the trial waits after epoch 2 (until stopped), where it is killed
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    metrics = out / "trials" / "0" / "metrics.csv"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= 3:  # header + 2 epochs
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the study finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = list(csv.DictReader(metrics.open()))
    assert len(before) == 2

    run_cli("tune", "--resume", out)
    rows = read_trials(out)
    assert [(r["trial"], r["state"]) for r in rows] == [("0", "FAIL"), ("1", "COMPLETE")]
    assert "retried as trial 1" in rows[0]["note"] and "retry of trial 0" in rows[1]["note"]
    epochs = list(csv.DictReader((out / "trials" / "1" / "metrics.csv").open()))
    assert [int(e["epoch"]) for e in epochs] == list(range(1, 11))
    # continued from the dead trial's checkpoint, not restarted: its epochs (with their timings) are kept
    assert [e["seconds"] for e in epochs[: len(before)]] == [e["seconds"] for e in before]
    assert int(rows[1]["epochs"]) == 10  # the retry re-reported the epochs the dead trial had done
    assert not (out / "trials" / "0").exists()


def test_sigterm_stops_parallel_workers_with_checkpoints_and_resume_continues(split, tmp_path):
    out = tmp_path / "stopped"
    env = held_env(tmp_path, epoch=1)  # each trial waits after its first epoch for the stop
    args = [*TINY_TUNE, "train.epochs=30", "train.max_train_batches=0", "space.patience=[0]", "pruner=none"]
    cmd = [sys.executable, "-m", "binsight", "tune", "--data", str(split), "--trials", "2", "--jobs", "2"]
    proc = subprocess.Popen([*cmd, "--out", str(out), *args], env=env, stderr=subprocess.PIPE, text=True)
    paths = [out / "trials" / n / "metrics.csv" for n in ("0", "1")]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if all(p.is_file() and len(p.read_text().splitlines()) >= 2 for p in paths):
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the study ended before it could be stopped"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 3, err  # stopped, checkpoints saved
    assert f"binsight tune --resume {out}" in err
    before = {n: list(csv.DictReader(p.open())) for n, p in zip(("0", "1"), paths, strict=True)}
    assert [len(rows) for rows in before.values()] == [1, 1], before  # both held after epoch 1 until the stop
    rows = read_trials(out)
    assert [r["state"] for r in rows] == ["FAIL", "FAIL"] and all("checkpoint" in r["note"] for r in rows)

    run_cli("tune", "--resume", out)
    rows = read_trials(out)
    assert [r["state"] for r in rows] == ["FAIL", "FAIL", "COMPLETE", "COMPLETE"]
    retried = {r["note"].split("retry of trial ")[1].split(";")[0]: r["trial"] for r in rows[2:]}
    assert sorted(retried) == ["0", "1"]
    for old, new in retried.items():
        epochs = list(csv.DictReader((out / "trials" / new / "metrics.csv").open()))
        assert len(epochs) == 30
        assert [e["seconds"] for e in epochs[: len(before[old])]] == [e["seconds"] for e in before[old]]


def test_bad_input_is_a_clear_error(split, tmp_path):
    proc = run_cli("tune", "--project", tmp_path, check=False)
    assert proc.returncode == 2 and "--data SPLITDIR" in proc.stderr
    proc = run_cli("tune", "--data", split, "space.lr=[0.1,0.01]", "--project", tmp_path, check=False)
    assert proc.returncode == 2 and "low 0.1 is above high 0.01" in proc.stderr
    proc = run_cli("tune", "--resume", tmp_path, check=False)
    assert proc.returncode == 1 and "not a tuning run directory" in proc.stderr
    url = "postgresql+psycopg2://nobody@127.0.0.1:9/none"
    proc = run_cli("tune", "--data", split, "--storage", url, "--out", tmp_path / "pg", *TINY_TUNE, check=False)
    assert proc.returncode == 1 and "cannot open the study storage" in proc.stderr
    assert "Traceback" not in proc.stderr
