"""The split on the real ABID sample (../shared/abid-sample): every row accounted for, no leakage."""

from __future__ import annotations

import csv

import pytest

from binsight.config.schemas import SplitConfig
from binsight.data.manifest import load_split
from binsight.data.split import split_dataset

pytestmark = pytest.mark.abid


def test_abid_sample_split_accounts_for_every_row(abid_sample, tmp_path):
    with (abid_sample / "labels.csv").open() as f:
        rows = list(csv.DictReader(f))
    summary = split_dataset(abid_sample / "labels.csv", tmp_path / "split", SplitConfig(), show_progress=False)
    split = load_split(tmp_path / "split")

    assert summary["entries"] == len(rows)
    placed = sum(len(v) for v in split.values())
    accounted = placed + summary["excluded"]["total"] + summary["conflicts"]["dropped_images"]
    assert accounted + summary["problems"]["skipped"] == len(rows)

    # No leakage: a photo's bytes appear in one split only.
    shas = {name: {r.sha256 for r in v} for name, v in split.items()}
    assert not (shas["train"] & shas["val"] or shas["train"] & shas["test"] or shas["val"] & shas["test"])

    # Labels in the manifests are the CSV's labels, and every class is in every split.
    want = {str((abid_sample / r["file"]).resolve()): int(r["expected_quantity"]) for r in rows}
    for name, manifest in split.items():
        assert all(want[str(r.path)] == r.label for r in manifest)
        assert {r.label for r in manifest} == {1, 2, 3, 4, 5}, name
    # Stratified: each class's val/test share is within one image of 10%.
    for label in map(str, summary["classes"]):
        n = sum(summary["counts"][s][label] for s in ("train", "val", "test"))
        assert abs(summary["counts"]["val"][label] - 0.1 * n) <= 1
        assert abs(summary["counts"]["test"][label] - 0.1 * n) <= 1
