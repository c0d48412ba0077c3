"""Tuning in process on a tiny split: pruning that stops trials, keep=best, study checks, the search space."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from binsight.config import ConfigError, TrainConfig, TuneConfig, load_config
from binsight.errors import BinsightError
from binsight.tuning.space import apply_params, suggest, tuned_keys
from binsight.tuning.study import counted_trials, make_pruner, run_study
from tests.integration.train_helpers import make_split

TINY = [
    "train.model=tiny_cnn",
    "train.weights=none",
    "train.img_size=32",
    "train.max_train_batches=1",
    "train.augment=none",
    "space.batch_size=[4,8]",
    "space.freeze_backbone=[false]",
]


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> Path:
    return make_split(tmp_path_factory.mktemp("tune-data"), n_train=12, n_val=6, size=32)


@pytest.fixture(autouse=True)
def one_thread(tmp_path, monkeypatch):
    monkeypatch.setenv("BINSIGHT_CACHE_DIR", str(tmp_path / "cache"))
    previous = torch.get_num_threads()
    yield
    torch.set_num_threads(previous)


def tune_cfg(*overrides: str) -> TuneConfig:
    return load_config(TuneConfig, None, [*TINY, "threads=1", *overrides])


def rows(tune_dir: Path) -> list[dict[str, str]]:
    with (tune_dir / "trials.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def test_pruner_stops_trials_before_their_last_epoch(split, tmp_path):
    # Validation macro-F1 is below 1.0 on this data, so the threshold pruner stops every trial after warmup.
    cfg = tune_cfg(
        "trials=2", "train.epochs=5", "space.patience=[0]", "pruner=threshold", "prune_below=1.0", "pruner_warmup=1"
    )
    with pytest.raises(BinsightError, match="no trial completed"):
        run_study(cfg, split, tmp_path / "t", show_progress=False)
    table = rows(tmp_path / "t")
    assert [r["state"] for r in table] == ["PRUNED", "PRUNED"]
    for r in table:
        metrics = list(csv.DictReader((tmp_path / "t" / "trials" / r["trial"] / "metrics.csv").open()))
        assert len(metrics) == 2 < 5  # warmup epoch 1, pruned after epoch 2
        assert r["epochs"] == "2"
        assert not (tmp_path / "t" / "trials" / r["trial"] / "artifact").exists()


def test_keep_best_empties_the_other_trials(split, tmp_path):
    cfg = tune_cfg("trials=2", "train.epochs=1", "keep=best", "pruner=none")
    summary = run_study(cfg, split, tmp_path / "t", show_progress=False)
    best = str(summary["best_trial"])
    for folder in (tmp_path / "t" / "trials").iterdir():
        names = {p.name for p in folder.iterdir()}
        if folder.name == best:
            assert {"artifact", "weights", "metrics.csv"} <= names
        else:
            assert names == {"config.yaml", "metrics.csv"}
    assert summary["best_run_dir"] == str((tmp_path / "t" / "trials" / best).resolve())
    assert Path(summary["best_yaml"]).is_file()


def test_a_shared_study_refuses_another_search_space(split, tmp_path):
    journal = tmp_path / "shared.log"  # a journal path: how machines on a shared file system share a study
    cfg = tune_cfg("trials=1", "train.epochs=1", f"storage={journal}", "study_name=s")
    run_study(cfg, split, tmp_path / "a", show_progress=False)
    other = tune_cfg("trials=2", "train.epochs=1", f"storage={journal}", "study_name=s", "space.lr=[1e-4,1e-3]")
    with pytest.raises(BinsightError, match="another search space.*lr"):
        run_study(other, split, tmp_path / "b", show_progress=False)
    # the same config from a second run directory joins the study and adds its trial
    summary = run_study(
        tune_cfg("trials=2", "train.epochs=1", f"storage={journal}", "study_name=s"), split, tmp_path / "c"
    )
    assert summary["trials"] == 2
    assert (tmp_path / "c" / "trials" / "1").is_dir() and not (tmp_path / "c" / "trials" / "0").exists()


def test_an_existing_run_dir_needs_resume(split, tmp_path):
    cfg = tune_cfg("trials=1", "train.epochs=1")
    run_study(cfg, split, tmp_path / "t", show_progress=False)
    with pytest.raises(BinsightError, match="--resume"):
        run_study(cfg, split, tmp_path / "t", show_progress=False)


def test_space_suggests_train_keys_and_the_loss_picks_the_head():
    import optuna

    space = load_config(TuneConfig, None, ["space.loss=[ce,ordinal]", "space.img_size=[32]"]).space
    assert tuned_keys(space) == ["lr", "weight_decay", "batch_size", "freeze_backbone", "patience", "loss"]
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=1))
    seen = set()
    for _ in range(12):
        trial = study.ask()
        params = suggest(trial, space)
        cfg = apply_params(TrainConfig(), space, params)
        assert 1e-5 <= cfg.lr <= 3e-3 and 2 <= cfg.patience <= 5 and cfg.img_size == 32
        assert cfg.head == ("ordinal" if cfg.loss == "ordinal" else "softmax")
        seen.add(cfg.loss)
        study.tell(trial, 0.5)
    assert seen == {"ce", "ordinal"}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("space.lr=[1e-3,1e-4]", "low 0.001 is above high 0.0001"),
        ("space.weight_decay=[0,1e-2]", "must be > 0"),
        ("space.model=[resnet9]", "resnet9"),
        ("space.lr=[1e-5,1e-4,1e-3]", "is a range"),
        ("grace=10", "grace must be longer than heartbeat"),
        ("trials=0", "trials must be >= 1"),
    ],
)
def test_bad_space_and_settings_are_config_errors(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(TuneConfig, None, [override])


def test_pruner_warmup_counts_epochs_and_retried_failures_count_once():
    import optuna
    from optuna.trial import TrialState, create_trial

    pruner = make_pruner(load_config(TuneConfig, None, ["pruner=median", "pruner_warmup=2"]))
    assert isinstance(pruner, optuna.pruners.MedianPruner) and pruner._n_warmup_steps == 3  # epochs 1, 2 never
    study = optuna.create_study()
    study.add_trial(create_trial(state=TrialState.FAIL))
    study.add_trial(create_trial(state=TrialState.FAIL))
    study.add_trial(create_trial(state=TrialState.WAITING, system_attrs={"retry_history": [0]}))
    assert counted_trials(study.get_trials()) == 2  # trial 0 is replaced by its retry; trial 1 was not retried
