"""Run tracking through the real CLI: a trained and then evaluated run in MLflow, TensorBoard scalars, and a
failed start that leaves no run folder behind."""

from __future__ import annotations

import csv

import pytest

from tests.conftest import cli_env, run_cli
from tests.integration.train_helpers import TINY, make_split


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    return make_split(tmp_path_factory.mktemp("data"))


def test_train_then_evaluate_log_into_one_mlflow_run(split, tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = cli_env(BINSIGHT_CACHE_DIR=str(tmp_path / "cache"))
    args = ["--project", tmp_path / "runs", *TINY, "epochs=3", "name=tracked", "tracking.backend=mlflow"]
    run_cli("train", "--data", split, *args, f"tracking.uri={uri}", cwd=tmp_path, env=env)
    run = tmp_path / "runs" / "train" / "tracked"
    run_cli("evaluate", "--model", run, "--threads", "1", cwd=tmp_path, env=env)

    client = MlflowClient(tracking_uri=uri)
    (found,) = client.search_runs([client.get_experiment_by_name("binsight").experiment_id])
    assert found.info.run_name == "tracked" and found.info.status == "FINISHED"
    assert found.data.params["model"] == "tiny_cnn" and found.data.params["tracking.backend"] == "mlflow"
    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    history = client.get_metric_history(found.info.run_id, "val_macro_f1")
    assert [(m.step, m.value) for m in history] == [(int(r["epoch"]), float(r["val_macro_f1"])) for r in rows]
    assert found.data.metrics["test_n"] == 3  # the evaluation landed in the same run
    logged = {a.path for a in client.list_artifacts(found.info.run_id)}
    assert {"model", "metrics.csv", "config.yaml", "evaluation"} <= logged
    model = {a.path for a in client.list_artifacts(found.info.run_id, "model")}
    assert {"model/model.json", "model/model.safetensors"} <= model


def test_tensorboard_scalars_from_training(split, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    env = cli_env(BINSIGHT_CACHE_DIR=str(tmp_path / "cache"))
    run_cli(
        "train",
        "--data",
        split,
        "--project",
        tmp_path / "runs",
        *TINY,
        "epochs=2",
        "name=tb",
        "tracking.backend=tensorboard",
        env=env,
    )
    events = EventAccumulator(str(tmp_path / "runs" / "train" / "tb" / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("val_macro_f1")] == [1, 2]


def test_a_failed_start_leaves_no_run_folder_and_keeps_the_number(split, tmp_path):
    bad = tmp_path / "bad-split"
    bad.mkdir()
    for name in ("train", "val", "test"):
        (bad / f"{name}.csv").write_text("path,label,sha256,source\nmissing.jpg,1,abc,x\n")
    env = cli_env(BINSIGHT_CACHE_DIR=str(tmp_path / "cache"))
    project = tmp_path / "runs"
    (project / "train" / "r18").mkdir(parents=True)
    failed = run_cli("train", "--data", bad, "--project", project, *TINY, "name=r18", env=env, check=False)
    assert failed.returncode == 1
    assert sorted(p.name for p in (project / "train").iterdir()) == ["r18"]  # no r18-2 left behind
    run_cli("train", "--data", split, "--project", project, *TINY, "epochs=1", "name=r18", env=env)
    assert sorted(p.name for p in (project / "train").iterdir()) == ["r18", "r18-2"]


def test_unusable_weights_fail_before_any_data_is_read_and_leave_no_folder(split, tmp_path):
    env = cli_env(BINSIGHT_CACHE_DIR=str(tmp_path / "cache"))
    project = tmp_path / "runs"
    tiny = [o for o in TINY if not o.startswith("weights=")]
    no_imagenet = run_cli(
        "train", "--data", split, "--project", project, *tiny, "weights=imagenet", env=env, check=False
    )
    assert no_imagenet.returncode == 1 and "tiny_cnn has no ImageNet weights" in no_imagenet.stderr
    assert not (tmp_path / "cache").exists(), "nothing is decoded for a start that cannot succeed"
    missing = run_cli("train", "--data", split, "--project", project, *tiny, "weights=/nope.pt", env=env, check=False)
    assert missing.returncode == 1 and "/nope.pt does not exist" in missing.stderr
    # A file that exists but is truncated only fails when the model is built: the folder goes all the same.
    truncated = tmp_path / "w.safetensors"
    truncated.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{")
    bad = run_cli("train", "--data", split, "--project", project, *tiny, f"weights={truncated}", env=env, check=False)
    assert bad.returncode == 1 and str(truncated) in bad.stderr
    assert not (project / "train").exists() or not any((project / "train").iterdir())
