"""One command-line grammar: overrides and -v anywhere, old spellings as aliases, no clobbering folders, quiet
third-party logs, the cache command."""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from binsight.cli.main import setup_logging
from binsight.data.cache import build_decode_cache, cache_usage
from binsight.data.manifest import ManifestRow
from tests.conftest import cli_env, run_cli

SYNTH = ["synth.n=6", "synth.width_min=96", "synth.width_max=128", "stages=[synth]"]


def test_overrides_and_verbose_after_flags_and_subcommand(tmp_path: Path):
    # key=value before and after flags, -v after the subcommand: all taken
    run_cli("pipeline", "name=a", "--skip", "synth", "-v", *SYNTH, "out=o", cwd=tmp_path)
    state = yaml.safe_load((tmp_path / "o" / "pipeline" / "a" / "config.yaml").read_text())
    assert state["synth"]["n"] == 6 and state["stages"] == ["synth"]
    bad = run_cli("pipeline", "name=a", "--bogus", cwd=tmp_path, check=False)
    assert bad.returncode == 2 and "binsight pipeline: error: unrecognized arguments: --bogus" in bad.stderr
    bad = run_cli("cfg", "demo", "epochs=3", cwd=tmp_path, check=False)  # a command without settings
    assert bad.returncode == 2 and "unrecognized arguments: epochs=3" in bad.stderr


def test_pipeline_with_a_missing_dataset_fails_before_making_a_run(tmp_path: Path):
    bad = run_cli("pipeline", "data=/nope/abid", cwd=tmp_path, check=False)
    assert bad.returncode == 1 and "data=/nope/abid: no such dataset" in bad.stderr
    assert not (tmp_path / "runs").exists()


def test_split_takes_data_or_src_and_refuses_a_non_empty_out(tmp_path: Path):
    run_cli("data", "synth", "--out", tmp_path / "ds", "--n", "10", "width_min=96", "width_max=128")
    run_cli("data", "split", "--data", tmp_path / "ds", "--out", tmp_path / "split")
    first = (tmp_path / "split" / "train.csv").read_text()
    again = run_cli("data", "split", "--src", tmp_path / "ds", "--out", tmp_path / "split", "--seed", "7", check=False)
    assert again.returncode == 1 and "--overwrite" in again.stderr
    assert (tmp_path / "split" / "train.csv").read_text() == first  # nothing was touched
    run_cli("data", "split", "--src", tmp_path / "ds", "--out", tmp_path / "split", "--seed", "7", "--overwrite")
    stats = tmp_path / "stats.yaml"
    stats.write_text("seed: 5\n")
    run_cli("data", "stats", "--data", tmp_path / "split", "--out", tmp_path / "s5", "--config", stats)
    run_cli("data", "stats", "--src", tmp_path / "split", "--out", tmp_path / "s5b", "seed=5")
    assert (tmp_path / "s5" / "samples.png").read_bytes() == (tmp_path / "s5b" / "samples.png").read_bytes()
    bad = run_cli("data", "fetch", "--out", tmp_path / "f", "--file-list", stats, "workers=0", check=False)
    assert bad.returncode == 1 and "workers must be at least 1" in bad.stderr
    assert yaml.safe_load((tmp_path / "split" / "split_summary.json").read_text())["seed"] == 7


def test_third_party_loggers_stay_quiet_unless_verbose():
    try:
        setup_logging(False)
        assert not logging.getLogger("httpx").isEnabledFor(logging.INFO)
        assert not logging.getLogger("onnxruntime").isEnabledFor(logging.INFO)
        assert not logging.getLogger().isEnabledFor(logging.INFO)  # bare logging.info() calls in libraries
        assert logging.getLogger("binsight.training").isEnabledFor(logging.INFO)
        assert not logging.getLogger("binsight.training").isEnabledFor(logging.DEBUG)
        setup_logging(True)
        assert logging.getLogger("botocore").isEnabledFor(logging.DEBUG)
        assert logging.getLogger("binsight").isEnabledFor(logging.DEBUG)
    finally:
        setup_logging(False)


def test_cache_info_and_clear(tmp_path: Path):
    images = tmp_path / "img"
    images.mkdir()
    rows = []
    for i in range(4):
        path = images / f"{i}.png"
        Image.fromarray(np.full((30, 40, 3), 40 * i, np.uint8)).save(path)
        rows.append(ManifestRow(path, i % 2 + 1, hashlib.sha256(path.read_bytes()).hexdigest(), "t"))
    cache_dir = tmp_path / "cache"
    build_decode_cache(rows, 16, "letterbox", cache_dir=cache_dir, workers=1)
    build_decode_cache(rows, 24, "letterbox", cache_dir=cache_dir, workers=1)
    (cache_dir / "features").mkdir()
    np.save(cache_dir / "features" / "k.npy", np.zeros((4, 8), np.float32))
    usage = cache_usage(cache_dir)
    assert sorted(u.kind for u in usage) == ["features", "images", "images"]
    assert max(u.bytes for u in usage if u.kind == "images") >= 4 * 24 * 24 * 3  # the uint8 images themselves
    env = cli_env(BINSIGHT_CACHE_DIR=str(cache_dir))
    info = run_cli("cache", "info", env=env)
    assert "4 images at 16 px (letterbox)" in info.stdout and "3 entries" in info.stdout
    old = time.time() - 10 * 86400
    for u in usage:
        if u.kind == "features":
            import os

            os.utime(u.path, (old, old))
    cleared = run_cli("cache", "clear", "--older-than", "5", env=env)
    assert "removed 1 entries" in cleared.stdout
    assert [u.kind for u in cache_usage(cache_dir)] == ["images", "images"]
    run_cli("cache", "clear", "--kind", "images", env=env)
    assert cache_usage(cache_dir) == []
