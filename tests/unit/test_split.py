"""The split: rounding rule, determinism, stratification, no leakage, duplicates, conflicts, class filter."""

from __future__ import annotations

import csv
import json
import math

import pytest

from binsight.config.schemas import SplitConfig
from binsight.data.manifest import load_split
from binsight.data.split import format_summary, split_counts, split_dataset
from binsight.errors import DataError
from tests.unit.test_abid_fixtures import make_abid_dataset, make_labels_csv


@pytest.mark.parametrize(
    ("n", "val", "test", "expected"),
    [
        (0, 0.1, 0.1, (0, 0, 0)),
        (1, 0.1, 0.1, (1, 0, 0)),
        (2, 0.1, 0.1, (2, 0, 0)),
        (2, 0.3, 0.3, (1, 0, 1)),  # round(0.6)=1 each; val (the larger, or tied) lowered so train keeps one
        (3, 0.1, 0.1, (1, 1, 1)),  # tiny class: at least one in val and test
        (3, 0.0, 0.1, (2, 0, 1)),  # a zero fraction stays zero
        (10, 0.1, 0.1, (8, 1, 1)),
        (25, 0.1, 0.1, (19, 3, 3)),  # 2.5 rounds half up
        (70, 0.1, 0.1, (56, 7, 7)),
        (1132, 0.1, 0.1, (906, 113, 113)),
        (4, 0.5, 0.45, (1, 1, 2)),
    ],
)
def test_split_counts_rounding_rule(n, val, test, expected):
    assert split_counts(n, val, test) == expected
    n_train, n_val, n_test = split_counts(n, val, test)
    assert n_train + n_val + n_test == n
    if n >= 1:
        assert n_train >= 1


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    # Enough images per class that the proportions are meaningful, plus every defect kind.
    root = tmp_path_factory.mktemp("split") / "ds"
    return make_abid_dataset(root, class_sizes={0: 2, 1: 20, 2: 12, 3: 3, 4: 9, 5: 6})


def manifests(folder):
    return {name: (folder / f"{name}.csv").read_bytes() for name in ("train", "val", "test")}


def test_same_seed_same_manifests_other_seed_different(dataset, tmp_path):
    cfg = SplitConfig(seed=42)
    split_dataset(dataset.root, tmp_path / "a", cfg, show_progress=False)
    split_dataset(dataset.root, tmp_path / "b", cfg, show_progress=False)
    split_dataset(dataset.root, tmp_path / "c", SplitConfig(seed=7), show_progress=False)
    assert manifests(tmp_path / "a") == manifests(tmp_path / "b")
    assert manifests(tmp_path / "a") != manifests(tmp_path / "c")


def test_stratified_no_leakage_and_accounting(dataset, tmp_path):
    out = tmp_path / "split"
    summary = split_dataset(dataset.root, out, SplitConfig(), show_progress=False)
    split = load_split(out)

    # No sha256 in two splits; the duplicate pair sits together.
    shas = {name: {r.sha256 for r in rows} for name, rows in split.items()}
    assert not (shas["train"] & shas["val"] or shas["train"] & shas["test"] or shas["val"] & shas["test"])
    homes = {name for name, rows in split.items() for r in rows if r.path.stem in dataset.duplicates[0]}
    copies = [r for rows in split.values() for r in rows if r.path.stem in dataset.duplicates[0]]
    assert len(homes) == 1 and len(copies) == 2
    assert summary["duplicates"] == {"groups": 1, "images": 2, "extra_copies": 1}

    # Label conflict: the tie keeps the smaller label (4) and drops the other copy.
    kept = [r for rows in split.values() for r in rows if r.path.stem in dataset.conflict]
    assert [(r.path.stem, r.label) for r in kept] == [("conflict_a", 4)]
    (conflict,) = summary["conflicts"]["groups"]
    assert conflict["kept_label"] == 4 and conflict["labels"] == {"4": 1, "5": 1}
    assert conflict["dropped"][0].endswith("conflict_b.jpg")

    # Per-class proportions within one image of the target (groups count once; class 2 holds the pair).
    by_class = {}
    for name, rows in split.items():
        for r in rows:
            by_class.setdefault(r.label, {"train": 0, "val": 0, "test": 0})[name] += 1
    for label, counts in by_class.items():
        n = sum(counts.values())
        for name in ("val", "test"):
            assert abs(counts[name] - n * 0.1) <= 1 + (label == 2), (label, counts)
        assert counts["val"] >= 1 and counts["test"] >= 1  # every class has >= 3 images here
    assert summary["counts"]["val"]["3"] == 1 and summary["counts"]["test"]["3"] == 1

    # Class 0 is outside the default classes: excluded and counted, never in a manifest.
    assert summary["excluded"] == {"total": 2, "by_label": {"0": 2}}
    assert 0 not in by_class

    # Every entry is accounted for.
    total = sum(len(rows) for rows in split.values())
    assert (
        total
        == summary["images"]
        == sum(summary["totals"].values())
        == sum(sum(c.values()) for c in summary["counts"].values())
    )
    accounted = total + summary["excluded"]["total"] + summary["conflicts"]["dropped_images"]
    assert accounted + summary["problems"]["skipped"] == summary["entries"] == dataset.entries
    assert summary["problems"]["skipped"] == len(dataset.problems)

    # Side files.
    on_disk = json.loads((out / "split_summary.json").read_text())
    assert on_disk == summary
    with (out / "problems.csv").open() as f:
        assert len(list(csv.DictReader(f))) == len(dataset.problems)
    assert summary["seed"] == 42 and summary["fractions"] == {"train": 0.8, "val": 0.1, "test": 0.1}


