"""Stratified, leak-free, deterministic k-fold cross-validation splits (binsight.data.split)."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from binsight.data.manifest import ManifestRow, load_split, write_manifest
from binsight.data.split import inner_val_split, kfold_split, write_kfold
from binsight.errors import DataError


def make_rows(counts: dict[int, int], duplicates: int = 0, seed: int = 0) -> list[ManifestRow]:
    """Rows with fake sha256s; ``duplicates`` extra copies (other paths, same sha and label) of random rows."""
    rows = []
    for label, n in counts.items():
        for i in range(n):
            sha = f"{label:02d}{i:062d}"
            rows.append(ManifestRow(Path(f"/img/{label}_{i}.jpg"), label, sha))
    rng = random.Random(seed)
    for j in range(duplicates):
        src = rng.choice(rows)
        rows.append(ManifestRow(Path(f"/img/copy{j}.jpg"), src.label, src.sha256))
    return rows


COUNTS = {1: 53, 2: 27, 3: 11, 4: 24, 5: 37}


def test_folds_partition_the_rows_and_keep_copies_together():
    rows = make_rows(COUNTS, duplicates=15)
    folds = kfold_split(rows, 5, seed=3)
    assert sorted(str(r.path) for f in folds for r in f) == sorted(str(r.path) for r in rows)
    fold_of = {}
    for i, fold in enumerate(folds):
        for row in fold:
            assert fold_of.setdefault(row.sha256, i) == i, "a photo's copies landed in two folds"


def test_folds_are_stratified_and_balanced():
    folds = kfold_split(make_rows(COUNTS), 5, seed=0)
    for label, n in COUNTS.items():
        per_fold = [sum(r.label == label for r in f) for f in folds]
        assert max(per_fold) - min(per_fold) <= 1, (label, per_fold)
        assert sum(per_fold) == n
    sizes = [len(f) for f in folds]
    assert max(sizes) - min(sizes) <= 1, sizes


def test_deterministic_independent_of_row_order_and_seed_sensitive():
    rows = make_rows(COUNTS, duplicates=5)
    shuffled = rows[:]
    random.Random(1).shuffle(shuffled)
    a = kfold_split(rows, 5, seed=7)
    b = kfold_split(shuffled, 5, seed=7)
    assert [[r.path for r in f] for f in a] == [[r.path for r in f] for f in b]
    c = kfold_split(rows, 5, seed=8)
    assert [[r.path for r in f] for f in a] != [[r.path for r in f] for f in c]


def test_bad_requests_are_clear_errors():
    with pytest.raises(DataError, match="at least 2 folds"):
        kfold_split(make_rows({1: 5}), 1)
    with pytest.raises(DataError, match="cannot fill 5 folds"):
        kfold_split(make_rows({1: 2, 2: 2}), 5)
    rows = make_rows({1: 4, 2: 4})
    rows.append(ManifestRow(Path("/img/conflict.jpg"), 2, rows[0].sha256))
    with pytest.raises(DataError, match="different labels"):
        kfold_split(rows, 2)


def test_inner_val_is_stratified_and_leak_free():
    rows = make_rows(COUNTS, duplicates=10)
    train, val = inner_val_split(rows, 0.2, seed=0)
    assert not {r.sha256 for r in train} & {r.sha256 for r in val}
    assert len(train) + len(val) == len(rows)
    per_class = Counter(r.label for r in val)
    for label, n in COUNTS.items():
        assert abs(per_class[label] - 0.2 * n) <= 1.5, (label, per_class[label])


def test_write_kfold_folders_are_splits_without_the_test_rows(tmp_path):
    rows = make_rows(COUNTS, duplicates=8)
    test_rows = [ManifestRow(Path(f"/test/{i}.jpg"), 1 + i % 2, "f" * 63 + str(i)) for i in range(10)]
    split = tmp_path / "split"
    split.mkdir()
    write_manifest(split / "train.csv", rows[:150])
    write_manifest(split / "val.csv", rows[150:])
    write_manifest(split / "test.csv", test_rows)
    dirs = write_kfold(split, tmp_path / "cv", k=4, seed=1, val=0.1)
    assert [d.name for d in dirs] == ["fold0", "fold1", "fold2", "fold3"]
    held_out = []
    for d in dirs:
        parts = load_split(d)
        shas = {name: {r.sha256 for r in parts[name]} for name in parts}
        assert not shas["train"] & shas["val"] and not shas["train"] & shas["test"] and not shas["val"] & shas["test"]
        assert sum(len(p) for p in parts.values()) == len(rows)
        assert not {r.sha256 for r in test_rows} & (shas["train"] | shas["val"] | shas["test"])
        held_out += [str(r.path) for r in parts["test"]]
    assert sorted(held_out) == sorted(str(r.path) for r in rows)  # every pool row is scored exactly once
    again = write_kfold(split, tmp_path / "cv2", k=4, seed=1, val=0.1)
    assert (again[2] / "val.csv").read_text() == (dirs[2] / "val.csv").read_text()
