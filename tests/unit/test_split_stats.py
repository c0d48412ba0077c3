"""`compute_stats`: PNGs that are real images, counts that match, deterministic samples, problems listed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from binsight.config.schemas import SplitConfig
from binsight.data.split import split_dataset
from binsight.data.stats import ImageEntry, choose_samples, compute_stats
from binsight.errors import DataError
from tests.unit.test_abid_fixtures import make_abid_dataset, make_labels_csv

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_abid_dataset(tmp_path_factory.mktemp("stats") / "ds", class_sizes={1: 4, 2: 3, 3: 2, 5: 1})


def assert_pngs(summary):
    assert set(summary["plots"]) == {"class_distribution", "samples", "image_sizes"}
    assert summary["figures"] == list(summary["plots"].values())
    for path in summary["plots"].values():
        with open(path, "rb") as f:
            assert f.read(8) == PNG_MAGIC
        with Image.open(path) as im:
            im.load()
            assert im.width > 100 and im.height > 100


def test_stats_of_a_dataset_root(dataset, tmp_path):
    summary = compute_stats(dataset.root, tmp_path / "out", show_progress=False)
    assert_pngs(summary)
    # Usable images: the clean ones plus the duplicate pair (2) and both conflict copies (4 and 5).
    assert summary["counts"] == {"1": 4, "2": 5, "3": 2, "4": 1, "5": 2}
    assert summary["images"] == 14 and "counts_by_split" not in summary
    assert summary["source_kind"] == "abid"
    assert summary["image_sizes"]["width"] == {"min": 48, "max": 48, "mean": 48.0}
    assert summary["image_sizes"]["count"] == 14
    assert {p.split("/")[-1] for p in summary["corrupt"]} == {"truncated.jpg", "not_a_jpeg.jpg"}
    assert summary["problems"]["total"] == len(dataset.problems)
    assert {f["path"].split("/")[-1]: f["kind"] for f in summary["problems"]["files"]} == dataset.problems
    assert json.loads((tmp_path / "out" / "stats.json").read_text()) == summary


def test_stats_of_a_split_folder_counts_per_split(dataset, tmp_path):
    split = split_dataset(dataset.root, tmp_path / "split", SplitConfig(), show_progress=False)
    summary = compute_stats(tmp_path / "split", tmp_path / "out", show_progress=False)
    assert_pngs(summary)
    assert summary["source_kind"] == "split"
    for name in ("train", "val", "test"):
        assert summary["counts_by_split"][name] == split["counts"][name]
    assert summary["images"] == split["images"]


def test_stats_of_a_labels_csv(tmp_path):
    exp = make_abid_dataset(tmp_path / "ds", class_sizes={2: 2, 4: 2})
    summary = compute_stats(make_labels_csv(tmp_path / "ds", exp), tmp_path / "out", show_progress=False)
    assert summary["source_kind"] == "labels-csv"
    assert sum(summary["counts"].values()) == len(exp.labels)


def test_split_folder_pointing_at_a_broken_image_lists_it(dataset, tmp_path):
    split_dataset(dataset.root, tmp_path / "split", SplitConfig(check_images=False), show_progress=False)
    summary = compute_stats(tmp_path / "split", tmp_path / "out", show_progress=False)
    assert [p.split("/")[-1] for p in summary["corrupt"]] == ["not_a_jpeg.jpg"]  # header unreadable
    assert_pngs(summary)


def test_sample_grid_is_deterministic_per_seed(dataset, tmp_path):
    a = compute_stats(dataset.root, tmp_path / "a", seed=3, show_progress=False)
    b = compute_stats(dataset.root, tmp_path / "b", seed=3, show_progress=False)

    def pixels(summary):
        with Image.open(summary["plots"]["samples"]) as im:
            return im.convert("RGB").tobytes()

    assert a["samples"] == b["samples"] and pixels(a) == pixels(b)
    assert {k: len(v) for k, v in a["samples"].items()} == {"1": 4, "2": 5, "3": 2, "4": 1, "5": 2}

    # The choice depends on the seed, not on the order of the input.
    items = [ImageEntry(Path(p), int(label), "all") for label, paths in a["samples"].items() for p in paths]
    labels = sorted({it.label for it in items})
    many = [ImageEntry(Path(f"/x/{i}.jpg"), 1, "all") for i in range(40)]
    picks = {seed: [it.path for it in choose_samples(many, [1], seed)[1]] for seed in (3, 4)}
    assert picks[3] != picks[4] and len(picks[3]) == 6
    assert [it.path for it in choose_samples(list(reversed(many)), [1], 3)[1]] == picks[3]
    assert choose_samples(items, labels, 3) == choose_samples(list(reversed(items)), labels, 3)


def test_nothing_usable_is_a_clear_error(tmp_path):
    (tmp_path / "ds" / "bin-images").mkdir(parents=True)
    with pytest.raises(DataError, match="no usable image"):
        compute_stats(tmp_path / "ds", tmp_path / "out", show_progress=False)
