"""Shipped configs: found by name from any folder, listed and printed by `binsight cfg`, copied by `copy-cfg`."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from binsight.config import ConfigError, PipelineConfig, TrainConfig, load_config
from binsight.config.shipped import resolve_config, shipped_names, shipped_path
from tests.conftest import run_cli


def test_configs_are_shipped_inside_the_package():
    import binsight

    package = Path(binsight.__file__).parent
    assert {"demo", "abid", "abid-fast", "seed-baseline", "tune-report"} <= set(shipped_names())
    assert shipped_path("abid").parent == package / "configs"
    assert shipped_path("abid.yaml") == shipped_path("abid")


def test_a_file_wins_over_a_shipped_name_and_unknown_names_list_the_shipped_ones(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_config("abid") == shipped_path("abid")
    Path("abid").write_text("epochs: 7\n")
    assert load_config(TrainConfig, "abid").epochs == 7  # a file named like a shipped config is the file
    with pytest.raises(ConfigError, match="shipped configs, usable by name: abid"):
        resolve_config("nope")
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_config("sub/demo.yaml")  # a path with a folder is never a shipped name
    assert load_config(PipelineConfig, "demo").name == "demo"


def test_cfg_lists_prints_and_copy_cfg_copies_from_outside_the_checkout(tmp_path):
    listed = run_cli("cfg", cwd=tmp_path)
    assert all(name in listed.stdout for name in shipped_names())
    printed = run_cli("cfg", "seed-baseline", cwd=tmp_path)
    assert printed.stdout == shipped_path("seed-baseline").read_text()
    run_cli("copy-cfg", "abid", cwd=tmp_path)
    assert (tmp_path / "abid.yaml").read_bytes() == shipped_path("abid").read_bytes()
    again = run_cli("copy-cfg", "abid", cwd=tmp_path, check=False)
    assert again.returncode == 1 and "--force" in again.stderr
    run_cli("copy-cfg", "demo", "mine/demo-copy.yaml", cwd=tmp_path)
    assert yaml.safe_load((tmp_path / "mine" / "demo-copy.yaml").read_text())["name"] == "demo"
    bad = run_cli("cfg", "nope", cwd=tmp_path, check=False)
    assert bad.returncode == 2 and "no shipped config named 'nope'" in bad.stderr
