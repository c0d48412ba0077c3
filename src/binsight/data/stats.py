"""Describe a dataset or a split: class counts, sample photos per class and image sizes, as PNGs and JSON.

Outputs in the ``out`` folder:

- ``class_distribution.png``: images per class (grouped bars per split when given a split folder);
- ``samples.png``: up to six photos per class, one labelled row per class, chosen deterministically
  from ``seed``;
- ``image_sizes.png``: width against height of every image, coloured by class;
- ``stats.json``: the counts, size statistics, problem files and the PNG paths.

Plots use matplotlib's Agg canvas directly (no pyplot global state), imported only when needed.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from binsight.data.abid import Problem, default_workers, read_dataset, threaded_map
from binsight.data.manifest import SPLITS, is_split_dir, load_split
from binsight.errors import DataError

SAMPLES_PER_CLASS = 6
THUMB = 160


@dataclass
class ImageEntry:
    """One image being described: its label, the split it belongs to (``"all"`` outside a split) and size."""

    path: Path
    label: int
    split: str
    width: int | None = None
    height: int | None = None


def compute_stats(src: Path, out: Path, seed: int = 0, show_progress: bool = True) -> dict[str, Any]:
    """Write the plots and ``stats.json`` for ``src`` into ``out`` and return the summary.

    Args:
        src: Dataset root (ABID layout), labels CSV, or a split folder (``train.csv``/``val.csv``/``test.csv``).
        out: Output folder (created).
        seed: Picks the sample photos; the same seed gives the same grid.
        show_progress: Show a progress bar while images are read.

    Returns:
        The content of ``stats.json``; ``plots`` maps each plot name to its PNG path.

    Raises:
        DataError: ``src`` cannot be read or holds no usable image.
    """
    from binsight.utils.io import atomic_write_json

    src, out = Path(src), Path(out)
    problems: list[Problem] = []
    if is_split_dir(src):
        kind = "split"
        items = [ImageEntry(r.path, r.label, name) for name, rows in load_split(src).items() for r in rows]
        items = _read_sizes(items, problems, show_progress)
    else:
        scan = read_dataset(src, check_images=True, show_progress=show_progress)
        kind, problems = scan.kind, scan.problems
        items = [ImageEntry(r.image_path, r.expected_quantity, "all", r.width, r.height) for r in scan.records]
    out.mkdir(parents=True, exist_ok=True)
    if not items:
        raise DataError(f"no usable image in {src} ({len(problems)} problems); nothing to describe")

    labels = sorted({it.label for it in items})
    splits = [name for name in SPLITS if any(it.split == name for it in items)] if kind == "split" else []
    chosen = choose_samples(items, labels, seed)
    plots = {
        "class_distribution": str(_plot_distribution(items, labels, splits, out / "class_distribution.png")),
        "samples": str(_plot_samples(items, labels, chosen, seed, out / "samples.png")),
        "image_sizes": str(_plot_sizes(items, labels, out / "image_sizes.png")),
    }
    counts = Counter(it.label for it in items)
    summary: dict[str, Any] = {
        "source": str(src.resolve()),
        "source_kind": kind,
        "seed": seed,
        "images": len(items),
        "counts": {str(k): counts[k] for k in labels},
    }
    if splits:
        summary["counts_by_split"] = {
            name: {str(k): sum(1 for it in items if it.split == name and it.label == k) for k in labels}
            for name in splits
        }
    summary["image_sizes"] = _size_stats(items)
    summary["problems"] = {
        "total": len(problems),
        "by_kind": dict(Counter(p.kind for p in problems)),
        "files": [{"path": str(p.path), "kind": p.kind, "detail": p.detail} for p in problems],
    }
    summary["corrupt"] = [str(p.path) for p in problems if p.kind == "corrupt_image"]
    summary["samples"] = {str(k): [str(it.path) for it in v] for k, v in chosen.items()}
    summary["plots"] = plots
    summary["figures"] = list(plots.values())
    atomic_write_json(out / "stats.json", summary)
    return summary


def _read_sizes(items: list[ImageEntry], problems: list[Problem], show_progress: bool) -> list[ImageEntry]:
    """Fill in image sizes from file headers; unreadable files become problems and are left out."""
    from PIL import Image

    def size(item: ImageEntry) -> tuple[int, int]:
        with Image.open(item.path) as im:
            return im.size

    kept = []
    for item, result in threaded_map(
        size, items, workers=default_workers(), desc="read sizes", show_progress=show_progress
    ):
        if isinstance(result, Exception):
            kind = "missing_image" if isinstance(result, FileNotFoundError) else "corrupt_image"
            problems.append(Problem(item.path, kind, f"{type(result).__name__}: {result}"))
            continue
        item.width, item.height = result
        kept.append(item)
    return kept


def _size_stats(items: list[ImageEntry]) -> dict[str, Any]:
    sized = [it for it in items if it.width and it.height]
    stats: dict[str, Any] = {"count": len(sized)}
    for dim in ("width", "height"):
        values = [getattr(it, dim) for it in sized]
        stats[dim] = (
            {"min": min(values), "max": max(values), "mean": round(sum(values) / len(values), 2)} if values else None
        )
    return stats


def _new_figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> Path:
    from binsight.utils.io import atomic_write_with

    return atomic_write_with(path, lambda f: fig.savefig(f, format="png"))


def _plot_distribution(items: list[ImageEntry], labels: list[int], splits: list[str], path: Path) -> Path:
    fig = _new_figure(max(5.0, 1.0 + 0.9 * len(labels)), 4.0)
    ax = fig.add_subplot()
    groups = splits or ["all"]
    width = 0.8 / len(groups)
    for i, name in enumerate(groups):
        heights = [sum(1 for it in items if it.label == k and (not splits or it.split == name)) for k in labels]
        xs = [j + (i - (len(groups) - 1) / 2) * width for j in range(len(labels))]
        bars = ax.bar(xs, heights, width=width, label=name)
        ax.bar_label(bars, fontsize=7)
    ax.set_xticks(range(len(labels)), [str(k) for k in labels])
    ax.set_xlabel("items in bin (class)")
    ax.set_ylabel("images")
    ax.set_title(f"Class distribution ({len(items)} images)")
    if splits:
        ax.legend()
    fig.tight_layout()
    return _save(fig, path)


def choose_samples(
    items: list[ImageEntry], labels: list[int], seed: int, k: int = SAMPLES_PER_CLASS
) -> dict[int, list[ImageEntry]]:
    """Up to ``k`` items per label, the same for the same seed whatever the input order."""
    chosen = {}
    for label in labels:
        pool = sorted((it for it in items if it.label == label), key=lambda it: str(it.path))
        chosen[label] = random.Random(f"binsight-stats:{seed}:{label}").sample(pool, min(k, len(pool)))
    return chosen


def _thumbnail(path: Path):
    """A small RGB image of ``path``, or None when it cannot be decoded."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.draft("RGB", (THUMB, THUMB))
            im = im.convert("RGB")
            im.thumbnail((THUMB, THUMB))
            return im
    except Exception:  # a sample that fails to decode is shown as an empty cell, not a crash
        return None


