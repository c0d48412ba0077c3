"""`binsight export`: ONNX agrees with PyTorch, int8 quantization calibrates on val, SageMaker tar contents."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import run_cli

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A run folder: config.yaml pointing at a tiny split (8 val, 8 test 64 px JPEGs) and a tiny_cnn artifact."""
    import torch

    from binsight.data.manifest import ManifestRow, write_manifest
    from binsight.inference.artifact import ArtifactMeta, save_artifact
    from binsight.models import create_model

    root = tmp_path_factory.mktemp("export")
    split = root / "split"
    (split / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, n in (("train", 2), ("val", 8), ("test", 8)):
        rows = []
        for i in range(n):
            path = split / "images" / f"{name}{i}.jpg"
            Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(path)
            rows.append(ManifestRow(path, i % 5 + 1, hashlib.sha256(path.read_bytes()).hexdigest(), "test"))
        write_manifest(split / f"{name}.csv", rows)
    run = root / "run"
    (run / "artifact").mkdir(parents=True)
    (run / "config.yaml").write_text(f"name: exp\nmodel: tiny_cnn\ndata: {split}\n")
    torch.manual_seed(0)
    model = create_model("tiny_cnn", 5)
    meta = ArtifactMeta(name="exp", architecture="tiny_cnn", class_labels=list("12345"), input_size=64, version="v1")
    save_artifact(run / "artifact", model.state_dict(), meta)
    return run


def test_onnx_export_matches_torch(run_dir):
    import onnx

    from binsight.inference.export import export_onnx
    from binsight.inference.predictor import Predictor

    path = export_onnx(run_dir)
    assert path == run_dir / "artifact" / "model.onnx"
    proto = onnx.load(str(path))
    assert max(op.version for op in proto.opset_import if op.domain in ("", "ai.onnx")) >= 17
    batch_dim = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.dim_value  # dynamic batch axis
    assert proto.graph.output[0].type.tensor_type.shape.dim[1].dim_value == 5  # raw head outputs, K=5

    torch_p = Predictor(run_dir, backend="torch", threads=1)
    onnx_p = Predictor(run_dir, backend="onnx", threads=1)
    rng = np.random.default_rng(1)
    for n in (1, 3):  # two batch sizes through the same graph
        x = rng.standard_normal((n, 3, 64, 64)).astype(np.float32)
        np.testing.assert_allclose(onnx_p.predict_proba(x), torch_p.predict_proba(x), atol=1e-4, rtol=0)
    image = rng.integers(0, 255, (40, 70, 3), dtype=np.uint8)
    img = Image.fromarray(image)
    assert onnx_p.predict_images([img])[0]["predicted_label"] == torch_p.predict_images([img])[0]["predicted_label"]


def test_cli_onnx_int8_reports_accuracy_and_speed(run_dir):
    proc = run_cli("export", "--run", run_dir, "--format", "onnx", "--int8", "--threads", "1")
    artifact = run_dir / "artifact"
    assert (artifact / "model.onnx").is_file() and (artifact / "model.int8.onnx").is_file()
    assert "calibrated on 8 validation images" in proc.stdout
    for name in ("torch", "onnx", "onnx-int8", "accuracy", "macro-F1", "images/s"):
        assert name in proc.stdout
    report = json.loads((run_dir / "export.json").read_text())
    rows = {r["backend"]: r for r in report["backends"]}
    assert set(rows) == {"torch", "onnx", "onnx-int8"} and report["n_test"] == 8
    assert rows["onnx"]["max_abs_prob_diff"] < 1e-4
    # the torch reference says which precision the policy ran it in (tiny_cnn: float32 everywhere)
    assert rows["torch"]["precision"] == "float32" and rows["onnx"]["precision"] is None
    assert "torch (float32)" in proc.stdout
    assert rows["onnx-int8"]["max_abs_prob_diff"] < 0.2  # quantized, so close but not equal
    assert all(r["images_per_s"] > 0 and 0 <= r["accuracy"] <= 1 for r in rows.values())

    from binsight.inference.predictor import Predictor

    int8 = Predictor(run_dir, backend="onnx-int8", threads=1)
    assert int8.predict_proba(np.zeros((2, 3, 64, 64), np.float32)).shape == (2, 5)
    ops = {node.op_type for node in __import__("onnx").load(str(artifact / "model.int8.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # QDQ format


def test_int8_without_a_split_says_how_to_fix(tmp_path, run_dir):
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(run_dir / "artifact", bare)
    proc = run_cli("export", "--run", bare, "--format", "onnx", "--int8", check=False)
    assert proc.returncode == 1
    assert "--data SPLITDIR" in proc.stderr and "Traceback" not in proc.stderr


def test_sagemaker_tar_holds_the_artifact_files(run_dir, tmp_path):
    config = tmp_path / "export.yaml"
    config.write_text("format: sagemaker\n")  # the typed config of `export`, here from a file
    proc = run_cli("export", "--model", run_dir, "--config", config)
    archive = run_dir / "model.tar.gz"
    assert str(archive) in proc.stdout
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
        assert {"model.json", "model.safetensors"} <= names
        assert all("/" not in n for n in names)  # files at the root: SageMaker unpacks into /opt/ml/model
        # extraction filters arrived in Python 3.11.4; the names were checked above (no paths, no links)
        tar.extractall(tmp_path / "unpacked", **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    original = (run_dir / "artifact" / "model.safetensors").read_bytes()
    assert (tmp_path / "unpacked" / "model.safetensors").read_bytes() == original

    from binsight.inference.predictor import Predictor

    assert Predictor(tmp_path / "unpacked", threads=1).meta.name == "exp"


def test_export_settings_are_a_typed_config(run_dir):
    proc = run_cli("export", "--model", run_dir, "calib_size=0", check=False)
    assert proc.returncode == 2 and "calib_size must be >= 1" in proc.stderr
    proc = run_cli("export", "--run", run_dir, "format=sagemaker", "int8=true", check=False)
    assert proc.returncode == 2 and "int8 applies to format onnx" in proc.stderr
