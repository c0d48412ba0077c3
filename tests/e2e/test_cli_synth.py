"""``binsight data synth`` through the real command line."""

from __future__ import annotations

import json

from tests.conftest import run_cli

SMALL = ["width_min=64", "width_max=96", "jpeg_quality_min=60"]


def test_cli_synth_end_to_end(tmp_path):
    out = tmp_path / "synth"
    proc = run_cli("data", "synth", "--out", out, "--n", "12", "--seed", "4", "--counts", "0,2-3,7", "--workers", "2",
                   *SMALL)  # fmt: skip
    assert "wrote 12 images" in proc.stdout
    assert "images per count: 0: 3, 2: 3, 3: 3, 7: 3" in proc.stdout  # udacity mix: mean share for 0 and 7 …
    jpgs = sorted((out / "bin-images").glob("*.jpg"))
    assert [p.name for p in jpgs] == [f"{i:05d}.jpg" for i in range(1, 13)]
    counts = []
    for p in sorted((out / "metadata").glob("*.json")):
        meta = json.loads(p.read_text())
        assert meta["image_fname"] == p.stem + ".jpg"
        assert sum(s["quantity"] for s in meta["BIN_FCSKU_DATA"].values()) == meta["EXPECTED_QUANTITY"]
        counts.append(meta["EXPECTED_QUANTITY"])
    assert sorted(counts) == [0] * 3 + [2] * 3 + [3] * 3 + [7] * 3
    manifest = json.loads((out / "synth.json").read_text())
    assert manifest["seed"] == 4 and manifest["config"]["width_max"] == 96

    # Refuses to write into the now non-empty folder, then replaces it with --overwrite.
    again = run_cli("data", "synth", "--out", out, "--n", "2", *SMALL, check=False)
    assert again.returncode == 1 and "not empty" in again.stderr and "--overwrite" in again.stderr
    run_cli("data", "synth", "--out", out, "--n", "2", "--overwrite", "--mix", "uniform", *SMALL)
    assert len(list((out / "bin-images").iterdir())) == 2


def test_cli_synth_config_errors_exit_2_naming_the_key(tmp_path):
    bad_n = run_cli("data", "synth", "--out", tmp_path / "a", "--n", "-1", check=False)
    assert bad_n.returncode == 2 and "n must be >= 0" in bad_n.stderr
    unknown = run_cli("data", "synth", "--out", tmp_path / "b", "--n", "2", "strapz_max=1", check=False)
    assert unknown.returncode == 2 and "strapz_max" in unknown.stderr and "straps_max" in unknown.stderr
    counts = run_cli("data", "synth", "--out", tmp_path / "c", "--counts", "5-1", check=False)
    assert counts.returncode == 2 and "5-1" in counts.stderr
    assert "Traceback" not in bad_n.stderr + unknown.stderr + counts.stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_cli_synth_config_file_and_help(tmp_path):
    cfg = tmp_path / "synth.yaml"
    cfg.write_text("n: 3\nseed: 9\ncounts: [1]\nwidth_min: 64\nwidth_max: 64\n")
    out = tmp_path / "ds"
    run_cli("data", "synth", "--out", out, "--config", cfg, "--workers", "1")
    manifest = json.loads((out / "synth.json").read_text())
    assert manifest["n"] == 3 and manifest["seed"] == 9 and manifest["class_counts"] == {"1": 3}
    helptext = run_cli("data", "synth", "--help").stdout
    for flag in ("--out", "--n", "--seed", "--counts", "--mix", "--workers", "--overwrite", "--config", "key=value"):
        assert flag in helptext