def _plot_samples(
    items: list[ImageEntry], labels: list[int], chosen: dict[int, list[ImageEntry]], seed: int, path: Path
) -> Path:
    import numpy as np
    from PIL import Image

    # One mosaic drawn as a single image: much faster than an axes per thumbnail.
    cols, cell = SAMPLES_PER_CLASS, THUMB + 8
    mosaic = Image.new("RGB", (cols * cell, len(labels) * cell), "white")
    for row, label in enumerate(labels):
        for col, item in enumerate(chosen[label]):
            thumb = _thumbnail(item.path)
            if thumb is not None:
                x = col * cell + (cell - thumb.width) // 2
                y = row * cell + (cell - thumb.height) // 2
                mosaic.paste(thumb, (x, y))
    fig = _new_figure(1.6 * cols + 1.2, 1.6 * len(labels) + 0.6)
    ax = fig.add_subplot()
    ax.imshow(np.asarray(mosaic))
    ax.set_xticks([])
    counts = {label: sum(1 for it in items if it.label == label) for label in labels}
    ax.set_yticks(
        [row * cell + cell / 2 for row in range(len(labels))],
        [f"{label} items\n({counts[label]} images)" for label in labels],
        fontsize=8,
    )
    for side in ("top", "right", "bottom", "left"):
        ax.spines[side].set_visible(False)
    ax.set_title(f"Samples per class (seed {seed})")
    fig.tight_layout()
    return _save(fig, path)


def _plot_sizes(items: list[ImageEntry], labels: list[int], path: Path) -> Path:
    fig = _new_figure(6.0, 5.0)
    ax = fig.add_subplot()
    for label in labels:
        sized = [it for it in items if it.label == label and it.width]
        ax.scatter([it.width for it in sized], [it.height for it in sized], s=6, alpha=0.5, label=str(label))
    ax.set_xlabel("width (px)")
    ax.set_ylabel("height (px)")
    ax.set_title("Image sizes")
    ax.legend(title="class", fontsize=7, markerscale=2)
    fig.tight_layout()
    return _save(fig, path)
