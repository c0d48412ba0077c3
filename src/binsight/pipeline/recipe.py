"""The pipeline's training recipe: the ``train`` section starts from a shipped recipe chosen by the data.

``train_recipe: auto`` means ``configs/abid-fast.yaml`` (head only on cached features: minutes) when the pipeline
generates SynthBins, and ``configs/abid.yaml`` (binsight's fine-tuned real-photo recipe) when ``data`` names real
photos. Any other value is a shipped config name or a YAML path. Keys in the config's ``train:`` section and
``train.KEY=VALUE`` overrides then apply on top of the recipe.
"""

from __future__ import annotations

from pathlib import Path

from binsight.config import ConfigError, PipelineConfig, load_config, read_yaml
from binsight.config.shipped import resolve_config

GENERATED_DATA_RECIPE = "abid-fast"
REAL_PHOTO_RECIPE = "abid"


def recipe_for(cfg: PipelineConfig) -> str:
    """The recipe ``cfg.train`` starts from (``train_recipe`` with ``auto`` resolved by ``data``)."""
    if cfg.train_recipe != "auto":
        return cfg.train_recipe
    return REAL_PHOTO_RECIPE if cfg.data else GENERATED_DATA_RECIPE


def load_pipeline_config(path: str | Path, overrides: list[str]) -> PipelineConfig:
    """A new pipeline run's config: the recipe's training keys, then the file's, then the overrides.

    Raises:
        ConfigError: an unknown recipe, or a bad key or value anywhere.
    """
    first = load_config(PipelineConfig, path, overrides)
    try:
        recipe = read_yaml(resolve_config(recipe_for(first)))
    except ConfigError as err:
        raise ConfigError(f"train_recipe={first.train_recipe}: {err}") from err
    recipe.pop("name", None)  # the stage names its run folder
    return load_config(PipelineConfig, path, overrides, base={"train": recipe})
