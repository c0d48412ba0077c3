"""`binsight pipeline` end to end through the real CLI: every stage on a tiny config, the report, resume."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import yaml

from tests.conftest import REPO, cli_env, held_env, run_cli

# The shipped demo config, shrunk by overrides to run in seconds: the test runs `binsight pipeline` with no
# --config from a folder outside the checkout, so it also proves the embedded default is found from anywhere.
TINY_OVERRIDES = [
    "name=tiny",
    "synth.n=60",
    "synth.width_min=96",
    "synth.width_max=128",
    *(
        f"{section}.{key}"
        for section in ("train", "tune.train", "ddp.train")
        for key in ("model=tiny_cnn", "weights=none", "img_size=32")
    ),
    "train.epochs=2",
    "train.batch_size=16",
    "train.freeze_backbone=false",
    "ddp.train.epochs=1",
    "ddp.train.batch_size=16",
    "tune.trials=2",
    "tune.space.freeze_backbone=[false]",
    "tune.space.batch_size=[16]",
    "tune.train.epochs=2",
]


def test_full_pipeline_runs_every_stage_and_cleans_up(tmp_path: Path):
    from binsight.config.shipped import shipped_path

    assert REPO not in tmp_path.parents  # run from outside the checkout
    stages = yaml.safe_load(shipped_path("demo").read_text())["stages"]
    env = cli_env(BINSIGHT_HOME=str(tmp_path / "home"), BINSIGHT_CACHE_DIR=str(tmp_path / "cache"))
    proc = run_cli("pipeline", *TINY_OVERRIDES, cwd=tmp_path, env=env, timeout=900)
    run = tmp_path / "runs" / "pipeline" / "tiny"
    state = json.loads((run / "pipeline.json").read_text())
    assert [s for s in stages if state["stages"][s]["status"] != "done"] == []
    for stage in stages:
        assert state["stages"][stage]["wall_s"] > 0
    # the dataset, manifests, plots, runs and artifacts are all inside the one run directory
    assert len(list((run / "data" / "synth" / "bin-images").glob("*.jpg"))) == 60
    assert {p.name for p in (run / "data" / "split").glob("*.csv")} >= {"train.csv", "val.csv", "test.csv"}
    assert (run / "stats" / "class_distribution.png").is_file()
    assert (run / "train" / "artifact" / "model.json").is_file()
    assert (run / "final" / "metrics.json").is_file() and (run / "tune" / "best.yaml").is_file()
    assert (run / "final" / "artifact" / "model.onnx").is_file()
    assert (run / "ddp_train" / "artifact" / "model.safetensors").is_file()
    assert "2 data-parallel workers" in state["stages"]["ddp_train"]["section"]["summary"]
    # smoke test: the endpoint and the gateway's three entry shapes all answered with a prediction
    answers = state["stages"]["smoke"]["outputs"]["answers"]
    assert set(answers) == {
        "endpoint (invoke_endpoint)",
        "gateway: image URL",
        "gateway: S3 object",
        "gateway: API Gateway request (HTTP)",
    }
    labels = {a["predicted_label"] for a in answers.values()}
    assert len(labels) == 1  # the same image and model give the same answer on every path
    assert all(a["check"]["decision"] in {"confirmed", "mismatch", "review"} for a in answers.values())
    # clean-up left no endpoint behind
    listed = run_cli("endpoint", "list", "--json", env=env)
    assert json.loads(listed.stdout) == []
    report = (run / "report.html").read_text()
    for title in ("Cost per stage", "SynthBins data", "Split", "Training (train)", "Evaluation (test split)"):
        assert title in report
    assert "Tuning" in report and "Smoke test" in report and "Clean-up" in report
    # the report leads with the answer: the tuned model's test numbers and artifact, then the models compared
    final = state["stages"]["final"]["outputs"]["metrics"]
    headline = report[report.index("class='headline'") : report.index("</div>", report.index("class='headline'"))]
    assert f"accuracy {final['accuracy']:.4g}" in headline and "count RMSE" in headline
    assert "final/artifact" in headline and "tiny_cnn" in headline
    comparison = report[report.index("Models compared on the test split") :]
    assert all(m in comparison for m in ("baseline (train)", "tuned (final)", "distributed (ddp_train)"))
    assert "metrics" in state["stages"]["ddp_train"]["outputs"]  # the DDP model is evaluated too
    assert "<nav><h2>Contents</h2>" in report and "href='#tune'" in report
    assert "<h2 id='environment'>" in report and "torch" in report and "git commit" in report
    assert "<summary>raw outputs (JSON)</summary>" in report and "<summary>pipeline.json</summary>" in report
    assert "href='final/artifact'" in report
    # SynthBins scores are not set against the capstone report's real-photo scores (the raw JSON may hold any number).
    prose = re.sub(r"<details>.*?</details>", "", report, flags=re.S)
    assert "0.339" not in prose and "0.352" not in prose
    assert "report: " in proc.stdout
    for library in ("werkzeug", "botocore", "httpx", "urllib3"):  # third-party INFO stays out of the log
        assert f"INFO {library}" not in proc.stderr, library

    # --only re-runs one stage in the same run directory; --resume then has nothing left to do
    before = state["stages"]["stats"]["finished"]
    run_cli("pipeline", "--run", run, "--only", "stats", cwd=tmp_path, env=env)
    again = json.loads((run / "pipeline.json").read_text())
    assert again["stages"]["stats"]["status"] == "done"
    assert again["stages"]["train"]["finished"] == state["stages"]["train"]["finished"]
    assert again["stages"]["stats"]["finished"] >= before
    resumed = run_cli("pipeline", "--resume", "name=tiny", cwd=tmp_path, env=env)
    assert "pipeline run directory: runs/pipeline/tiny" in resumed.stdout


def test_pipeline_rejects_unknown_stage_and_key(tmp_path: Path):
    bad = run_cli("pipeline", "stages=[synth,nope]", cwd=tmp_path, check=False)
    assert bad.returncode == 1 and "unknown stage 'nope'" in bad.stderr
    assert not (tmp_path / "runs").exists()  # nothing is created before the config is known to be good
    bad = run_cli("pipeline", "synth.nn=3", cwd=tmp_path, check=False)
    assert bad.returncode == 2 and "unknown key synth.nn" in bad.stderr


def test_interrupted_training_stage_continues_on_resume(tmp_path: Path):
    """A stage stopped by max_runtime keeps its checkpoint; `--resume` continues it instead of starting over."""
    cfg = tmp_path / "p.yaml"
    small = {
        "name": "stop",
        "stages": ["synth", "split", "train"],
        "synth": {"n": 40, "width_min": 96, "width_max": 128},
        "train": {
            "model": "tiny_cnn",
            "weights": "none",
            "freeze_backbone": False,
            "img_size": 32,
            "epochs": 80,
            "batch_size": 4,
            "patience": 0,
            "max_runtime": 4,
        },  # fmt: skip
    }
    cfg.write_text(yaml.safe_dump(small))
    env = cli_env(BINSIGHT_CACHE_DIR=str(tmp_path / "cache"))
    # The trainer holds at the end of epoch 2 (a barrier of 2 that the test completes after 8 s), so the 4 s
    # budget runs out mid-training however fast the machine is.
    held = held_env(tmp_path, epoch=2, barrier=2, BINSIGHT_CACHE_DIR=str(tmp_path / "cache"))
    release = threading.Timer(8.0, (tmp_path / "test-hooks" / "barrier" / "release").touch)
    release.start()
    try:
        first = run_cli("pipeline", "--config", cfg, cwd=tmp_path, env=held, check=False)
    finally:
        release.cancel()
    assert first.returncode == 3, first.stderr  # stopped with a checkpoint
    run = tmp_path / "runs" / "pipeline" / "stop"
    state = json.loads((run / "pipeline.json").read_text())
    assert state["stages"]["train"]["status"] == "failed"
    assert (run / "train" / "weights" / "last.pt").is_file()
    csv_path = run / "train" / "metrics.csv"
    done_epochs = len(csv_path.read_text().splitlines()) - 1 if csv_path.exists() else 0
    assert done_epochs < 80
    second = run_cli("pipeline", "--config", cfg, "--resume", "train.max_runtime=0", cwd=tmp_path, env=env)
    state = json.loads((run / "pipeline.json").read_text())
    assert state["stages"]["train"]["status"] == "done"
    assert "resuming" in second.stderr
    rows = (run / "train" / "metrics.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == list(range(1, 81))  # one run: epochs 1..80, none twice
    assert state["stages"]["synth"]["finished"] < state["stages"]["train"]["finished"]


def test_resume_uses_the_runs_recorded_config_not_todays_default(tmp_path: Path):
    """--resume continues with the run's own config.yaml: the default's synth.n and stages do not leak in, a
    changed input of a finished stage is refused, and the recorded config is left as it was."""
    first = ["name=mine", "stages=[synth,split]", "synth.n=30", "synth.width_min=96", "synth.width_max=128"]
    run_cli("pipeline", *first, cwd=tmp_path)
    run = tmp_path / "runs" / "pipeline" / "mine"
    recorded = (run / "config.yaml").read_text()
    resumed = run_cli("pipeline", "--resume", "name=mine", cwd=tmp_path)
    assert "pipeline run directory: runs/pipeline/mine" in resumed.stdout
    state = json.loads((run / "pipeline.json").read_text())
    assert set(state["stages"]) == {"synth", "split"}  # the demo's train, tune … were not added
    assert (run / "config.yaml").read_text() == recorded
    assert yaml.safe_load(recorded)["synth"]["n"] == 30
    refused = run_cli("pipeline", "--resume", "name=mine", "synth.n=50", cwd=tmp_path, check=False)
    assert refused.returncode == 2 and "contradicts finished stage(s) synth, split" in refused.stderr
    refused = run_cli("pipeline", "--resume", "name=mine", "stages=[synth,split,stats]", cwd=tmp_path, check=False)
    assert refused.returncode == 2 and "stages cannot change when resuming" in refused.stderr
    assert (run / "config.yaml").read_text() == recorded
    # re-running the stage from its start makes the change legitimate
    run_cli("pipeline", "--run", run, "--from", "synth", "synth.n=40", cwd=tmp_path)
    assert yaml.safe_load((run / "config.yaml").read_text())["synth"]["n"] == 40
    assert len(list((run / "data" / "synth" / "bin-images").glob("*.jpg"))) == 40


def test_a_stage_with_nothing_to_do_says_skipped(tmp_path: Path):
    run_cli("data", "synth", "--out", tmp_path / "ds", "--n", "12", "width_min=96", "width_max=128")
    run_cli("pipeline", "name=own", f"data={tmp_path / 'ds'}", "stages=[synth,split]", cwd=tmp_path)
    run = tmp_path / "runs" / "pipeline" / "own"
    state = json.loads((run / "pipeline.json").read_text())
    assert state["stages"]["synth"]["status"] == "skipped"
    assert "existing dataset" in state["stages"]["synth"]["reason"]
    assert state["stages"]["split"]["status"] == "done"  # it still got the dataset from the skipped stage
    assert "synth — skipped" in (run / "report.html").read_text()
    again = run_cli("pipeline", "--resume", "name=own", cwd=tmp_path)
    assert (
        json.loads((run / "pipeline.json").read_text())["stages"]["split"]["finished"]
        == state["stages"]["split"]["finished"]
    )
    assert "skipped" in again.stdout
