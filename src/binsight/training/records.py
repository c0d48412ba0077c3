"""Records of a run: the per-epoch metrics table, running epoch sums, the best epoch so far, the fit result."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from binsight.utils.io import atomic_write_text

METRIC_COLUMNS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "val_macro_f1", "lr", "seconds"]


@dataclass
class FitResult:
    """What :meth:`Trainer.fit` returns.

    Attributes:
        history: one row per finished epoch (the ``metrics.csv`` columns).
        best_epoch: 1-based epoch of the best validation macro-F1.
        best_metrics: validation metrics of that epoch (``classification_metrics`` plus ``loss``).
        stopped_early: early stopping ended the run before ``epochs``.
    """

    history: list[dict[str, Any]]
    best_epoch: int
    best_metrics: dict[str, Any]
    stopped_early: bool


@dataclass
class EpochSums:
    """Running sums of the current epoch (checkpointed, so a mid-epoch resume reports the whole epoch)."""

    loss: float = 0.0
    correct: int = 0
    seen: int = 0
    seconds: float = 0.0


@dataclass
class BestSoFar:
    """Early-stopping state: the best epoch, its macro-F1 and metrics, and epochs since it."""

    epoch: int = 0
    f1: float = -math.inf
    metrics: dict[str, Any] = field(default_factory=dict)
    bad_epochs: int = 0


def write_metrics_csv(path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    """Write ``metrics.csv`` (one row per epoch) atomically."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=METRIC_COLUMNS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write_text(path, buf.getvalue())
