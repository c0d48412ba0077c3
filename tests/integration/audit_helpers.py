"""Tiny real inputs for the audit and review tests: a tiny_cnn artifact (32 px, classes 1-5) and a folder in ABID
layout with a few broken bins."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

LABELS = ["1", "2", "3", "4", "5"]


def make_artifact(folder: Path, version: str = "v1", thresholds: dict | None = None) -> Path:
    """An untrained tiny_cnn artifact (seeded weights): varied, deterministic probabilities."""
    import torch

    from binsight.inference.artifact import ArtifactMeta, save_artifact
    from binsight.models import create_model

    torch.manual_seed(0)
    model = create_model("tiny_cnn", 5)
    meta = ArtifactMeta(name="tiny", architecture="tiny_cnn", class_labels=LABELS, input_size=32, version=version)
    if thresholds:
        meta.decision_thresholds = dict(thresholds)
    save_artifact(folder, model.state_dict(), meta)
    return folder


def photo(path: Path, seed: int, size: tuple[int, int] = (48, 40)) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3)).astype(np.uint8)).save(path, quality=90)
    return path


def metadata(count: int) -> dict:
    return {"EXPECTED_QUANTITY": count, "BIN_FCSKU_DATA": {"B0": {"asin": "B0", "name": "thing", "quantity": count}}}


def make_abid_folder(root: Path, n_good: int = 12) -> Path:
    """``n_good`` normal bins (counts 1-5), plus: a corrupt photo, a photo without metadata, records of 0 and 7,
    metadata that is not JSON, and metadata without a photo."""
    images, meta = root / "bin-images", root / "metadata"
    meta.mkdir(parents=True, exist_ok=True)
    for i in range(n_good):
        photo(images / f"{i:03d}.jpg", i)
        (meta / f"{i:03d}.json").write_text(json.dumps(metadata(i % 5 + 1)))
    (images / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (meta / "corrupt.json").write_text(json.dumps(metadata(2)))
    photo(images / "nometa.jpg", 100)
    photo(images / "zero.jpg", 101)
    (meta / "zero.json").write_text(json.dumps({"EXPECTED_QUANTITY": 0, "BIN_FCSKU_DATA": {}}))
    photo(images / "seven.jpg", 102)
    (meta / "seven.json").write_text(json.dumps(metadata(7)))
    photo(images / "badjson.jpg", 103)
    (meta / "badjson.json").write_text("{not json")
    (meta / "orphan.json").write_text(json.dumps(metadata(3)))
    return root


def make_audit(root: Path, n_good: int = 12) -> Path:
    """An audit folder (``binsight audit`` of :func:`make_abid_folder` with the tiny artifact) under ``root``."""
    from binsight.audit.runner import run_audit
    from binsight.audit.scorers import LocalScorer
    from binsight.audit.sources import open_source
    from binsight.inference.predictor import Predictor

    artifact = make_artifact(root / "artifact")
    abid = make_abid_folder(root / "abid", n_good=n_good)
    run_audit(open_source(str(abid)), LocalScorer(Predictor(artifact)), root / "audit", show_progress=False)
    return root / "audit"


def copy_audit(template: Path, dest: Path) -> Path:
    """A fresh folder holding only ``template``'s audit.json (a review starts there without a review.db)."""
    dest.mkdir(parents=True)
    (dest / "audit.json").write_text((template / "audit.json").read_text())
    return dest
