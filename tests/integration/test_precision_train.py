"""bf16 in training and feature caching: float32 master weights, a float32 loss, the decision logged, and bf16
features cached apart from float32 ones."""

from __future__ import annotations

import logging

import numpy as np
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

pytestmark = pytest.mark.usefixtures("one_thread")


def test_bf16_training_keeps_float32_weights_and_loss(split, tmp_path, caplog):
    overrides = [*TINY, f"data={split}", f"cache_dir={tmp_path / 'cache'}", "epochs=1", "amp=bf16"]
    cfg = load_config(TrainConfig, None, overrides)
    with caplog.at_level(logging.INFO, logger="binsight.precision"):
        result = train(cfg, out=tmp_path / "run", handle_signals=False)
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("precision of train for tiny_cnn: bf16") for m in messages), messages
    assert any(m.startswith("precision of eval for tiny_cnn: bf16") for m in messages), messages
    row = result.history[0]
    assert np.isfinite(row["train_loss"]) and np.isfinite(row["val_loss"])
    state = load_checkpoint(result.run_dir / "weights" / "last.pt")["model"]
    floats = [t.dtype for t in state.values() if t.is_floating_point()]
    assert floats and all(d == torch.float32 for d in floats), "master weights must stay float32"


def test_bf16_features_are_cached_apart_and_close_to_float32(split, tmp_path):
    data = load_split_data(split, 32, "letterbox", tmp_path / "cache")
    torch.manual_seed(0)
    model = create_model("tiny_cnn", 3)
    args = dict(mean=[0.5] * 3, std=[0.25] * 3, device=torch.device("cpu"), cache_dir=tmp_path / "cache")
    fp32, built32 = cached_features(model, "tiny_cnn", data.train, amp="off", **args)
    bf16, built16 = cached_features(model, "tiny_cnn", data.train, amp="bf16", **args)
    assert built32 and built16, "bf16 features must not be served from the float32 entry"
    assert bf16.dtype == np.float32 and not np.array_equal(fp32, bf16)
    # Pooled ReLU features: bf16 rounding (2^-9 relative per step) stays within a few per cent of their scale.
    assert np.abs(fp32 - bf16).max() <= 0.05 * max(1e-6, float(np.abs(fp32).max()))
    again, built_again = cached_features(model, "tiny_cnn", data.train, amp="auto", **args)
    assert not built_again and np.array_equal(again, fp32)  # auto: float32 for tiny_cnn, the same entry
