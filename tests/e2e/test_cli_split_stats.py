"""The real `binsight data split` and `binsight data stats` commands on a tiny dataset."""

from __future__ import annotations

import json

from tests.conftest import run_cli
from tests.unit.test_abid_fixtures import make_abid_dataset, make_labels_csv


def test_split_then_stats_end_to_end(tmp_path):
    exp = make_abid_dataset(tmp_path / "ds", class_sizes={0: 1, 1: 6, 2: 4, 3: 3, 4: 3, 5: 3})
    out = tmp_path / "split"
    proc = run_cli("data", "split", "--src", exp.root, "--out", out, "--seed", "5", "--classes", "1-5")
    assert proc.stdout.splitlines()[0].split() == ["class", "train", "val", "test", "total"]
    assert "label conflicts: 1" in proc.stdout
    summary = json.loads((out / "split_summary.json").read_text())
    assert summary["seed"] == 5 and summary["classes"] == [1, 2, 3, 4, 5]
    assert summary["excluded"]["total"] == 1
    assert summary["problems"]["skipped"] == len(exp.problems)
    for name in ("train", "val", "test"):
        assert (out / f"{name}.csv").read_text().startswith("path,label,sha256,source\n")
    assert len((out / "problems.csv").read_text().splitlines()) == 1 + len(exp.problems)

    stats = tmp_path / "stats"
    proc = run_cli("data", "stats", "--src", out, "--out", stats)
    data = json.loads((stats / "stats.json").read_text())
    assert data["counts_by_split"]["train"] == summary["counts"]["train"]
    for name in ("class_distribution", "samples", "image_sizes"):
        assert (stats / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
        assert f"{name}.png" in proc.stdout


def test_split_config_file_and_overrides(tmp_path):
    exp = make_abid_dataset(tmp_path / "ds", class_sizes={1: 10, 2: 10}, defects=False)
    labels = make_labels_csv(exp.root, exp)
    config = tmp_path / "split.yaml"
    config.write_text("seed: 9\nval: 0.2\ntest: 0.2\nclasses: [1, 2]\n")
    run_cli("data", "split", "--src", labels, "--out", tmp_path / "s", "--config", config, "--val", "0.3", "test=0.1")
    summary = json.loads((tmp_path / "s" / "split_summary.json").read_text())
    # The flag beats the file, and key=value beats both.
    assert summary["seed"] == 9 and summary["fractions"]["val"] == 0.3 and summary["fractions"]["test"] == 0.1
    assert summary["counts"]["val"]["1"] == 3 and summary["counts"]["test"]["1"] == 1
    assert summary["source_kind"] == "labels-csv"


def test_bad_input_is_a_clear_error_without_traceback(tmp_path):
    proc = run_cli("data", "split", "--src", tmp_path / "missing", "--out", tmp_path / "o", check=False)
    assert proc.returncode == 1
    assert "binsight: error: dataset" in proc.stderr and "does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr

    proc = run_cli("data", "split", "--src", tmp_path, "--out", tmp_path / "o", "--classes", "5-1", check=False)
    assert proc.returncode == 2 and "expected e.g. 1-5" in proc.stderr

    proc = run_cli("data", "split", "--src", tmp_path, "--out", tmp_path / "o", "val=0.7", "test=0.5", check=False)
    assert proc.returncode == 2 and "sum to less than 1" in proc.stderr

    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "train.csv").write_text("file,label\nx.jpg,1\n")
    (tmp_path / "bad" / "val.csv").write_text("file,label\n")
    (tmp_path / "bad" / "test.csv").write_text("file,label\n")
    proc = run_cli("data", "stats", "--src", tmp_path / "bad", "--out", tmp_path / "o", check=False)
    assert proc.returncode == 1 and "expected path,label,sha256,source" in proc.stderr
    assert "Traceback" not in proc.stderr
