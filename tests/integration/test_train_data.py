"""Split folders as training data: classes, decode-cache reuse across runs, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from binsight.data import cache
from binsight.data.manifest import read_manifest, write_manifest
from binsight.errors import DataError
from binsight.training.data import load_split_data
from tests.integration.train_helpers import make_split


@pytest.fixture
def split(tmp_path):
    return make_split(tmp_path / "data", n_train=6, n_val=3, n_test=3)


def test_second_load_does_not_decode(split, tmp_path, monkeypatch):
    calls = []
    real = cache._decode_one
    monkeypatch.setattr(cache, "_decode_one", lambda *a: calls.append(a[0]) or real(*a))
    first = load_split_data(split, 32, "letterbox", tmp_path / "cache")
    assert len(calls) == 9 and first.train.built and first.val.built
    second = load_split_data(split, 32, "letterbox", tmp_path / "cache")
    assert len(calls) == 9, "the second run decoded images again"
    assert not second.train.built and second.train.folder == first.train.folder
    assert second.classes == [1, 2, 3] and second.train_targets.tolist() == [0, 1, 2, 0, 1, 2]
    assert load_split_data(split, 48, "letterbox", tmp_path / "cache").train.folder != first.train.folder


def test_classes_come_from_the_split_summary(split, tmp_path):
    (split / "split_summary.json").write_text(json.dumps({"classes": [1, 2, 3, 4, 5]}))
    data = load_split_data(split, 32, "letterbox", tmp_path / "cache")
    assert data.classes == [1, 2, 3, 4, 5] and data.class_counts() == [2, 2, 2, 0, 0]


def test_empty_val_and_foreign_labels_are_reported(split, tmp_path):
    (split / "split_summary.json").write_text(json.dumps({"classes": [1, 2]}))
    with pytest.raises(DataError, match=r"labels \[3\] outside the split's classes \[1, 2\]"):
        load_split_data(split, 32, "letterbox", tmp_path / "cache")
    (split / "split_summary.json").unlink()
    write_manifest(split / "val.csv", [])
    with pytest.raises(DataError, match="val.csv has no rows"):
        load_split_data(split, 32, "letterbox", tmp_path / "cache")
    assert read_manifest(split / "train.csv")


def test_default_config_file_documents_every_key():
    import dataclasses
    from pathlib import Path

    import yaml

    from binsight.config import load_config
    from binsight.config.schemas import TrainConfig

    path = Path(__file__).resolve().parents[2] / "configs" / "train-default.yaml"
    keys = list(yaml.safe_load(path.read_text()))
    assert sorted(keys) == sorted(f.name for f in dataclasses.fields(TrainConfig)), "file and TrainConfig differ"
    assert load_config(TrainConfig, path) == TrainConfig(), "train-default.yaml must hold the library defaults"
    commented = {line.split(":")[0] for line in path.read_text().splitlines() if "#" in line and ":" in line}
    assert set(keys) <= commented, f"keys without a comment: {set(keys) - commented}"


def test_train_defaults_are_the_recommended_real_photo_recipe():
    import dataclasses

    from binsight.config import load_config
    from binsight.config.schemas import TrainConfig

    recipe = load_config(TrainConfig, Path(__file__).resolve().parents[2] / "configs" / "abid.yaml")
    defaults = TrainConfig()
    # The run name and the precision (a property of the machine, not of the recipe) may differ, and the library
    # defaults skip the SynthBins pre-training: no call starts an 11-minute build unasked.
    differ = {
        f.name
        for f in dataclasses.fields(TrainConfig)
        if f.name not in ("name", "amp", "loss", "synth_pretrain")
        and getattr(recipe, f.name) != getattr(defaults, f.name)
    }
    assert recipe.synth_pretrain == 3 and defaults.synth_pretrain == 0
    assert not differ, f"binsight train's defaults differ from configs/abid.yaml in {sorted(differ)}"
    assert defaults.loss_kind == recipe.loss_kind == "ordinal"
