"""Tiny split folders for the training tests: coloured squares on a grey bin, the label = number of squares."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

from binsight.data.manifest import ManifestRow, write_manifest

CLASSES = (1, 2, 3)


def make_split(root: Path, n_train: int = 18, n_val: int = 6, n_test: int = 3, size: int = 40, seed: int = 0) -> Path:
    """Write PNG images and train/val/test manifests under ``root``; returns the split folder."""
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    split = root / "split"
    split.mkdir(parents=True, exist_ok=True)
    i = 0
    for name, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        rows = []
        for k in range(n):
            label = CLASSES[k % len(CLASSES)]
            img = Image.new("RGB", (size + rng.randint(0, 8), size), (120, 120, 120))
            draw = ImageDraw.Draw(img)
            for _ in range(label):
                x, y = rng.randint(0, size - 10), rng.randint(0, size - 10)
                draw.rectangle([x, y, x + 8, y + 8], fill=(rng.randint(0, 255), rng.randint(0, 255), 40))
            path = images / f"{i:04d}.png"
            img.save(path)
            i += 1
            rows.append(ManifestRow(path, label, hashlib.sha256(path.read_bytes()).hexdigest(), "test"))
        write_manifest(split / f"{name}.csv", rows)
    return split


# The train defaults are the real-photo recipe (frozen ImageNet Lite0, ordinal head); tests train a tiny CNN
# from scratch with a softmax head instead.
TINY = [
    "model=tiny_cnn",
    "weights=none",
    "head=softmax",
    "loss=ce",
    "freeze_backbone=false",
    "warmup_epochs=0",
    "decision=argmax",
    "img_size=32",
    "batch_size=4",
    "augment=light",
    "lr=0.01",
    "patience=0",
]
