"""Deterministic, stratified, leak-free train/val/test split of a dataset into manifests.

Rules:

- Images are grouped by the sha256 of their bytes; a group (all exact copies of one photo) is the unit
  that is assigned, so every copy lands in the same split and nothing leaks between splits.
- A group whose copies carry different labels is a *label conflict*: the copies with the majority label
  are kept (a tie keeps the smallest label), the others are dropped and listed in the summary.
- Groups whose label is not in ``classes`` are excluded and counted per label.
- Per class, groups are sorted by sha256 and shuffled with a generator seeded by ``(seed, class)``, so
  the split does not depend on file order or on which other classes are present. The first ``n_test``
  groups go to test, the next ``n_val`` to val, the rest to train, where for ``n`` groups
  ``n_val = floor(n * val + 0.5)`` (likewise ``n_test``), raised to 1 when ``n >= 3`` and the fraction is
  above 0, then lowered (the larger first, val on a tie) until train keeps at least one group.

Cross-validation (:func:`kfold_split`, :func:`write_kfold`) follows the same rules over the rows of existing
manifests: sha256 groups are the unit, per class they are sorted, shuffled by ``(seed, class)`` and dealt to
the k folds in turn, each class continuing where the previous one stopped: per class and in total, fold sizes
differ by at most one group.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from binsight.config.schemas import SplitConfig
from binsight.data.abid import Record, Scan, default_workers, read_dataset, threaded_map
from binsight.data.manifest import SPLITS, ManifestRow, load_split, write_manifest
from binsight.errors import DataError


def split_counts(n: int, val: float, test: float) -> tuple[int, int, int]:
    """Return ``(n_train, n_val, n_test)`` for a class of ``n`` groups (the rounding rule of the module)."""

    def share(fraction: float) -> int:
        k = math.floor(n * fraction + 0.5)
        return max(k, 1) if n >= 3 and fraction > 0 else k

    n_val, n_test = share(val), share(test)
    while n > 0 and n - n_val - n_test < 1:
        if n_val >= n_test and n_val > 0:
            n_val -= 1
        else:
            n_test -= 1
    return n - n_val - n_test, n_val, n_test


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """sha256 hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _hash_missing(records: list[Record], workers: int, show_progress: bool) -> None:
    todo = [r for r in records if not r.sha256]
    results = threaded_map(
        lambda r: sha256_file(r.image_path), todo, workers=workers, desc="hash images", show_progress=show_progress
    )
    for record, digest in results:
        if isinstance(digest, Exception):
            raise DataError(f"cannot read {record.image_path}: {digest}; check the file and its permissions")
        record.sha256 = digest


def _resolve_conflicts(groups: dict[str, list[Record]]) -> list[dict[str, Any]]:
    """Keep the majority label of each group in place; return one entry per conflicting group."""
    conflicts = []
    for sha in sorted(groups):
        members = groups[sha]
        labels = Counter(r.expected_quantity for r in members)
        if len(labels) < 2:
            continue
        kept = min(labels, key=lambda k: (-labels[k], k))
        dropped = [r for r in members if r.expected_quantity != kept]
        groups[sha] = [r for r in members if r.expected_quantity == kept]
        conflicts.append(
            {
                "sha256": sha,
                "labels": {str(k): v for k, v in sorted(labels.items())},
                "kept_label": kept,
                "kept": [str(r.image_path) for r in groups[sha]],
                "dropped": [str(r.image_path) for r in dropped],
            }
        )
    return conflicts


def assign_groups(groups: dict[str, list[Record]], cfg: SplitConfig) -> dict[str, list[Record]]:
    """Assign whole sha256 groups to train/val/test per class (see the module docstring for the rules)."""
    by_class: dict[int, list[str]] = defaultdict(list)
    for sha, members in groups.items():
        by_class[members[0].expected_quantity].append(sha)
    out: dict[str, list[Record]] = {name: [] for name in SPLITS}
    for label in sorted(by_class):
        shas = sorted(by_class[label])
        random.Random(f"binsight-split:{cfg.seed}:{label}").shuffle(shas)
        _, n_val, n_test = split_counts(len(shas), cfg.val, cfg.test)
        for i, sha in enumerate(shas):
            name = "test" if i < n_test else "val" if i < n_test + n_val else "train"
            out[name].extend(groups[sha])
    for rows in out.values():
        rows.sort(key=lambda r: str(r.image_path))
    return out


def _row_groups(rows: list[ManifestRow]) -> dict[str, list[ManifestRow]]:
    """Rows grouped by sha256; copies of one photo with different labels are an error (split first)."""
    groups: dict[str, list[ManifestRow]] = defaultdict(list)
    for row in rows:
        groups[row.sha256].append(row)
    for sha, members in groups.items():
        if len({r.label for r in members}) > 1:
            labels = sorted({r.label for r in members})
            raise DataError(
                f"copies of one image (sha256 {sha[:12]}…) carry different labels {labels}: "
                "make the split with `binsight data split`, which resolves such conflicts"
            )
    return groups


