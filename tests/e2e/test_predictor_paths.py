"""One Predictor behind every path: an ensemble artifact with flip TTA and fitted decision offsets gives the same
probabilities through `binsight evaluate` (predictions.csv), `binsight predict` and the `binsight serve` HTTP API."""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from binsight.data.transforms import EvalPreset, eval_transform
from binsight.inference.artifact import ArtifactMeta, read_meta, save_artifact, write_meta
from binsight.inference.ensemble import write_ensemble
from binsight.inference.predictor import Predictor
from binsight.models import create_model
from tests.conftest import run_cli
from tests.e2e.test_serve import start_server

pytestmark = pytest.mark.timeout(300)
LABELS = ["1", "2", "3", "4", "5"]


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory) -> tuple[Path, Path, list[Path]]:
    """A 2-member tiny_cnn ensemble (flip TTA, decision rule macro_f1) and a split of small JPEGs."""
    root = tmp_path_factory.mktemp("paths")
    split, images = root / "split", root / "split" / "images"
    images.mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines = {name: ["path,label,sha256,source"] for name in ("train", "val", "test")}
    for i, name in enumerate(["train"] * 2 + ["val"] * 15 + ["test"] * 6):
        label = i % 5 + 1
        pixels = (rng.integers(0, 80, (40, 52, 3)) + label * 30).clip(0, 255).astype(np.uint8)
        path = images / f"{name}_{i:02d}.jpg"
        Image.fromarray(pixels).save(path, quality=90)
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        lines[name].append(f"images/{path.name},{label},{sha},test")
    for name, rows in lines.items():
        (split / f"{name}.csv").write_text("\n".join(rows) + "\n")
    # A few steps on the images (brightness grows with the count): outputs that differ between images.
    transform = eval_transform(EvalPreset(size=32))
    fit = sorted(images.glob("*.jpg"))
    x = torch.stack([transform(Image.open(path)) for path in fit])
    y = torch.tensor([(int(path.stem.split("_")[1]) % 5) for path in fit])
    members = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = create_model("tiny_cnn", 5)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(15):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        meta = ArtifactMeta(
            name=f"m{seed}", architecture="tiny_cnn", class_labels=LABELS, input_size=32, version=f"v{seed}"
        )
        members.append(save_artifact(root / f"m{seed}", model.eval().state_dict(), meta))
    ens = write_ensemble(members, root / "ens", tta_flip=True)
    write_meta(ens, replace(read_meta(ens), decision_rule="macro_f1"))
    return ens, split, sorted(images.glob("test_*.jpg"))


@pytest.fixture(scope="module")
def evaluated(ensemble) -> dict[str, dict[str, float]]:
    ens, split, _ = ensemble
    run_cli("evaluate", "--run", ens, "--data", split, "--threads", "1")
    with open(ens / "predictions.csv", newline="") as f:
        return {
            Path(r["path"]).name: {k[2:]: float(v) for k, v in r.items() if k.startswith("p_")}
            for r in csv.DictReader(f)
        }


def test_evaluate_fitted_temperature_and_offsets_into_the_artifact(ensemble, evaluated):
    meta = read_meta(ensemble[0])
    assert meta.temperature != 1.0 and len(meta.class_bias) == 5 and any(meta.class_bias)
    metrics = json.loads((ensemble[0] / "metrics.json").read_text())
    assert metrics["class_bias"] == meta.class_bias


def test_predict_cli_and_in_process_match_evaluate(ensemble, evaluated):
    ens, _, images = ensemble
    proc = run_cli("predict", "--model", ens, *images, "--json-list", "--threads", "1")
    docs = json.loads(proc.stdout)
    predictor = Predictor(ens, threads=1)
    for path, doc in zip(images, docs, strict=True):
        local = predictor.predict_bytes(path.read_bytes())
        for label in LABELS:
            assert doc["probabilities"][label] == pytest.approx(evaluated[path.name][label], abs=2e-6)
            assert local["probabilities"][label] == pytest.approx(doc["probabilities"][label], abs=1e-6)
        assert doc["predicted_label"] == max(evaluated[path.name], key=evaluated[path.name].get)


def test_serve_http_matches_evaluate(ensemble, evaluated, tmp_path):
    ens, _, images = ensemble
    server = start_server(ens, tmp_path, "--workers-threads", "1")
    try:
        server.wait_ready()
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for path in images:
                r = client.post("/invocations", content=path.read_bytes(), headers={"content-type": "image/jpeg"})
                assert r.status_code == 200, r.text
                for label in LABELS:
                    assert r.json()["probabilities"][label] == pytest.approx(evaluated[path.name][label], abs=2e-6)
    finally:
        server.stop()


def test_binsight_ensemble_builds_one_artifact_with_the_members_mean_calibration(ensemble, tmp_path):
    ens, split, _ = ensemble
    members = []
    for i, (t, bias) in enumerate(((1.2, [0.0, 0.2, 0.4, 0.0, -0.2]), (1.8, [0.0, 0.0, 0.2, 0.4, 0.2]))):
        folder = tmp_path / f"run{i}"
        folder.mkdir()
        for file in (ens / "members" / str(i)).iterdir():
            (folder / file.name).write_bytes(file.read_bytes())
        write_meta(folder, replace(read_meta(folder), temperature=t, class_bias=bias, decision_rule="macro_f1"))
        members.append(folder)

    out = tmp_path / "cli-ens"
    proc = run_cli("ensemble", *members, "--out", out, "--tta")
    assert "2 members" in proc.stdout and "flip TTA on" in proc.stdout
    meta = read_meta(out)
    assert len(meta.members) == 2 and meta.tta_flip and meta.decision_rule == "macro_f1"
    assert meta.temperature == pytest.approx(1.5)
    assert meta.class_bias == pytest.approx([0.0, 0.1, 0.3, 0.2, 0.0])
    evaluated = run_cli("evaluate", "--model", out, "--data", split, "--no-calibrate", "--threads", "1")
    assert evaluated.returncode == 0
    metrics = json.loads((out / "metrics.json").read_text())  # a bare artifact: its data is its own
    assert metrics["temperature"] == pytest.approx(1.5) and metrics["n"] == 6

    refused = run_cli("ensemble", members[0], "--out", tmp_path / "one", check=False)
    assert refused.returncode != 0 and "at least 2 artifacts" in refused.stderr
    again = run_cli("ensemble", *members, "--out", out, check=False)
    assert again.returncode != 0 and "already holds a model artifact" in again.stderr
