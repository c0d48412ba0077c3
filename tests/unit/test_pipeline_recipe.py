"""The pipeline's train stage starts from a shipped recipe chosen by the data (``train_recipe: auto``)."""

from __future__ import annotations

import pytest

from binsight.config import ConfigError, TrainConfig, load_config
from binsight.pipeline.recipe import load_pipeline_config


def _recipe(name: str) -> TrainConfig:
    return load_config(TrainConfig, name)


def test_generated_data_trains_the_fast_head_only_recipe():
    cfg = load_pipeline_config("demo", [])
    fast = _recipe("abid-fast")
    assert cfg.train_recipe == "auto" and not cfg.data
    assert cfg.train.freeze_backbone and cfg.train.augment == "none"
    assert (cfg.train.lr, cfg.train.epochs, cfg.train.patience) == (fast.lr, fast.epochs, fast.patience)


def test_real_photos_train_binsights_recipe_and_the_section_overrides_it(tmp_path):
    cfg = load_pipeline_config("demo", [f"data={tmp_path}", "train.batch_size=16"])
    recipe = _recipe("abid")
    assert not cfg.train.freeze_backbone and cfg.train.augment == "light"
    assert (cfg.train.lr, cfg.train.epochs, cfg.train.amp) == (recipe.lr, recipe.epochs, recipe.amp)
    assert cfg.train.batch_size == 16
    assert cfg.train.name == TrainConfig().name  # the recipe's run name is not carried over


def test_a_named_recipe_or_file_replaces_auto(tmp_path):
    cfg = load_pipeline_config("demo", ["train_recipe=seed-baseline"])
    assert (cfg.train.optimizer, cfg.train.lr) == ("adam", _recipe("seed-baseline").lr)
    own = tmp_path / "mine.yaml"
    own.write_text("epochs: 4\nlr: 0.02\n")
    cfg = load_pipeline_config("demo", [f"train_recipe={own}", "train.epochs=1"])
    assert (cfg.train.lr, cfg.train.epochs) == (0.02, 1)


def test_an_unknown_recipe_is_refused_by_its_key():
    with pytest.raises(ConfigError, match=r"train_recipe=nope: config file nope does not exist"):
        load_pipeline_config("demo", ["train_recipe=nope"])