def kfold_split(rows: list[ManifestRow], k: int, seed: int = 0) -> list[list[ManifestRow]]:
    """Deal manifest ``rows`` into ``k`` stratified folds of whole sha256 groups (see the module docstring).

    The result depends only on the rows' (sha256, label) pairs and ``seed``, not on their order.

    Raises:
        DataError: ``k < 2``, fewer sha256 groups than folds, or copies of one image with different labels.
    """
    if k < 2:
        raise DataError(f"cross-validation needs at least 2 folds, got {k}")
    groups = _row_groups(rows)
    if len(groups) < k:
        raise DataError(f"{len(groups)} distinct images cannot fill {k} folds")
    by_class: dict[int, list[str]] = defaultdict(list)
    for sha, members in groups.items():
        by_class[members[0].label].append(sha)
    folds: list[list[ManifestRow]] = [[] for _ in range(k)]
    dealt = 0
    for label in sorted(by_class):
        shas = sorted(by_class[label])
        random.Random(f"binsight-kfold:{seed}:{label}").shuffle(shas)
        for sha in shas:
            folds[dealt % k].extend(groups[sha])
            dealt += 1
    for fold in folds:
        fold.sort(key=lambda r: str(r.path))
    return folds


def inner_val_split(rows: list[ManifestRow], val: float, seed: int) -> tuple[list[ManifestRow], list[ManifestRow]]:
    """Split ``rows`` into (train, val) with :func:`split_counts`' rule per class, by whole sha256 groups."""
    groups = _row_groups(rows)
    by_class: dict[int, list[str]] = defaultdict(list)
    for sha, members in groups.items():
        by_class[members[0].label].append(sha)
    train: list[ManifestRow] = []
    held: list[ManifestRow] = []
    for label in sorted(by_class):
        shas = sorted(by_class[label])
        random.Random(f"binsight-kfold-val:{seed}:{label}").shuffle(shas)
        _, n_val, _ = split_counts(len(shas), val, 0.0)
        for i, sha in enumerate(shas):
            (held if i < n_val else train).extend(groups[sha])
    return sorted(train, key=lambda r: str(r.path)), sorted(held, key=lambda r: str(r.path))


def kfold_parts(
    pool: list[ManifestRow], k: int = 5, seed: int = 0, val: float = 0.1
) -> list[dict[str, list[ManifestRow]]]:
    """The ``k`` cross-validation splits of ``pool``: ``{"train", "val", "test"}`` rows per fold.

    ``test`` is fold i (the held-out fold the CV score is measured on); the other folds' rows are split again
    into ``train`` and ``val`` (a ``val`` fraction per class, by sha256 group, seeded by ``seed + i``), so early
    stopping, temperature and decision thresholds are fitted without seeing fold i.
    """
    folds = kfold_split(pool, k, seed)
    parts = []
    for i, held_out in enumerate(folds):
        rest = [row for j, fold in enumerate(folds) if j != i for row in fold]
        train, inner_val = inner_val_split(rest, val, seed + i)
        parts.append({"train": train, "val": inner_val, "test": held_out})
    return parts


def write_kfold(split_dir: Path, out: Path, k: int = 5, seed: int = 0, val: float = 0.1) -> list[Path]:
    """Write the :func:`kfold_parts` of the train + val rows of ``split_dir`` as folders ``out/fold<i>/``.

    The split's own test rows are never used: they stay for the final comparison. Each folder is an ordinary
    split folder (``binsight train --data out/fold0`` works) with a ``split_summary.json``.

    Returns:
        The fold folders, in fold order.
    """
    from binsight.utils.io import atomic_write_json

    split_dir, out = Path(split_dir), Path(out)
    source = load_split(split_dir)
    pool = source["train"] + source["val"]
    classes = sorted({r.label for r in pool})
    dirs = []
    for i, parts in enumerate(kfold_parts(pool, k, seed, val)):
        folder = out / f"fold{i}"
        folder.mkdir(parents=True, exist_ok=True)
        for name, rows in parts.items():
            write_manifest(folder / f"{name}.csv", rows)
        atomic_write_json(
            folder / "split_summary.json",
            {
                "source": str(split_dir),
                "kind": "kfold",
                "fold": i,
                "folds": k,
                "seed": seed,
                "classes": classes,
                "counts": {
                    name: {str(c): sum(r.label == c for r in rows) for c in classes} for name, rows in parts.items()
                },
                "totals": {name: len(rows) for name, rows in parts.items()},
            },
        )
        dirs.append(folder)
    return dirs


