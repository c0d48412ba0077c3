"""Frozen backbone: features computed once, cached by model and weights, and the head trained on them."""

from __future__ import annotations

import logging

import pytest
import torch

from binsight.config import load_config
from binsight.config.schemas import TrainConfig
from binsight.models import create_model
from binsight.training.checkpoint import load_checkpoint
from binsight.training.data import load_split_data
from binsight.training.features import cached_features
from binsight.training.run import train
from tests.integration.train_helpers import TINY

# ``split``: the default tiny split, from tests/integration/conftest.py; ``one_thread`` from tests/conftest.py.
pytestmark = pytest.mark.usefixtures("one_thread")


def test_feature_cache_keyed_by_weights(split, tmp_path):
    data = load_split_data(split, 32, "letterbox", tmp_path / "cache")
    torch.manual_seed(0)
    model = create_model("tiny_cnn", 3)
    args = dict(mean=[0.5] * 3, std=[0.25] * 3, device=torch.device("cpu"), cache_dir=tmp_path / "cache")
    feats, built = cached_features(model, "tiny_cnn", data.train, **args)
    assert built and feats.shape == (len(data.train), model.feature_dim)
    again, built_again = cached_features(model, "tiny_cnn", data.train, **args)
    assert not built_again
    assert (again == feats).all()
    torch.manual_seed(1)  # another random backbone must not reuse the first one's features
    other, built_other = cached_features(create_model("tiny_cnn", 3), "tiny_cnn", data.train, **args)
    assert built_other and not (other == feats).all()
    flipped, built_flip = cached_features(model, "tiny_cnn", data.train, flip=True, **args)
    assert built_flip and not (flipped == feats).all()


def test_frozen_backbone_trains_the_head_on_cached_features(split, tmp_path, caplog):
    overrides = [*TINY, f"data={split}", f"cache_dir={tmp_path / 'cache'}", "epochs=2", "lr=0.05"]
    cfg = load_config(TrainConfig, None, [*overrides, "freeze_backbone=true", "augment=none", "tta=true"])
    with caplog.at_level(logging.INFO):
        first = train(cfg, out=tmp_path / "a", handle_signals=False)
    assert sum("feature cache built" in r.getMessage() for r in caplog.records) == 3  # train, val, val flipped
    caplog.clear()
    with caplog.at_level(logging.INFO):
        train(cfg, out=tmp_path / "b", handle_signals=False)
    messages = [r.getMessage() for r in caplog.records]
    assert not any("feature cache built" in m for m in messages), "the second run recomputed the features"
    assert sum("feature cache hit" in m for m in messages) == 3

    torch.manual_seed(cfg.seed)
    initial = create_model("tiny_cnn", 3).state_dict()
    trained = load_checkpoint(first.run_dir / "weights" / "last.pt")["model"]
    for name, tensor in initial.items():
        if name.startswith("backbone."):
            assert torch.equal(tensor, trained[name]), f"frozen {name} changed"
    assert any(not torch.equal(initial[n], trained[n]) for n in initial if n.startswith("head.")), "head did not train"
    assert first.best_metrics["n"] == len(load_split_data(split, 32, "letterbox", tmp_path / "cache").val)


def test_a_thresholded_recipe_early_stops_on_its_thresholded_val_macro_f1(split, tmp_path):
    """decision=macro_f1: the val metrics (early stopping, best checkpoint, metrics.csv) are those of the
    decision the artifact makes, with per-class offsets fitted on val, not of the ordinal head's raw arg-max."""
    from binsight.data.manifest import read_manifest
    from binsight.evaluation.decision import apply_class_bias, fit_class_bias
    from binsight.evaluation.evaluate import predict_split
    from binsight.evaluation.metrics import classification_metrics
    from binsight.inference.predictor import Predictor

    overrides = [*TINY, f"data={split}", f"cache_dir={tmp_path / 'cache'}", "epochs=3", "lr=0.05"]
    thresholded = ["head=ordinal", "loss=ordinal", "freeze_backbone=true", "augment=none", "decision=macro_f1"]
    result = train(load_config(TrainConfig, None, [*overrides, *thresholded]), out=tmp_path / "t", handle_signals=False)

    best = result.best_metrics
    assert len(best["fitted_class_bias"]) == 3
    # Recompute the best checkpoint's val decision independently, through the served artifact in float32.
    predictor = Predictor(result.run_dir, backend="torch-fp32", threads=1)
    val = predict_split(predictor, read_manifest(split / "val.csv"), batch_size=8)
    probs = predictor.probabilities(val.raw, 1.0, [])
    bias = fit_class_bias(probs, val.y)
    assert best["fitted_class_bias"] == pytest.approx(bias.tolist())
    decided = classification_metrics(val.y, apply_class_bias(probs, bias).argmax(1), 3)
    plain = classification_metrics(val.y, probs.argmax(1), 3)
    assert best["macro_f1"] == pytest.approx(decided["macro_f1"])
    assert best["macro_f1"] >= plain["macro_f1"]
    rows = (result.run_dir / "metrics.csv").read_text().splitlines()[1:]
    assert max(float(r.split(",")[5]) for r in rows) == pytest.approx(best["macro_f1"])
