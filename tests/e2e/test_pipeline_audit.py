"""The pipeline's ``audit`` stage on a tiny SynthBins run: curve and riskiest bins in the report."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.conftest import cli_env, run_cli

TINY = {
    "name": "tiny",
    "stages": ["synth", "split", "train", "evaluate", "audit"],
    "synth": {"n": 80, "width_min": 96, "width_max": 128},
    "train": {"model": "tiny_cnn", "weights": "none", "img_size": 32, "epochs": 2, "batch_size": 16},
    "audit": {"simulate_errors": 0.3, "seed": 1, "top": 5},
}


def test_audit_stage_reports_the_operating_curve_and_riskiest_bins(tmp_path: Path):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    env = cli_env(BINSIGHT_HOME=str(tmp_path / "home"), BINSIGHT_CACHE_DIR=str(tmp_path / "cache"))
    run_cli("pipeline", "--config", cfg, cwd=tmp_path, env=env, timeout=900)
    run = tmp_path / "runs" / "pipeline" / "tiny"
    stage = json.loads((run / "pipeline.json").read_text())["stages"]["audit"]
    assert stage["status"] == "done"
    curve = json.loads((run / "audit" / "curve.json").read_text())
    assert curve["errors"] == round(0.3 * curve["bins"]) > 0
    section = stage["section"]
    policies, top = section["tables"]
    assert [row[0] for row in policies["rows"]][:2] == ["binsight: review by P(record wrong)", "random review"]
    assert len(top["rows"]) == 5
    for row in top["rows"]:  # a record changed on purpose is marked, and only those
        assert str(row[2]).endswith("*") == (int(str(row[2]).rstrip(" *")) != row[3])
    risks = [row[5] for row in top["rows"]]
    assert risks == sorted(risks, reverse=True)
    html = (run / "report.html").read_text()
    assert "Inventory audit" in html and "operating curve" in html
    assert (run / "audit" / "audit.html").is_file() and (run / "audit" / "curve.png").is_file()