def split_dataset(src: Path, out: Path, cfg: SplitConfig, show_progress: bool = True) -> dict[str, Any]:
    """Split the dataset at ``src`` into ``out/{train,val,test}.csv`` and return the summary.

    Also writes ``out/split_summary.json`` and the reader's problem report ``out/problems.csv``.

    Args:
        src: Dataset root (ABID layout) or labels CSV.
        out: Output folder (created; existing manifests in it are replaced).
        cfg: Seed, fractions, classes, image checking and threads.
        show_progress: Show progress bars while images are checked and hashed.

    Raises:
        DataError: ``src`` cannot be read, or no image of the wanted classes is usable.
    """
    from binsight.utils.io import atomic_write_json

    cfg.validate()
    out = Path(out)
    workers = cfg.workers or default_workers()
    scan = read_dataset(Path(src), check_images=cfg.check_images, show_progress=show_progress, workers=workers)
    out.mkdir(parents=True, exist_ok=True)
    report = scan.write_report(out)
    _hash_missing(scan.records, workers, show_progress)

    groups: dict[str, list[Record]] = defaultdict(list)
    for record in scan.records:
        groups[record.sha256].append(record)
    conflicts = _resolve_conflicts(groups)
    classes = set(cfg.classes)
    excluded = Counter()
    for sha in sorted(groups):
        label = groups[sha][0].expected_quantity
        if label not in classes:
            excluded[label] += len(groups.pop(sha))
    if not groups:
        raise DataError(
            f"no usable image of classes {sorted(classes)} in {src}: {len(scan.records)} records "
            f"({sum(excluded.values())} outside the classes), {len(scan.problems)} problems listed in {report}"
        )
    splits = assign_groups(groups, cfg)
    for name, records in splits.items():
        write_manifest(
            out / f"{name}.csv", [ManifestRow(r.image_path, r.expected_quantity, r.sha256, r.source) for r in records]
        )
    summary = _summary(scan, cfg, splits, groups, excluded, conflicts, report)
    atomic_write_json(out / "split_summary.json", summary)
    return summary


def _summary(
    scan: Scan,
    cfg: SplitConfig,
    splits: dict[str, list[Record]],
    groups: dict[str, list[Record]],
    excluded: Counter,
    conflicts: list[dict[str, Any]],
    report: Path,
) -> dict[str, Any]:
    labels = sorted(set(cfg.classes))
    counts = {}
    for name in SPLITS:
        per = Counter(r.expected_quantity for r in splits[name])
        counts[name] = {str(k): per.get(k, 0) for k in labels}
    dup_groups = [g for g in groups.values() if len(g) > 1]
    return {
        "source": str(scan.src),
        "source_kind": scan.kind,
        "seed": cfg.seed,
        "fractions": {"train": round(1 - cfg.val - cfg.test, 6), "val": cfg.val, "test": cfg.test},
        "classes": labels,
        "entries": scan.entries,
        "records": len(scan.records),
        "images": sum(len(v) for v in splits.values()),
        "counts": counts,
        "totals": {name: len(splits[name]) for name in SPLITS},
        "excluded": {"total": sum(excluded.values()), "by_label": {str(k): v for k, v in sorted(excluded.items())}},
        "duplicates": {
            "groups": len(dup_groups),
            "images": sum(len(g) for g in dup_groups),
            "extra_copies": sum(len(g) - 1 for g in dup_groups),
        },
        "conflicts": {
            "count": len(conflicts),
            "dropped_images": sum(len(c["dropped"]) for c in conflicts),
            "groups": conflicts,
        },
        "problems": {
            "total": len(scan.problems),
            "skipped": len(scan.skipped),
            "by_kind": scan.problem_counts(),
            "report": report.name,
        },
        "manifests": {name: f"{name}.csv" for name in SPLITS},
    }


def format_summary(summary: dict[str, Any]) -> str:
    """A readable table of a split summary: images per class and split, then what was left out."""
    labels = [str(k) for k in summary["classes"]]
    counts = summary["counts"]
    lines = [f"{'class':>7} {'train':>7} {'val':>7} {'test':>7} {'total':>7}"]
    for key in labels:
        row = [counts[name][key] for name in SPLITS]
        lines.append(f"{key:>7} " + " ".join(f"{v:>7}" for v in row) + f" {sum(row):>7}")
    row = [summary["totals"][name] for name in SPLITS]
    lines.append(f"{'total':>7} " + " ".join(f"{v:>7}" for v in row) + f" {sum(row):>7}")
    excluded = summary["excluded"]
    by_label = ", ".join(f"{k}: {v}" for k, v in excluded["by_label"].items())
    problems = summary["problems"]
    kinds = ", ".join(f"{k} {v}" for k, v in problems["by_kind"].items() if v)
    dups, conflicts = summary["duplicates"], summary["conflicts"]
    lines += [
        f"source: {summary['source']} ({summary['source_kind']}, {summary['entries']} entries, seed {summary['seed']})",
        f"excluded (label outside classes): {excluded['total']}" + (f" ({by_label})" if by_label else ""),
        f"duplicates kept together: {dups['groups']} groups, {dups['extra_copies']} extra copies",
        f"label conflicts: {conflicts['count']} ({conflicts['dropped_images']} images dropped)",
        f"problems: {problems['total']} ({problems['skipped']} skipped)"
        + (f": {kinds}" if kinds else "")
        + f", listed in {problems['report']}",
    ]
    return "\n".join(lines)
