"""Plots written into run directories: confusion matrices and training curves.

matplotlib is imported inside each function (with the non-interactive Agg backend) so importing this module
stays cheap and works without a display.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> Path:
    """Save ``fig`` atomically (temp file + rename) and close it."""
    from binsight.utils.io import atomic_write_with

    path = Path(path)
    fmt = path.suffix.lstrip(".") or "png"
    # Fast PNG compression: the default level spends seconds per figure for a few percent of size.
    extra = {"pil_kwargs": {"compress_level": 1}} if fmt == "png" else {}
    atomic_write_with(path, lambda f: fig.savefig(f, format=fmt, dpi=110, bbox_inches="tight", **extra))
    _pyplot().close(fig)
    return path


def plot_confusion_matrix(
    cm: np.ndarray | Sequence[Sequence[int]],
    class_labels: Sequence[str],
    path: str | Path,
    normalize: bool = False,
    title: str | None = None,
) -> Path:
    """Draw a confusion matrix (rows true, columns predicted) as an annotated heat map.

    Args:
        cm: (K, K) counts.
        class_labels: K tick labels.
        path: output image file (format from its suffix, PNG by default).
        normalize: show each row as shares of its true class (rows with no samples stay 0).
        title: figure title; a default names the variant.

    Returns:
        ``path``.
    """
    plt = _pyplot()
    cm = np.asarray(cm, dtype=np.float64)
    if normalize:
        rows = cm.sum(axis=1, keepdims=True)
        values = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    else:
        values = cm
    k = cm.shape[0]
    size = max(3.5, 0.6 * k + 2)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    im = ax.imshow(values, cmap="Blues", vmin=0, vmax=1 if normalize else max(1.0, values.max()))
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(k), labels=list(class_labels))
    ax.set_yticks(range(k), labels=list(class_labels))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or ("confusion matrix (row-normalized)" if normalize else "confusion matrix"))
    threshold = (1.0 if normalize else max(1.0, values.max())) / 2
    for i in range(k):
        for j in range(k):
            text = f"{values[i, j]:.2f}" if normalize else f"{int(values[i, j])}"
            color = "white" if values[i, j] > threshold else "black"
            ax.text(j, i, text, ha="center", va="center", color=color, fontsize=8)
    return _save(fig, path)


def _column(rows: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """(epochs, values) of ``key`` for the rows where it is present and numeric."""
    xs, ys = [], []
    for i, row in enumerate(rows):
        value = row.get(key)
        if value in (None, ""):
            continue
        try:
            y = float(value)
            x = float(row.get("epoch", i + 1))
        except (TypeError, ValueError):
            continue
        xs.append(x)
        ys.append(y)
    return xs, ys


def plot_curves(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """Draw training curves from ``metrics.csv`` rows: loss, accuracy / macro-F1, learning rate.

    Args:
        rows: one dict per epoch with any of ``epoch, train_loss, val_loss, train_acc, val_acc,
            val_macro_f1, lr`` (strings from ``csv.DictReader`` are fine; missing values are skipped).
        path: output image file.

    Returns:
        ``path``.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    panels = [
        ("loss", ["train_loss", "val_loss"]),
        ("accuracy / macro-F1", ["train_acc", "val_acc", "val_macro_f1"]),
        ("learning rate", ["lr"]),
    ]
    for ax, (title, keys) in zip(axes, panels, strict=True):
        drawn = False
        for key in keys:
            xs, ys = _column(rows, key)
            if xs:
                ax.plot(xs, ys, marker="o", markersize=3, label=key)
                drawn = True
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if drawn:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    return _save(fig, path)
