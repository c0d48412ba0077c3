"""A gallery of the most confident mistakes: the images worth looking at first after an evaluation."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from binsight.evaluation.plots import _pyplot, _save


@dataclass(frozen=True)
class Mistake:
    """One wrongly predicted image."""

    path: Path
    true_label: str
    predicted_label: str
    confidence: float


def plot_mistakes(mistakes: Sequence[Mistake], path: str | Path, max_items: int = 12, thumb: int = 160) -> Path:
    """Draw up to ``max_items`` mistakes, most confident first, as a grid of thumbnails.

    Each tile is titled ``true X / pred Y (conf)``. Unreadable files get an empty tile; an empty list gives
    a figure that says there were no mistakes, so the file always exists after an evaluation.

    Args:
        mistakes: wrongly predicted images (any order).
        path: output image file.
        max_items: number of tiles at most.
        thumb: thumbnail size in pixels (longer side).

    Returns:
        ``path``.
    """
    from PIL import Image

    plt = _pyplot()
    chosen = sorted(mistakes, key=lambda m: -m.confidence)[:max_items]
    if not chosen:
        fig, ax = plt.subplots(figsize=(4, 1.5))
        ax.axis("off")
        ax.text(0.5, 0.5, "no mistakes", ha="center", va="center", fontsize=12)
        return _save(fig, path)
    cols = min(4, len(chosen))
    rows = math.ceil(len(chosen) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, m in zip(axes.flat, chosen, strict=False):
        try:
            with Image.open(m.path) as img:
                img.draft("RGB", (thumb, thumb))  # JPEG: decode at reduced scale, much cheaper
                img = img.convert("RGB")
                img.thumbnail((thumb, thumb))
                ax.imshow(img)
        except Exception:  # a file that vanished or broke since prediction: keep the tile, say so
            ax.text(0.5, 0.5, "unreadable", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(f"true {m.true_label} / pred {m.predicted_label} ({m.confidence:.2f})", fontsize=9)
        ax.text(0, -0.04, m.path.name[:32], fontsize=7, transform=ax.transAxes, va="top")
    fig.suptitle("most confident mistakes", fontsize=11)
    fig.tight_layout()
    return _save(fig, path)
