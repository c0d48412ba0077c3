"""Train augmentations: deterministic under the seed, batched, and never cutting items out of the frame."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from binsight.data.transforms import TrainPreset, normalize_uint8, train_transform
from binsight.training.data import balanced_weights, batch_slices, epoch_order


def _batch(n: int = 6, size: int = 32) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(0).integers(0, 256, (n, size, size, 3), dtype=np.uint8))


@pytest.mark.parametrize("level", ["light", "strong"])
def test_deterministic_under_the_seed(level):
    t = train_transform(TrainPreset(level))
    a = t(_batch(), torch.Generator().manual_seed(5))
    b = t(_batch(), torch.Generator().manual_seed(5))
    c = t(_batch(), torch.Generator().manual_seed(6))
    assert a.shape == (6, 3, 32, 32) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_none_is_plain_normalisation():
    preset = TrainPreset("none", mean=[0.5, 0.4, 0.3], std=[0.2, 0.2, 0.2])
    x = _batch()
    g = torch.Generator().manual_seed(0)
    assert torch.equal(train_transform(preset)(x, g), normalize_uint8(x, preset.mean, preset.std))
    assert torch.equal(g.get_state(), torch.Generator().manual_seed(0).get_state()), "none must not draw randomness"


@pytest.mark.parametrize("level", ["light", "strong"])
@pytest.mark.parametrize("corner", [(0, 0), (0, 29), (29, 0), (29, 29)])
def test_rotation_and_zoom_never_cut_a_corner_item_off(corner, level):
    # An item in the very corner of the frame leaves it under a rotation about the centre unless the image is
    # shrunk enough to keep its corners in. Its brightness "mass" then only scales with the shrink's area.
    import math

    from binsight.data.transforms import _LEVELS, _augment

    params = {**_LEVELS[level], "jitter": 0.0, "blur_p": 0.0, "erase_p": 0.0}  # geometry only
    mean, std = [0.5] * 3, [0.5] * 3
    img = torch.full((64, 32, 32, 3), 127, dtype=torch.uint8)
    y, x = corner
    img[:, y : y + 3, x : x + 3] = 255
    x_in = normalize_uint8(img, mean, std)
    out = _augment(x_in.clone(), torch.Generator().manual_seed(0), params, mean, std)
    ratio = out.clamp(min=0).sum(dim=(1, 2, 3)) / x_in.clamp(min=0).sum(dim=(1, 2, 3))
    rad = math.radians(params["degrees"])
    smallest_shrink = ((1 - params["zoom_out"]) / (math.cos(rad) + math.sin(rad))) ** 2
    assert ratio.min() >= 0.95 * smallest_shrink, f"corner item partly cut off: kept {ratio.min():.2f} of it"


def test_balanced_sampler_is_seeded_and_balances():
    targets = np.array([0] * 40 + [1] * 8 + [2] * 4)
    w = balanced_weights(targets, 3)
    a = epoch_order(len(targets), torch.Generator().manual_seed(3), w)
    b = epoch_order(len(targets), torch.Generator().manual_seed(3), w)
    assert torch.equal(a, b)
    counts = np.bincount(
        targets[np.concatenate([epoch_order(52, torch.Generator().manual_seed(s), w) for s in range(20)])]
    )
    assert counts.min() / counts.max() > 0.8, f"classes not balanced: {counts}"


def test_batches_drop_a_trailing_single_image_and_cap():
    order = torch.arange(9)
    assert [len(b) for b in batch_slices(order, 4)] == [4, 4]
    assert [len(b) for b in batch_slices(torch.arange(10), 4)] == [4, 4, 2]
    assert len(batch_slices(torch.arange(100), 4, max_batches=3)) == 3
