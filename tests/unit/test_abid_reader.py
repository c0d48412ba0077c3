"""The dataset reader: ABID layout and labels CSV, every defect reported and skipped."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from binsight.data.abid import PROBLEM_KINDS, parse_metadata, read_dataset
from binsight.errors import DataError
from tests.unit.test_abid_fixtures import make_abid_dataset, make_labels_csv


@pytest.fixture
def abid(tmp_path):
    return make_abid_dataset(tmp_path / "ds")


def test_abid_root_reports_and_skips_every_defect(abid):
    scan = read_dataset(abid.root, show_progress=False, workers=2)
    assert scan.kind == "abid"
    assert {r.id: r.expected_quantity for r in scan.records} == abid.labels
    found = {p.path.name: p.kind for p in scan.problems}
    assert found == abid.problems
    assert all(p.skipped for p in scan.problems)
    assert all(p.path.is_absolute() for p in scan.problems)
    # Nothing is lost: every image and every orphan metadata file is a record or a problem.
    assert len(scan.records) + len(scan.skipped) == scan.entries == abid.entries
    counts = scan.problem_counts()
    assert set(counts) == set(PROBLEM_KINDS)
    assert counts["corrupt_image"] == 2 and counts["inconsistent_metadata"] == 2 and counts["bad_label"] == 0


def test_records_carry_metadata_size_and_hash(abid):
    scan = read_dataset(abid.root, show_progress=False)
    by_id = {r.id: r for r in scan.records}
    rec = by_id["dup_a"]
    assert rec.source == "abid"
    assert rec.image_path == (abid.root / "bin-images" / "dup_a.jpg").resolve()
    assert rec.sku_count == 2
    assert sorted(item["quantity"] for item in rec.items) == [1, 1]
    assert rec.items[0]["dimensions"]["width"] == {"unit": "IN", "value": 3.0}
    assert rec.items[0]["weight"]["unit"] == "pounds"
    assert (rec.width, rec.height) == (48, 40)
    assert rec.sha256 == by_id["dup_b"].sha256 != by_id["conflict_a"].sha256
    assert len(rec.sha256) == 64
    assert [r.image_path for r in scan.records] == sorted(r.image_path for r in scan.records)


def test_without_image_check_corrupt_files_pass_as_records(abid):
    scan = read_dataset(abid.root, check_images=False, show_progress=False)
    ids = {r.id for r in scan.records}
    assert {"truncated", "not_a_jpeg"} <= ids
    assert all(r.sha256 is None and r.width is None for r in scan.records)
    assert "corrupt_image" not in {p.kind for p in scan.problems}


def test_labels_csv(tmp_path):
    exp = make_abid_dataset(tmp_path / "ds")
    labels = make_labels_csv(tmp_path / "ds", exp)
    scan = read_dataset(labels, show_progress=False)
    assert scan.kind == "labels-csv"
    assert scan.entries == len(exp.labels) + 4
    assert {r.image_path.stem: r.expected_quantity for r in scan.records} == exp.labels
    assert {r.source for r in scan.records} == {"labels-csv"}
    assert scan.records[0].id.startswith("bin-images/")
    kinds = sorted((p.path.name, p.kind, p.skipped) for p in scan.problems)
    first, second = sorted(exp.labels)[:2]
    assert kinds == sorted(
        [
            ("truncated.jpg", "corrupt_image", True),
            ("no_meta.jpg", "bad_label", True),
            ("bad_sum.jpg", "bad_label", True),
            ("does_not_exist.jpg", "missing_image", True),
            (f"{second}.json", "inconsistent_metadata", False),
        ]
    )
    assert len(scan.records) + len(scan.skipped) == scan.entries
    by_stem = {r.image_path.stem: r for r in scan.records}
    assert by_stem[first].sku_count is not None and by_stem[first].items  # adjacent metadata was read
    assert by_stem[second].expected_quantity == exp.labels[second]  # the CSV label wins
    assert by_stem[sorted(exp.labels)[2]].sku_count is None  # no adjacent metadata


def test_folder_with_labels_csv_is_read_as_the_csv(tmp_path):
    folder = tmp_path / "sample"
    (folder / "images").mkdir(parents=True)
    (folder / "images" / "a.jpg").write_bytes(Path(__file__).read_bytes())  # not an image
    (folder / "labels.csv").write_text("file,expected_quantity\nimages/a.jpg,2\n")
    scan = read_dataset(folder, show_progress=False)
    assert scan.kind == "labels-csv" and not scan.records
    assert [(p.path.name, p.kind) for p in scan.problems] == [("a.jpg", "corrupt_image")]


@pytest.mark.parametrize(
    ("content", "message"),
    [("name,label\na.jpg,1\n", "expected at least file,expected_quantity"), ("", "expected at least file")],
)
def test_labels_csv_without_required_columns_is_a_clear_error(tmp_path, content, message):
    path = tmp_path / "labels.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        read_dataset(path, show_progress=False)


def test_missing_or_unknown_source_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_dataset(tmp_path / "nope", show_progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="bin-images"):
        read_dataset(tmp_path / "empty", show_progress=False)


@pytest.mark.parametrize(
    ("meta", "kind", "detail"),
    [
        ("[1, 2]", "unreadable_metadata", "JSON object"),
        ("{not json", "unreadable_metadata", "not valid JSON"),
        ({"EXPECTED_QUANTITY": "3", "BIN_FCSKU_DATA": {}}, "inconsistent_metadata", "not an integer"),
        ({"EXPECTED_QUANTITY": -1}, "inconsistent_metadata", "not an integer >= 0"),
        ({"EXPECTED_QUANTITY": True}, "inconsistent_metadata", "not an integer"),
        ({"EXPECTED_QUANTITY": 2, "BIN_FCSKU_DATA": [1, 1]}, "inconsistent_metadata", "not a mapping"),
        ({"EXPECTED_QUANTITY": 1, "BIN_FCSKU_DATA": {"A": {"quantity": 1.5}}}, "inconsistent_metadata", "A"),
    ],
)
def test_parse_metadata_rejects(tmp_path, meta, kind, detail):
    path = tmp_path / "m.json"
    path.write_text(meta if isinstance(meta, str) else json.dumps(meta))
    data, problem = parse_metadata(path)
    assert data is None
    assert problem.kind == kind and detail in problem.detail


def test_parse_metadata_accepts_empty_bin_and_label_only(tmp_path):
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"EXPECTED_QUANTITY": 0, "BIN_FCSKU_DATA": {}}))
    assert parse_metadata(path) == ({"expected_quantity": 0, "sku_count": 0, "items": []}, None)
    path.write_text(json.dumps({"EXPECTED_QUANTITY": 4}))
    assert parse_metadata(path) == ({"expected_quantity": 4, "sku_count": None, "items": []}, None)


def test_problem_report_csv_and_json(abid, tmp_path):
    scan = read_dataset(abid.root, show_progress=False)
    report = scan.write_report(tmp_path / "out")
    with report.open() as f:
        rows = list(csv.DictReader(f))
    assert report.name == "problems.csv"
    assert {Path(r["path"]).name: r["kind"] for r in rows} == abid.problems
    assert all(r["detail"] and r["skipped"] == "true" for r in rows)
    as_json = json.loads(scan.write_report(tmp_path / "out", fmt="json").read_text())
    assert len(as_json) == len(abid.problems)


def test_empty_problem_report_still_written(tmp_path):
    from tests.unit.test_abid_fixtures import make_abid_dataset as build

    exp = build(tmp_path / "clean", class_sizes={1: 2}, defects=False)
    scan = read_dataset(exp.root, show_progress=False)
    assert len(scan.records) == 2 and not scan.problems
    assert scan.write_report(tmp_path / "r").read_text() == "path,kind,detail,skipped\n"
