"""Run tracking against the real libraries: an MLflow file store read back through MlflowClient, TensorBoard
event files read back through TensorBoard's own reader."""

from __future__ import annotations

from pathlib import Path

import pytest

from binsight.config.schemas import TrackingConfig
from binsight.tracking import STATE_FILE, flatten, numeric, open_tracker


def test_flatten_and_numeric():
    assert flatten({"a": {"b": 1, "c": {"d": "x"}}, "e": [1, 2]}) == {"a.b": "1", "a.c.d": "x", "e": "[1, 2]"}
    assert numeric({"loss": 0.5, "epoch": 3, "time": "12:00", "ok": True, "nan": float("nan")}) == {
        "loss": 0.5,
        "epoch": 3.0,
    }


def test_tracking_off_opens_nothing(tmp_path: Path):
    assert open_tracker(TrackingConfig(), tmp_path, "r") is None
    assert not (tmp_path / STATE_FILE).exists()


def test_mlflow_run_is_created_then_continued_from_the_run_directory(tmp_path: Path, monkeypatch):
    from mlflow.tracking import MlflowClient

    cfg = TrackingConfig(backend="mlflow", uri=f"sqlite:///{tmp_path / 'mlflow.db'}", experiment="exp")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "metrics.csv").write_text("epoch,val_macro_f1\n1,0.5\n")
    monkeypatch.chdir(tmp_path)  # MLflow puts artifacts under ./mlruns
    tracker = open_tracker(cfg, run_dir, "r18", tags={"binsight.kind": "train"})
    tracker.log_params({"model": "tiny_cnn", "optim": {"lr": 0.01}})
    for epoch, f1 in enumerate([0.2, 0.4], 1):
        tracker.log_metrics({"val_macro_f1": f1, "when": "now"}, step=epoch)
    tracker.log_artifacts(run_dir / "metrics.csv")
    tracker.close()
    again = open_tracker(cfg, run_dir, "r18")  # a resumed run or a later evaluate: the same MLflow run
    assert again.run_id == tracker.run_id
    again.log_metrics({"test_accuracy": 0.75})
    again.close()

    client = MlflowClient(tracking_uri=cfg.uri)
    run = client.get_run(tracker.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "r18"
    assert run.data.params == {"model": "tiny_cnn", "optim.lr": "0.01"}
    assert run.data.tags["binsight.kind"] == "train"
    history = client.get_metric_history(tracker.run_id, "val_macro_f1")
    assert [(m.step, m.value) for m in history] == [(1, 0.2), (2, 0.4)]
    assert run.data.metrics["test_accuracy"] == 0.75
    assert [a.path for a in client.list_artifacts(tracker.run_id)] == ["metrics.csv"]


def test_tensorboard_scalars_are_written(tmp_path: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tracker = open_tracker(TrackingConfig(backend="tensorboard"), tmp_path, "r")
    tracker.log_params({"lr": 0.1})
    tracker.log_metrics({"train_loss": 1.5}, step=1)
    tracker.log_metrics({"train_loss": 0.5}, step=2)
    tracker.close()
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("train_loss")] == [(1, 1.5), (2, 0.5)]


def test_a_missing_library_is_a_clear_error(tmp_path: Path, monkeypatch):
    import builtins

    from binsight.errors import BinsightError

    real_import = builtins.__import__

    def no_mlflow(name, *args, **kwargs):
        if name.startswith("mlflow"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_mlflow)
    with pytest.raises(BinsightError, match="pip install 'binsight\\[track\\]'"):
        open_tracker(TrackingConfig(backend="mlflow", uri=tmp_path.as_uri()), tmp_path, "r")
