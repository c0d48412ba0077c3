"""Distillation: ``teacher=`` turns a model's calibrated probabilities on the training images into soft targets."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil

import numpy as np
import pytest
import torch

from binsight.config import load_config
from binsight.config.schemas import TrainConfig
from binsight.data.manifest import read_manifest, write_manifest
from binsight.errors import BinsightError
from binsight.models import create_model
from binsight.training.checkpoint import load_checkpoint
from binsight.training.run import train
from binsight.training.teacher import TARGETS_FILE, teacher_targets
from tests.integration.train_helpers import TINY

# ``split``: the default tiny split, from tests/integration/conftest.py; ``one_thread`` from tests/conftest.py.
pytestmark = pytest.mark.usefixtures("one_thread")

TEMPERATURE = 2.0


def _cfg(split, tmp_path, *extra: str) -> TrainConfig:
    overrides = [*TINY, f"data={split}", f"cache_dir={tmp_path / 'cache'}", "deterministic=true", *extra]
    return load_config(TrainConfig, None, overrides)


@pytest.fixture(scope="module")
def teacher(split, tmp_path_factory):
    """A tiny trained run whose artifact has a temperature and decision offsets (which targets must ignore)."""
    root = tmp_path_factory.mktemp("teacher")
    result = train(_cfg(split, root, "epochs=2", "seed=7"), out=root / "run", handle_signals=False)
    meta_path = result.artifact_dir / "model.json"
    meta = json.loads(meta_path.read_text())
    meta.update(temperature=TEMPERATURE, class_bias=[0.0, 3.0, 0.0])
    meta_path.write_text(json.dumps(meta))
    return result.run_dir


def _teacher_probs_by_hand(teacher, split) -> np.ndarray:
    from binsight.inference.predictor import Predictor

    predictor = Predictor(teacher, threads=1)
    rows = read_manifest(split / "train.csv")
    batch = torch.stack([predictor.preprocess(predictor.open_image(r.path)) for r in rows])
    logits = torch.from_numpy(predictor.predict_outputs(batch)).double()
    return torch.softmax(logits / TEMPERATURE, dim=1).numpy()


def test_targets_are_the_teachers_calibrated_probabilities_without_its_decision_offsets(split, teacher, tmp_path):
    student = train(_cfg(split, tmp_path, "epochs=1", f"teacher={teacher}"), out=tmp_path / "s", handle_signals=False)
    saved = np.load(student.run_dir / TARGETS_FILE)["probs"]
    np.testing.assert_allclose(saved, _teacher_probs_by_hand(teacher, split), atol=1e-5)
    assert load_config(TrainConfig, student.run_dir / "config.yaml").teacher == str(teacher)


def test_with_teacher_weight_1_the_labels_do_not_move_the_student(split, teacher, tmp_path):
    """Same images and order, train labels rotated: at teacher_weight=1 the student ends with the same weights."""
    other = tmp_path / "relabelled"
    shutil.copytree(split, other)
    rows = read_manifest(split / "train.csv")
    labels = [r.label for r in rows]
    write_manifest(
        other / "train.csv", [dataclasses.replace(r, label=labels[(i + 1) % len(labels)]) for i, r in enumerate(rows)]
    )
    pure = ["epochs=1", "weight_decay=0", f"teacher={teacher}", "teacher_weight=1.0"]
    a = train(_cfg(split, tmp_path, *pure), out=tmp_path / "a", handle_signals=False)
    b = train(_cfg(other, tmp_path, *pure), out=tmp_path / "b", handle_signals=False)
    half = train(_cfg(split, tmp_path, *pure[:3], "teacher_weight=0.5"), out=tmp_path / "c", handle_signals=False)
    wa, wb, wc = (load_checkpoint(r.run_dir / "weights" / "last.pt")["model"] for r in (a, b, half))
    for k in wa:
        assert torch.equal(wa[k], wb[k]), f"{k}: the labels changed a student that learns from the teacher alone"
    torch.manual_seed(0)
    initial = create_model("tiny_cnn", 3, head="softmax").state_dict()
    assert any(not torch.equal(initial[k], wa[k]) for k in initial if k.startswith("head.")), (
        "the student did not learn"
    )
    assert any(not torch.equal(wa[k], wc[k]) for k in wa if wa[k].is_floating_point()), "teacher_weight is ignored"


def test_targets_are_reused_for_the_same_teacher_and_rows_only(split, teacher, tmp_path, caplog):
    args = (str(teacher), split, [1, 2, 3], "hash-a", tmp_path, 1)
    first = teacher_targets(*args)
    with caplog.at_level(logging.INFO, logger="binsight.training.teacher"):
        again = teacher_targets(*args)
        assert any("reused" in r.getMessage() for r in caplog.records)
        caplog.clear()
        teacher_targets(str(teacher), split, [1, 2, 3], "hash-b", tmp_path, 1)  # other rows: computed again
        assert not any("reused" in r.getMessage() for r in caplog.records)
    np.testing.assert_array_equal(first, again)
    (tmp_path / TARGETS_FILE).write_bytes(b"PK\x03\x04 half a file")  # a damaged file, e.g. copied half-way
    np.testing.assert_array_equal(teacher_targets(str(teacher), split, [1, 2, 3], "hash-b", tmp_path, 1), first)


def test_a_teacher_that_cannot_teach_is_refused_clearly(split, teacher, tmp_path):
    with pytest.raises(BinsightError, match=r"teacher=.*nope: no model artifact"):
        train(_cfg(split, tmp_path, f"teacher={tmp_path / 'nope'}"), out=tmp_path / "x", handle_signals=False)
    assert not (tmp_path / "x").exists(), "a teacher that cannot load must fail before the run folder is made"
    with pytest.raises(BinsightError, match=r"predicts the classes \['1', '2', '3'\], the split has \['1', '2'\]"):
        teacher_targets(str(teacher), split, [1, 2], "h", tmp_path, 1)
    with pytest.raises(ValueError, match=r"teacher_weight must be in \(0, 1\]"):
        _cfg(split, tmp_path, "teacher_weight=0")
