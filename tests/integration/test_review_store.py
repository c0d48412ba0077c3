"""The review queue in SQLite: leases, answers, skip, undo, conflicts and the labels export."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from binsight.errors import BinsightError
from binsight.review.export import export_labels
from binsight.review.store import Conflict, ReviewStore
from tests.integration.audit_helpers import copy_audit, make_audit


@pytest.fixture(scope="module")
def audit_template(tmp_path_factory) -> Path:
    return make_audit(tmp_path_factory.mktemp("review"))


@pytest.fixture
def audit_dir(audit_template, tmp_path) -> Path:
    return copy_audit(audit_template, tmp_path / "audit")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_queue_holds_flagged_bins_in_review_order(audit_dir):
    import json

    store = ReviewStore(audit_dir)
    added = store.import_audit()
    rows = json.loads((audit_dir / "audit.json").read_text())["rows"]
    flagged = [r for r in rows if r["decision"] in ("count", "mismatch", "review")]
    assert added == len(flagged) > 0 and store.import_audit() == 0  # idempotent
    first = store.next_bin("ann")
    assert first["location"] == flagged[0]["location"]


def test_two_reviewers_never_hold_the_same_bin_and_leases_expire(audit_dir):
    clock = Clock()
    store = ReviewStore(audit_dir, lease_seconds=60, clock=clock)
    store.import_audit()
    a, b = store.next_bin("ann"), store.next_bin("bob")
    assert a["id"] != b["id"]
    assert store.next_bin("ann")["id"] == a["id"]  # asking again keeps the same bin
    with pytest.raises(Conflict, match="ann"):
        store.answer("bob", a["id"], "3")
    clock.now += 61  # ann walked away: her bin goes back to the queue, bob's is also free again
    assert store.next_bin("bob")["id"] == a["id"]
    store.answer("bob", a["id"], "2")
    with pytest.raises(Conflict, match="already answered"):
        store.answer("ann", a["id"], "4")
    with pytest.raises(BinsightError, match="not one of"):
        store.answer("bob", b["id"], "7")


def test_skip_unsure_undo_and_progress(audit_dir):
    store = ReviewStore(audit_dir)
    total = store.import_audit()
    first = store.next_bin("ann")
    store.answer("ann", first["id"], "skip")
    second = store.next_bin("ann")
    assert second["id"] != first["id"]
    assert store.next_bin("bob")["id"] == first["id"]  # a skipped bin stays in the queue for the others
    store.answer("ann", second["id"], "unsure")
    assert store.progress("ann") == {"total": total, "settled": 1, "remaining": total - 1, "leased": 1, "mine": 1}
    back = store.undo("ann")
    assert back["id"] == second["id"] and store.progress("ann")["settled"] == 0
    assert store.next_bin("ann")["id"] == second["id"]  # undo gives the bin back to its reviewer
    store.answer("ann", second["id"], "4")
    assert store.progress("ann")["settled"] == 1


def test_export_writes_a_labels_csv_the_abid_reader_takes(audit_dir, tmp_path):
    from binsight.data.abid import read_dataset

    store = ReviewStore(audit_dir)
    store.import_audit()
    answers = iter(["3", "more", "1", "unsure", "5", "0"])
    given = {}
    while (row := store.next_bin("ann")) is not None and (answer := next(answers, None)) is not None:
        store.answer("ann", row["id"], answer)
        given[row["bin_id"]] = (answer, row["expected"])
    result = export_labels(store, tmp_path / "labels.csv")
    assert (result["labels"], result["more"], result["unsure"]) == (4, 1, 1)
    with (tmp_path / "labels.csv").open() as f:
        exported = {r["bin_id"]: r for r in csv.DictReader(f)}
    assert {k: v["expected_quantity"] for k, v in exported.items()} == {
        k: a for k, (a, _) in given.items() if a.isdigit()
    }
    assert all(v["reviewer"] == "ann" and v["answered_at"] for v in exported.values())
    scan = read_dataset(tmp_path / "labels.csv", show_progress=False)
    assert len(scan.records) == 4 and not scan.skipped
