"""Reading file lists for ``binsight data fetch``: the three formats, id normalization, clear errors."""

from __future__ import annotations

import json

import pytest

from binsight.data.fetch_list import normalize_id, object_keys, read_id_list
from binsight.errors import DataError


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("00001", "00001"),
        ("523", "00523"),
        (523, "00523"),
        ("100000", "100000"),
        ("000042", "00042"),
        ("metadata/00007.json", "00007"),
        ("bin-images/105123.jpg", "105123"),
        ("  bin-images/7.JPG ", "00007"),
    ],
)
def test_normalize_id_pads_to_five_digits_and_strips_paths(raw, expected):
    assert normalize_id(raw) == expected


@pytest.mark.parametrize("raw", ["abc", "metadata/x.json", "", "12a", True, 1.5])
def test_normalize_id_rejects_non_numeric_entries(raw):
    with pytest.raises(ValueError):
        normalize_id(raw)


def test_object_keys_follow_the_bucket_layout():
    assert object_keys("00523") == ("bin-images/00523.jpg", "metadata/00523.json")


def test_udacity_file_list(tmp_path):
    path = tmp_path / "file_list.json"
    path.write_text(
        json.dumps(
            {
                "1": ["metadata/00003.json", "metadata/100001.json"],
                "2": ["bin-images/00001.jpg", "metadata/00003.json"],
                "5": [],
            }
        )
    )
    assert read_id_list(path) == ["00003", "100001", "00001"]


def test_json_list_of_ids(tmp_path):
    path = tmp_path / "ids.json"
    path.write_text(json.dumps([523, "00001", "bin-images/00002.jpg", "523"]))
    assert read_id_list(path) == ["00523", "00001", "00002"]


def test_plain_text_list_ignores_blanks_and_comments(tmp_path):
    path = tmp_path / "ids.txt"
    path.write_text("# my subset\n00001\n\n523   # a comment\nmetadata/00009.json\r\n00001\n")
    assert read_id_list(path) == ["00001", "00523", "00009"]


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        ("broken.json", '{"1": ["metadata/00001.json",', "not valid JSON"),
        ("dict.json", '{"1": "metadata/00001.json"}', "expected a list of paths"),
        ("scalar.json", "42", "holds a JSON int"),
        ("ids.json", '["00001", {"id": 2}]', "entry 1"),
        ("ids.txt", "00001\nhello\n", "line 2"),
        ("empty.txt", "# nothing\n\n", "names no image ids"),
        ("empty.json", "{}", "names no image ids"),
    ],
)
def test_malformed_lists_give_a_clear_error(tmp_path, name, content, fragment):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DataError) as info:
        read_id_list(path)
    message = str(info.value)
    assert fragment in message and str(path) in message
    assert "file_list.json" in message  # says what formats are expected


def test_missing_or_unreadable_list(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_id_list(tmp_path / "nope.json")
    with pytest.raises(DataError, match="is a folder"):
        read_id_list(tmp_path)
    binary = tmp_path / "ids.txt"
    binary.write_bytes(b"\xff\xfe\x00\x81garbage")
    with pytest.raises(DataError, match="cannot read file list"):
        read_id_list(binary)
