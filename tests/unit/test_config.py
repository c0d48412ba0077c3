"""Config loading: YAML + key=value overrides, validation errors that name the key and allowed values."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from binsight.config import (
    ConfigError,
    PipelineConfig,
    SplitConfig,
    SynthConfig,
    TrainConfig,
    dump_yaml,
    from_dict,
    load_config,
)
from binsight.config.shipped import shipped_dir


def test_overrides_are_typed_and_nested(tmp_path: Path):
    cfg_file = tmp_path / "p.yaml"
    cfg_file.write_text("name: x\nsynth:\n  n: 10\n")
    cfg = load_config(PipelineConfig, cfg_file, ["synth.n=25", "train.lr=3e-4", "train.freeze_backbone=true"])
    assert cfg.name == "x"
    assert cfg.synth.n == 25
    assert cfg.train.lr == pytest.approx(3e-4)
    assert cfg.train.freeze_backbone is True
    assert cfg.synth.seed == SynthConfig().seed  # untouched keys keep their defaults


def test_a_partial_section_starts_from_the_fields_own_default(tmp_path: Path):
    from binsight.config.schemas import TuneConfig

    # A study's training config defaults to no augmentation (frozen trials then use the feature cache), unlike
    # TrainConfig's; giving part of the section must not bring the class defaults back for the rest.
    assert TuneConfig().train.augment == "none" and TrainConfig().augment == "light"
    cfg_file = tmp_path / "t.yaml"
    cfg_file.write_text("train:\n  epochs: 3\n")
    for cfg in (load_config(TuneConfig, cfg_file), load_config(TuneConfig, None, ["train.lr=1e-3"])):
        assert cfg.train.augment == "none", "a partial train section reset augment to TrainConfig's default"
    assert load_config(TuneConfig, cfg_file).train.epochs == 3
    assert load_config(TuneConfig, None, ["train.augment=light"]).train.augment == "light"
    assert load_config(PipelineConfig, None, ["tune.trials=2"]).tune.train.augment == "none"


def test_unknown_key_names_key_and_allowed_keys():
    with pytest.raises(ConfigError) as err:
        load_config(TrainConfig, None, ["epochz=3"])
    msg = str(err.value)
    assert "unknown key epochz" in msg and "did you mean epochs" in msg and "batch_size" in msg


def test_unknown_nested_key_has_dotted_name():
    with pytest.raises(ConfigError, match=r"unknown key train\.lrr"):
        from_dict(PipelineConfig, {"train": {"lrr": 1}})


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("epochs=abc", "epochs: expected an integer"),
        ("lr=fast", "lr: expected a number"),
        ("model=resnet9000", "model: 'resnet9000' is not allowed; expected one of 'efficientnet_lite0'"),
        ("freeze_backbone=maybe", "freeze_backbone: expected true or false"),
        ("epochs=0", "epochs must be >= 1"),
        (
            "loss=focal",
            "loss 'focal' is for the softmax head, and the head is 'ordinal' (the default): add head=softmax",
        ),
    ],
)
def test_wrong_types_and_ranges_are_rejected(override: str, fragment: str):
    with pytest.raises(ConfigError) as err:
        load_config(TrainConfig, None, [override])
    assert fragment in str(err.value)


def test_loss_auto_follows_the_head():
    assert load_config(TrainConfig, None, []).loss_kind == "ordinal"
    assert load_config(TrainConfig, None, ["head=softmax"]).loss_kind == "weighted_ce"
    assert load_config(TrainConfig, None, ["head=softmax", "loss=focal"]).loss_kind == "focal"
    with pytest.raises(ConfigError, match="loss 'ordinal' needs head 'ordinal'"):
        load_config(TrainConfig, None, ["head=softmax", "loss=ordinal"])


def test_bool_is_not_an_int():
    with pytest.raises(ConfigError, match="expected an integer"):
        from_dict(SynthConfig, {"n": True})


def test_split_fractions_validated():
    with pytest.raises(ConfigError, match="sum to less than 1"):
        from_dict(SplitConfig, {"val": 0.6, "test": 0.5})


def test_dump_round_trips(tmp_path: Path):
    cfg = load_config(PipelineConfig, None, ["synth.counts=[0,2,7]", "train.model=efficientnet_lite0"])
    text = dump_yaml(cfg)
    again = from_dict(PipelineConfig, yaml.safe_load(text))
    assert again == cfg
    assert again.synth.counts == [0, 2, 7]


def test_bad_yaml_file_is_a_config_error(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(TrainConfig, bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(TrainConfig, tmp_path / "missing.yaml")


def test_override_needs_equals():
    with pytest.raises(ConfigError, match="key=value"):
        load_config(TrainConfig, None, ["epochs"])


@pytest.mark.parametrize("path", sorted(shipped_dir().glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load_and_every_key_is_commented(path: Path):
    """Every shipped config validates against its schema, and every key line carries a comment."""
    data = yaml.safe_load(path.read_text())
    schema = PipelineConfig if "stages" in data else TrainConfig
    if schema is TrainConfig and "train" in data:
        from binsight.config import TuneConfig

        schema = TuneConfig
    from_dict(schema, data)
    for n, line in enumerate(path.read_text().splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or stripped.startswith("- "):
            continue
        if ":" in stripped:
            assert "#" in stripped, f"{path.name}:{n} key without a comment: {stripped}"
