"""Training data: a split folder's train/val manifests, decoded through the cache, as batches of indices.

The data lives in memory-mapped uint8 arrays, so batches are gathered by fancy indexing in the training
process; there are no DataLoader workers to seed or to restart on resume. The order of an epoch is drawn
from one seeded ``torch.Generator`` (a plain permutation, or a class-balanced ``WeightedRandomSampler``),
whose state at the start of each epoch goes into the checkpoint so a resumed run replays the same order.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from binsight.data.cache import DecodedImages, build_decode_cache
from binsight.errors import DataError

log = logging.getLogger(__name__)


@dataclass
class SplitData:
    """The decoded train and val splits of a split folder.

    Attributes:
        split_dir: the split folder.
        classes: label values (item counts) in class-index order; class i stands for ``classes[i]`` items.
        train: decoded training images.
        val: decoded validation images.
        train_targets: (N,) class indices of ``train``.
        val_targets: (M,) class indices of ``val``.
        data_hash: manifest hash of the training rows (the artifact's ``training_data_hash``).
        train_soft_targets: (N, K) a teacher's class probabilities for ``train`` (distillation), or None.
    """

    split_dir: Path
    classes: list[int]
    train: DecodedImages
    val: DecodedImages
    train_targets: np.ndarray
    val_targets: np.ndarray
    data_hash: str
    train_soft_targets: np.ndarray | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def class_labels(self) -> list[str]:
        return [str(c) for c in self.classes]

    def class_counts(self) -> list[int]:
        """Training images per class, in class-index order."""
        return [int(c) for c in np.bincount(self.train_targets, minlength=self.num_classes)]


def split_classes(split_dir: Path, rows: dict[str, Any]) -> list[int]:
    """The classes of a split: ``split_summary.json``'s ``classes`` when present, else the labels seen."""
    summary = Path(split_dir) / "split_summary.json"
    if summary.is_file():
        try:
            classes = json.loads(summary.read_text(encoding="utf-8")).get("classes")
            if classes:
                return sorted(int(c) for c in classes)
        except (OSError, ValueError, TypeError):
            log.warning("%s is unreadable; taking the classes from the manifests", summary)
    return sorted({int(r.label) for part in rows.values() for r in part})


def load_split_data(
    split_dir: str | Path, size: int, resize: str, cache_dir: str | Path = "", workers: int = 0
) -> SplitData:
    """Read a split folder and decode its train and val images through the decode cache.

    Raises:
        DataError: the folder is not a split, the train or val manifest is empty, a label is not one of the
            split's classes, or images cannot be read.
    """
    from binsight.data.manifest import load_split, manifest_hash

    split_dir = Path(split_dir)
    rows = load_split(split_dir)
    for name in ("train", "val"):
        if not rows[name]:
            raise DataError(
                f"{split_dir / (name + '.csv')} has no rows; training needs train and val images "
                "(make a split with a val fraction > 0: `binsight data split --val 0.1`)"
            )
    classes = split_classes(split_dir, rows)
    if len(classes) < 2:
        raise DataError(f"split {split_dir} has {len(classes)} class(es) {classes}; training needs at least 2")
    index = {c: i for i, c in enumerate(classes)}
    targets = {}
    for name in ("train", "val"):
        bad = sorted({r.label for r in rows[name] if r.label not in index})
        if bad:
            raise DataError(f"{split_dir / (name + '.csv')} has labels {bad} outside the split's classes {classes}")
        targets[name] = np.array([index[r.label] for r in rows[name]], dtype=np.int64)
    decoded = {
        name: build_decode_cache(rows[name], size, resize, cache_dir, workers=workers, desc=f"decode {name}")
        for name in ("train", "val")
    }
    return SplitData(
        split_dir=split_dir,
        classes=classes,
        train=decoded["train"],
        val=decoded["val"],
        train_targets=targets["train"],
        val_targets=targets["val"],
        data_hash=manifest_hash(rows["train"]),
    )


def balanced_weights(targets: np.ndarray, num_classes: int) -> torch.Tensor:
    """Per-sample weights 1 / (images of its class), so every class is drawn equally often."""
    counts = np.bincount(targets, minlength=num_classes).astype(np.float64)
    return torch.as_tensor(1.0 / counts[targets], dtype=torch.double)


def epoch_order(n: int, generator: torch.Generator, weights: torch.Tensor | None = None) -> torch.Tensor:
    """The sample order of one epoch: a permutation, or ``n`` draws with replacement by ``weights``."""
    if weights is None:
        return torch.randperm(n, generator=generator)
    from torch.utils.data import WeightedRandomSampler

    draws = cast(Sequence[float], weights)  # the sampler takes a tensor as it is
    sampler = WeightedRandomSampler(draws, num_samples=n, replacement=True, generator=generator)
    return torch.tensor(list(iter(sampler)), dtype=torch.long)


def batch_slices(order: torch.Tensor, batch_size: int, max_batches: int = 0) -> list[torch.Tensor]:
    """Cut ``order`` into batches; a trailing batch of one image is dropped (BatchNorm cannot train on it)."""
    batches = list(order.split(batch_size))  # type: ignore[no-untyped-call]
    if len(batches) > 1 and batches[-1].numel() == 1:
        batches.pop()
    if max_batches > 0:
        batches = batches[:max_batches]
    return batches


def gather(array: np.ndarray, idx: torch.Tensor) -> torch.Tensor:
    """Rows ``idx`` of a (memory-mapped) array as a tensor, in ``idx`` order."""
    return torch.from_numpy(np.ascontiguousarray(array[idx.numpy()]))


def sequential_batches(n: int, batch_size: int) -> Iterator[torch.Tensor]:
    """Index batches 0..n-1 in order (evaluation)."""
    yield from torch.arange(n).split(batch_size)  # type: ignore[no-untyped-call]
