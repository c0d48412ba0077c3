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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from binsight.data.abid import Problem, default_workers, read_dataset
from binsight.data.manifest import SPLITS, is_split_dir, load_split
from binsight.errors import DataError

SAMPLES_PER_CLASS = 6
THUMB = 160


@dataclass
class _Item:
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
        items = [_Item(r.path, r.label, name) for name, rows in load_split(src).items() for r in rows]
        items = _read_sizes(items, problems, show_progress)
    else:
        scan = read_dataset(src, check_images=True, show_progress=show_progress)
        kind, problems = scan.kind, scan.problems
        items = [_Item(r.image_path, r.expected_quantity, "all", r.width, r.height) for r in scan.records]
    out.mkdir(parents=True, exist_ok=True)
    if not items:
        raise DataError(f"no usable image in {src} ({len(problems)} problems); nothing to describe")

    labels = sorted({it.label for it in items})
    splits = [name for name in SPLITS if any(it.split == name for it in items)] if kind == "split" else []
    plots = {
        "class_distribution": str(_plot_distribution(items, labels, splits, out / "class_distribution.png")),
        "samples": str(_plot_samples(items, labels, seed, out / "samples.png")),
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
            | {"total": sum(1 for it in items if it.split == name)}
            for name in splits
        }
    summary["image_sizes"] = _size_stats(items)
    summary["problems"] = {
        "total": len(problems),
        "by_kind": dict(Counter(p.kind for p in problems)),
        "files": [{"path": str(p.path), "kind": p.kind, "detail": p.detail} for p in problems],
    }
    summary["corrupt"] = [str(p.path) for p in problems if p.kind == "corrupt_image"]
    summary["plots"] = plots
    atomic_write_json(out / "stats.json", summary)
    return summary


def _read_sizes(items: list[_Item], problems: list[Problem], show_progress: bool) -> list[_Item]:
    """Fill in image sizes from file headers; unreadable files become problems and are left out."""
    from PIL import Image

    from binsight.utils.progress import progress

    def size(item: _Item) -> tuple[_Item, Any]:
        try:
            with Image.open(item.path) as im:
                return item, im.size
        except Exception as exc:  # any failure to open means the manifest points at an unusable file
            return item, exc

    kept = []
    with ThreadPoolExecutor(max_workers=default_workers()) as pool:
        results = pool.map(size, items)
        if show_progress:
            results = progress(results, total=len(items), desc="read sizes", unit="img")
        for item, result in results:
            if isinstance(result, Exception):
                kind = "missing_image" if isinstance(result, FileNotFoundError) else "corrupt_image"
                problems.append(Problem(item.path, kind, f"{type(result).__name__}: {result}"))
                continue
            item.width, item.height = result
            kept.append(item)
    return kept


def _size_stats(items: list[_Item]) -> dict[str, Any]:
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


def _plot_distribution(items: list[_Item], labels: list[int], splits: list[str], path: Path) -> Path:
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


def _thumbnail(path: Path):
    """A small RGB array of the image, or None when it cannot be decoded."""
    import numpy as np
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.draft("RGB", (THUMB, THUMB))
            im = im.convert("RGB")
            im.thumbnail((THUMB, THUMB))
            return np.asarray(im)
    except Exception:  # a sample that fails to decode is shown as an empty cell, not a crash
        return None


def _plot_samples(items: list[_Item], labels: list[int], seed: int, path: Path) -> Path:
    cols = SAMPLES_PER_CLASS
    fig = _new_figure(1.6 * cols + 0.6, 1.6 * len(labels) + 0.4)
    for row, label in enumerate(labels):
        pool = sorted((it for it in items if it.label == label), key=lambda it: str(it.path))
        chosen = random.Random(f"binsight-stats:{seed}:{label}").sample(pool, min(cols, len(pool)))
        for col in range(cols):
            ax = fig.add_subplot(len(labels), cols, row * cols + col + 1)
            ax.set_xticks([])
            ax.set_yticks([])
            if col < len(chosen) and (thumb := _thumbnail(chosen[col].path)) is not None:
                ax.imshow(thumb)
            else:
                ax.set_frame_on(False)
            if col == 0:
                ax.set_ylabel(f"{label} items\n({len(pool)} images)", fontsize=8)
    fig.suptitle(f"Samples per class (seed {seed})")
    fig.tight_layout()
    return _save(fig, path)


def _plot_sizes(items: list[_Item], labels: list[int], path: Path) -> Path:
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
