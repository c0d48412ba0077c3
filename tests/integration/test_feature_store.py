"""The per-image feature store: a manifest whose images were featurised for another manifest reuses them."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from binsight.data.cache import build_decode_cache
from binsight.data.manifest import load_split
from binsight.models import create_model
from binsight.training import features as features_module
from binsight.training.features import cached_features, compute_features

# ``split``: the default tiny split, from tests/integration/conftest.py; ``one_thread`` from tests/conftest.py.
pytestmark = pytest.mark.usefixtures("one_thread")


def test_overlapping_manifests_compute_only_new_images(split, tmp_path, monkeypatch):
    rows = load_split(split)
    pool = rows["train"] + rows["val"]
    first, second = pool[: len(pool) * 2 // 3], pool[len(pool) // 3 :]  # a third of the rows in common
    cache = tmp_path / "cache"
    torch.manual_seed(0)
    model = create_model("tiny_cnn", 3)
    args = dict(mean=[0.5] * 3, std=[0.25] * 3, device=torch.device("cpu"), cache_dir=cache)
    computed = []

    def counting(model, images, *a, **k):
        computed.append(len(images))
        return compute_features(model, images, *a, **k)

    monkeypatch.setattr(features_module, "compute_features", counting)
    dec_first = build_decode_cache(first, 32, "letterbox", cache)
    dec_second = build_decode_cache(second, 32, "letterbox", cache)
    feats_first, built = cached_features(model, "tiny_cnn", dec_first, **args)
    assert built and computed == [len(first)]
    feats_second, built = cached_features(model, "tiny_cnn", dec_second, **args)
    overlap = len({r.sha256 for r in first} & {r.sha256 for r in second})
    assert overlap > 0 and built and computed[1] == len(second) - overlap
    # Reused rows are the very same features, and new rows equal a direct computation.
    direct = compute_features(model, dec_second.images, [0.5] * 3, [0.25] * 3, torch.device("cpu"))
    torch.testing.assert_close(torch.from_numpy(feats_second), torch.from_numpy(direct))
    by_sha = dict(zip(dec_first.sha256, feats_first, strict=True))
    for sha, row in zip(dec_second.sha256, feats_second, strict=True):
        if sha in by_sha:
            assert (row == by_sha[sha]).all()
    # A third manifest made only of known images computes nothing; flipped features are another store.
    cached_features(model, "tiny_cnn", build_decode_cache(pool[:5], 32, "letterbox", cache), **args)
    assert len(computed) == 2
    cached_features(model, "tiny_cnn", build_decode_cache(pool[:5], 32, "letterbox", cache), flip=True, **args)
    assert computed[-1] == 5


def test_bf16_rows_are_a_store_of_their_own_and_float32_keys_are_unchanged(split, tmp_path, monkeypatch):
    rows = load_split(split)["train"]
    cache = tmp_path / "cache"
    torch.manual_seed(0)
    model = create_model("tiny_cnn", 3)
    args = dict(mean=[0.5] * 3, std=[0.25] * 3, device=torch.device("cpu"), cache_dir=cache)
    computed = []

    def counting(model, images, *a, **k):
        computed.append(len(images))
        return compute_features(model, images, *a, **k)

    monkeypatch.setattr(features_module, "compute_features", counting)
    whole = build_decode_cache(rows, 32, "letterbox", cache)
    fp32, _ = cached_features(model, "tiny_cnn", whole, amp="off", **args)
    subset = build_decode_cache(rows[:5], 32, "letterbox", cache)
    bf16, built = cached_features(model, "tiny_cnn", subset, amp="bf16", **args)
    assert built and computed == [len(rows), 5], "bf16 rows must not come from the float32 store"
    assert not (bf16 == fp32[:5]).all()
    cached_features(model, "tiny_cnn", build_decode_cache(rows[1:4], 32, "letterbox", cache), amp="bf16", **args)
    assert len(computed) == 2  # known bf16 rows are reused
    # A float32 store keeps the key it had before precisions were keyed, so existing stores stay valid.
    layout = {
        "format": features_module.FEATURE_FORMAT,
        "size": whole.size,
        "resize": whole.resize,
        "model": "tiny_cnn",
        "weights": features_module.weights_digest(model.backbone),
        "mean": [0.5] * 3,
        "std": [0.25] * 3,
        "flip": False,
    }
    name = hashlib.sha256(json.dumps(layout).encode()).hexdigest()[:24]
    stores = {p.name for p in (cache / "features" / "by-image").iterdir()}
    assert name in stores and len(stores) == 2
