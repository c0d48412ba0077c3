"""The Predictor's flip TTA, ensemble members and decision offsets (binsight.inference.predictor/ensemble)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from binsight.errors import BinsightError
from binsight.evaluation.decision import apply_class_bias
from binsight.inference.artifact import ArtifactMeta, read_meta, save_artifact, write_meta
from binsight.inference.ensemble import write_ensemble
from binsight.inference.predictor import Predictor, outputs_to_probs_np
from binsight.models import create_model

pytestmark = pytest.mark.usefixtures("one_thread")
LABELS = ["1", "2", "3", "4", "5"]


def tiny_artifact(folder: Path, seed: int, size: int = 32, **meta_fields) -> Path:
    torch.manual_seed(seed)
    model = create_model("tiny_cnn", 5)
    meta = ArtifactMeta(
        name=f"m{seed}",
        architecture="tiny_cnn",
        class_labels=LABELS,
        input_size=size,
        version=f"v{seed}",
        **meta_fields,
    )
    return save_artifact(folder, model.state_dict(), meta)


@pytest.fixture
def batch() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(3, 3, 32, 32)).astype(np.float32)


def test_flip_tta_averages_the_image_and_its_mirror(tmp_path, batch):
    plain = Predictor(tiny_artifact(tmp_path / "a", 0), threads=1)
    tta = Predictor(tiny_artifact(tmp_path / "b", 0, tta_flip=True), threads=1)
    expected = (plain.predict_outputs(batch) + plain.predict_outputs(batch[..., ::-1].copy())) / 2
    np.testing.assert_allclose(tta.predict_outputs(batch), expected, atol=1e-6)
    assert not np.allclose(tta.predict_outputs(batch), plain.predict_outputs(batch))


def test_ensemble_averages_member_outputs_then_applies_temperature_and_bias(tmp_path, batch):
    members = [tiny_artifact(tmp_path / f"m{i}", i) for i in range(3)]
    ens = write_ensemble(members, tmp_path / "ens")
    meta = read_meta(ens)
    assert meta.members == ["members/0", "members/1", "members/2"] and meta.version.startswith("ens-")
    write_meta(ens, replace(meta, temperature=1.7, class_bias=[0.0, 0.5, 1.0, -0.5, 0.2]))
    predictor = Predictor(ens, threads=1)
    outs = np.mean([Predictor(m, threads=1).predict_outputs(batch) for m in members], axis=0)
    np.testing.assert_allclose(predictor.predict_outputs(batch), outs, atol=1e-6)
    expected = apply_class_bias(outputs_to_probs_np(outs, "softmax", 1.7), [0.0, 0.5, 1.0, -0.5, 0.2])
    np.testing.assert_allclose(predictor.predict_proba(batch), expected, atol=1e-6)
    # The prediction JSON follows the shifted probabilities: its arg-max is the fitted decision.
    doc = predictor.format_prediction(expected[0])
    assert doc["predicted_label"] == LABELS[int(expected[0].argmax())]


def test_ensemble_members_must_share_preprocessing_and_folder_must_be_new(tmp_path):
    a, b = tiny_artifact(tmp_path / "a", 0), tiny_artifact(tmp_path / "b", 1, size=48)
    with pytest.raises(BinsightError, match="preprocessing"):
        write_ensemble([a, b], tmp_path / "bad")
    assert not (tmp_path / "bad" / "model.json").exists()
    with pytest.raises(BinsightError, match="at least 2"):
        write_ensemble([a], tmp_path / "one")
    with pytest.raises(BinsightError, match="already holds"):
        write_ensemble([a, a], a)


def test_bias_free_artifacts_predict_as_before(tmp_path, batch):
    predictor = Predictor(tiny_artifact(tmp_path / "a", 0), threads=1)
    np.testing.assert_allclose(
        predictor.predict_proba(batch), outputs_to_probs_np(predictor.predict_outputs(batch), "softmax"), atol=1e-9
    )


def test_an_ensemble_is_exported_member_by_member(tmp_path):
    from binsight.inference.export import load_torch_model

    ens = write_ensemble([tiny_artifact(tmp_path / "a", 0), tiny_artifact(tmp_path / "b", 1)], tmp_path / "ens")
    with pytest.raises(BinsightError, match="export each member"):
        load_torch_model(ens)
    assert load_torch_model(ens / "members" / "0") is not None


def test_an_ensemble_starts_with_its_members_mean_calibration(tmp_path):
    a = tiny_artifact(tmp_path / "a", 0, temperature=1.5, class_bias=[0.0, 0.4, 0.2, -0.2, 1.0])
    b = tiny_artifact(tmp_path / "b", 1, temperature=2.5)  # no offsets: counts as zeros
    meta = read_meta(write_ensemble([a, b], tmp_path / "ens"))
    assert meta.temperature == pytest.approx(2.0)
    assert meta.class_bias == pytest.approx([0.0, 0.2, 0.1, -0.1, 0.5])
    plain = read_meta(
        write_ensemble([tiny_artifact(tmp_path / "c", 2), tiny_artifact(tmp_path / "d", 3)], tmp_path / "e2")
    )
    assert plain.temperature == 1.0 and plain.class_bias == []
