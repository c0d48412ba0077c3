"""The Predictor on a tiny artifact: schema, probabilities, inventory check, refusing bad input."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from binsight.data.transforms import EvalPreset, eval_transform
from binsight.errors import BinsightError, DataError
from binsight.inference.artifact import ArtifactMeta, save_artifact
from binsight.inference.predictor import Predictor, check_decision
from binsight.models import create_model

LABELS = ["1", "2", "3", "4", "5"]


def make_artifact(folder: Path, **meta_fields) -> Path:
    torch.manual_seed(0)
    model = create_model("tiny_cnn", 5)
    fields = {"name": "tiny", "architecture": "tiny_cnn", "class_labels": LABELS, "input_size": 32, "version": "v1"}
    fields.update(meta_fields)
    return save_artifact(folder, model.state_dict(), ArtifactMeta(**fields))


def jpeg_bytes(seed: int, size=(48, 40)) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels, with almost no pixel data: a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00")) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("run")
    make_artifact(run / "artifact")
    return run


@pytest.fixture(scope="module")
def predictor(run_dir) -> Predictor:
    return Predictor(run_dir, threads=1)


def test_prediction_schema_and_probabilities(predictor):
    out = predictor.predict_bytes(jpeg_bytes(0))
    assert set(out) == {"predicted_label", "predicted_count", "confidence", "probabilities", "class_labels", "model"}
    assert out["class_labels"] == LABELS
    assert list(out["probabilities"]) == LABELS
    assert sum(out["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert out["predicted_label"] == max(out["probabilities"], key=out["probabilities"].get)
    assert out["predicted_count"] == int(out["predicted_label"])
    assert out["confidence"] == out["probabilities"][out["predicted_label"]]
    assert out["model"] == {"name": "tiny", "version": "v1"}


def test_accepts_artifact_folder_and_model_json(run_dir, predictor):
    data = jpeg_bytes(1)
    expected = predictor.predict_bytes(data)
    assert Predictor(run_dir / "artifact", threads=1).predict_bytes(data) == expected
    assert Predictor(run_dir / "artifact" / "model.json", threads=1).predict_bytes(data) == expected


def test_missing_artifact_is_a_clear_error(tmp_path):
    with pytest.raises(BinsightError, match="no model artifact"):
        Predictor(tmp_path)


def test_preprocess_is_exactly_the_eval_transform(predictor):
    img = predictor.decode(jpeg_bytes(2, size=(70, 30)))
    ref = eval_transform(EvalPreset(size=32, resize="letterbox"))(img)
    x = predictor.preprocess(img)
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    assert torch.equal(x, ref)


def test_predict_images_batches_like_single_images(run_dir):
    p = Predictor(run_dir, threads=1, max_batch=2)
    images = [p.decode(jpeg_bytes(i)) for i in range(5)]
    batched = p.predict_images(images)
    singles = [p.predict_images([img])[0] for img in images]
    assert len(batched) == 5
    for a, b in zip(batched, singles, strict=True):
        assert a["predicted_label"] == b["predicted_label"]
        for label in LABELS:
            assert a["probabilities"][label] == pytest.approx(b["probabilities"][label], abs=1e-5)


def test_temperature_from_artifact_is_applied(tmp_path):
    make_artifact(tmp_path / "t1")
    make_artifact(tmp_path / "t4", temperature=4.0)
    p1, p4 = Predictor(tmp_path / "t1", threads=1), Predictor(tmp_path / "t4", threads=1)
    batch = torch.stack([p1.preprocess(p1.decode(jpeg_bytes(i))) for i in range(3)])
    logits = torch.from_numpy(p1.predict_outputs(batch))
    np.testing.assert_allclose(p1.predict_proba(batch), torch.softmax(logits, 1).numpy(), atol=1e-6)
    np.testing.assert_allclose(p4.predict_proba(batch), torch.softmax(logits / 4, 1).numpy(), atol=1e-6)


@pytest.mark.parametrize(
    ("probs", "expected", "decision", "match"),
    [
        ([0.7, 0.1, 0.1, 0.05, 0.05], 1, "confirmed", True),  # predicted 1 with 0.7 >= high 0.6
        ([0.7, 0.1, 0.1, 0.05, 0.05], 3, "mismatch", False),  # p(3) = 0.1 < low 0.2
        ([0.5, 0.3, 0.1, 0.05, 0.05], 1, "review", True),  # predicted 1 but 0.5 < 0.6
        ([0.5, 0.3, 0.1, 0.05, 0.05], 2, "review", False),  # not predicted, but p(2) = 0.3 >= 0.2
        ([0.5, 0.3, 0.1, 0.05, 0.05], 9, "mismatch", False),  # not a class: probability 0
    ],
)
def test_check_decision(tmp_path, probs, expected, decision, match):
    make_artifact(tmp_path, decision_thresholds={"review_low": 0.2, "review_high": 0.6})
    p = Predictor(tmp_path, threads=1)
    out = p.format_prediction(np.array(probs), expected_quantity=expected)
    assert out["check"] == {"expected_quantity": expected, "match": match, "decision": decision}
    assert "check" not in p.format_prediction(np.array(probs))


def test_check_on_a_real_image_follows_the_thresholds(predictor):
    out = predictor.predict_bytes(jpeg_bytes(3), expected_quantity=2)
    th = predictor.meta.decision_thresholds
    expected_decision = check_decision(out["confidence"], out["probabilities"]["2"], out["predicted_count"] == 2, th)
    assert out["check"]["decision"] == expected_decision
    assert out["check"]["match"] == (out["predicted_count"] == 2)


def test_check_decision_thresholds_edges():
    th = {"review_low": 0.2, "review_high": 0.6}
    assert check_decision(0.6, 0.6, True, th) == "confirmed"  # >= high
    assert check_decision(0.9, 0.2, False, th) == "review"  # exactly low is not below it
    assert check_decision(0.9, 0.19, False, th) == "mismatch"


def test_decompression_bomb_is_refused_before_decoding(predictor):
    # 49 MP: over binsight's 40 MP limit, under PIL's own warning level
    with pytest.raises(DataError, match="over the limit of 40 MP"):
        predictor.decode(png_header_only(7000, 7000))
    # 10 gigapixels: PIL itself refuses at open; still a DataError, never a MemoryError
    with pytest.raises(DataError, match="decompression bomb"):
        predictor.decode(png_header_only(100_000, 100_000))


def test_pixel_limit_is_configurable(run_dir):
    p = Predictor(run_dir, threads=1, max_pixels=1000)
    with pytest.raises(DataError, match="over the limit"):
        p.decode(jpeg_bytes(0))  # 48x40 = 1920 pixels


@pytest.mark.parametrize("data", [b"", b"not an image at all", jpeg_bytes(4)[:200]])
def test_corrupt_bytes_are_refused(predictor, data):
    with pytest.raises(DataError):
        predictor.predict_bytes(data)


def test_open_image_names_the_file(predictor, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(DataError, match="broken.jpg"):
        predictor.open_image(bad)
    with pytest.raises(DataError, match="cannot read"):
        predictor.open_image(tmp_path / "missing.jpg")


def test_png_with_alpha_and_grayscale_are_accepted(predictor):
    for mode in ("RGBA", "L", "P"):
        buf = io.BytesIO()
        Image.new(mode, (20, 30)).save(buf, format="PNG")
        assert predictor.predict_bytes(buf.getvalue())["predicted_label"] in LABELS


def test_unknown_backend_is_a_clear_error(run_dir):
    with pytest.raises(BinsightError, match="backend"):
        Predictor(run_dir, backend="nope")