def test_class_filter_and_fractions(dataset, tmp_path):
    summary = split_dataset(
        dataset.root, tmp_path / "s", SplitConfig(classes=[1, 2], val=0.2, test=0.0), show_progress=False
    )
    split = load_split(tmp_path / "s")
    assert {r.label for rows in split.values() for r in rows} == {1, 2}
    assert split["test"] == []
    assert summary["counts"]["val"]["1"] == math.floor(20 * 0.2 + 0.5)
    # Classes 0, 3, 4, 5 are excluded; the conflict group (kept as label 4) goes with them.
    assert summary["excluded"]["by_label"] == {"0": 2, "3": 3, "4": 10, "5": 6}


def test_per_class_assignment_does_not_depend_on_other_classes(dataset, tmp_path):
    split_dataset(dataset.root, tmp_path / "all", SplitConfig(), show_progress=False)
    split_dataset(dataset.root, tmp_path / "one", SplitConfig(classes=[1]), show_progress=False)
    full, only = load_split(tmp_path / "all"), load_split(tmp_path / "one")
    for name in ("train", "val", "test"):
        assert [r for r in full[name] if r.label == 1] == only[name]


def test_labels_csv_split_without_image_check_hashes_anyway(tmp_path):
    exp = make_abid_dataset(tmp_path / "ds", class_sizes={1: 4, 2: 4})
    labels = make_labels_csv(tmp_path / "ds", exp)
    summary = split_dataset(labels, tmp_path / "s", SplitConfig(check_images=False), show_progress=False)
    rows = [r for rows in load_split(tmp_path / "s").values() for r in rows]
    assert all(len(r.sha256) == 64 for r in rows)
    assert {r.source for r in rows} == {"labels-csv"}
    # Without decoding, the truncated JPEG is not caught and lands in a manifest.
    assert "truncated" in {r.path.stem for r in rows}
    assert summary["source_kind"] == "labels-csv"


def test_no_usable_image_is_an_error_but_the_report_is_written(tmp_path):
    exp = make_abid_dataset(tmp_path / "ds", class_sizes={7: 2}, defects=False)
    with pytest.raises(DataError, match="no usable image of classes"):
        split_dataset(exp.root, tmp_path / "s", SplitConfig(), show_progress=False)
    assert (tmp_path / "s" / "problems.csv").is_file()


def test_format_summary_lists_counts_and_what_was_left_out(dataset, tmp_path):
    text = format_summary(split_dataset(dataset.root, tmp_path / "s", SplitConfig(), show_progress=False))
    assert text.splitlines()[0].split() == ["class", "train", "val", "test", "total"]
    assert any(line.split()[:1] == ["total"] for line in text.splitlines())
    assert "excluded (label outside classes): 2 (0: 2)" in text
    assert "label conflicts: 1 (1 images dropped)" in text
    assert f"problems: {len(dataset.problems)} ({len(dataset.problems)} skipped)" in text


def test_invalid_config_rejected():
    with pytest.raises(ValueError):
        SplitConfig(val=0.6, test=0.5).validate()
    with pytest.raises(ValueError):
        SplitConfig(classes=[1, 1]).validate()
