"""Split manifests: round trip, relative/absolute paths, malformed files, hashes, split folders."""

from __future__ import annotations

import hashlib

import pytest

from binsight.data.manifest import ManifestRow, load_split, manifest_hash, read_manifest, write_manifest
from binsight.errors import DataError


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
def rows(tmp_path):
    inside = tmp_path / "split" / "images" / "a.jpg"
    outside = tmp_path / "elsewhere" / "b.jpg"
    return [
        ManifestRow(inside, 1, sha("a"), "abid"),
        ManifestRow(outside, 5, sha("b"), "labels-csv"),
    ]


def test_round_trip_stores_relative_paths_under_the_folder(tmp_path, rows):
    path = write_manifest(tmp_path / "split" / "train.csv", rows)
    lines = path.read_text().splitlines()
    assert lines[0] == "path,label,sha256,source"
    assert lines[1].startswith("images/a.jpg,1,")
    assert lines[2].startswith(str(tmp_path / "elsewhere" / "b.jpg") + ",5,")
    back = read_manifest(path)
    assert back == [ManifestRow(r.path.resolve(), r.label, r.sha256, r.source) for r in rows]
    assert all(r.path.is_absolute() for r in back)


def test_moving_a_split_folder_with_its_images_keeps_paths_valid(tmp_path):
    folder = tmp_path / "split"
    (folder / "img").mkdir(parents=True)
    (folder / "img" / "x.jpg").write_bytes(b"x")
    write_manifest(folder / "val.csv", [ManifestRow(folder / "img" / "x.jpg", 2, sha("x"), "abid")])
    moved = folder.rename(tmp_path / "moved")
    (row,) = read_manifest(moved / "val.csv")
    assert row.path == moved / "img" / "x.jpg" and row.path.is_file()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("file,label\nx.jpg,1\n", "expected path,label,sha256,source"),
        ("", "expected path,label,sha256,source"),
        ("path,label,sha256,source\nx.jpg,one,{h},abid\n", "line 2: label 'one'"),
        ("path,label,sha256,source\nx.jpg,-1,{h},abid\n", "line 2: label '-1'"),
        ("path,label,sha256,source\nx.jpg,1,{h},abid\ny.jpg,1,abc,abid\n", "line 3: sha256 'abc'"),
        ("path,label,sha256,source\nx.jpg,1,{h}\n", "line 2: expected 4 fields, got 3"),
        ("path,label,sha256,source\n,1,{h},abid\n", "line 2: empty path"),
    ],
)
def test_malformed_manifest_is_a_clear_error(tmp_path, text, message):
    path = tmp_path / "train.csv"
    path.write_text(text.format(h=sha("x")))
    with pytest.raises(DataError, match=message):
        read_manifest(path)


def test_missing_manifest_says_how_to_make_one(tmp_path):
    with pytest.raises(DataError, match="binsight data split"):
        read_manifest(tmp_path / "train.csv")


def test_blank_lines_are_ignored(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(f"path,label,sha256,source\n\nx.jpg,3,{sha('x')},abid\n\n")
    assert [r.label for r in read_manifest(path)] == [3]


def test_manifest_hash_ignores_paths_and_order_but_not_labels(tmp_path, rows):
    h = manifest_hash(rows)
    assert len(h) == 64
    assert manifest_hash(list(reversed(rows))) == h
    moved = [ManifestRow(tmp_path / "other" / r.path.name, r.label, r.sha256, r.source) for r in rows]
    assert manifest_hash(moved) == h
    relabelled = [ManifestRow(rows[0].path, 2, rows[0].sha256, rows[0].source), rows[1]]
    assert manifest_hash(relabelled) != h
    assert manifest_hash(rows[:1]) != h


def test_load_split(tmp_path, rows):
    folder = tmp_path / "split"
    write_manifest(folder / "train.csv", rows)
    write_manifest(folder / "val.csv", rows[:1])
    with pytest.raises(DataError, match="lacks test.csv"):
        load_split(folder)
    write_manifest(folder / "test.csv", [])
    split = load_split(folder)
    assert {k: len(v) for k, v in split.items()} == {"train": 2, "val": 1, "test": 0}
    with pytest.raises(DataError, match="does not exist"):
        load_split(tmp_path / "nope")
