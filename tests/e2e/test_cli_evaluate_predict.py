"""`binsight evaluate` and `binsight predict` through the real CLI on a tiny run directory."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from binsight.data.transforms import EvalPreset, eval_transform
from binsight.evaluation.metrics import classification_metrics, expected_calibration_error
from binsight.inference.artifact import ArtifactMeta, read_meta, save_artifact
from binsight.models import create_model
from tests.conftest import run_cli

LABELS = ["1", "2", "3", "4", "5"]


def _write_split(folder: Path, name: str, items: list[tuple[Path, int]]) -> None:
    lines = ["path,label,sha256,source"]
    for path, label in items:
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        lines.append(f"{path.relative_to(folder).as_posix()},{label},{sha},test")
    (folder / f"{name}.csv").write_text("\n".join(lines) + "\n")


def _tensor(path: Path) -> torch.Tensor:
    return eval_transform(EvalPreset(size=32))(Image.open(path))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A run dir: artifact (tiny_cnn, 32 px) + config.yaml pointing at a split of 19 tiny JPEGs + 1 corrupt."""
    root = tmp_path_factory.mktemp("evalrun")
    split = root / "split"
    images = split / "images"
    images.mkdir(parents=True)
    rng = np.random.default_rng(0)
    items: dict[str, list[tuple[Path, int]]] = {"train": [], "val": [], "test": []}
    for i, name in enumerate(["train"] * 5 + ["val"] * 6 + ["test"] * 8):
        label = i % 5 + 1
        # brighter images for larger counts, so predictions are not all one class
        base = rng.integers(0, 60, (36, 44, 3)) + rng.integers(0, 90) + label * 25  # overlapping classes
        path = images / f"{name}_{i:02d}.jpg"
        Image.fromarray(base.clip(0, 255).astype(np.uint8)).save(path, quality=90)
        items[name].append((path, label))
    corrupt = images / "test_corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    items["test"].append((corrupt, 2))
    for name, rows in items.items():
        _write_split(split, name, rows)

    run = root / "run"
    torch.manual_seed(0)
    model = create_model("tiny_cnn", 5)
    # A few steps on the train images: varied, overconfident predictions on val/test (something to calibrate).
    fit = items["train"]
    x = torch.stack([_tensor(path) for path, _ in fit])
    y = torch.tensor([label - 1 for _, label in fit])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(25):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    meta = ArtifactMeta(name="tiny", architecture="tiny_cnn", class_labels=LABELS, input_size=32, version="v1")
    save_artifact(run / "artifact", model.state_dict(), meta)
    (run / "config.yaml").write_text(f"name: tiny\nmodel: tiny_cnn\nimg_size: 32\ndata: {split}\n")
    return run


@pytest.fixture(scope="module")
def evaluated(tiny_run) -> tuple[Path, dict, object]:
    proc = run_cli("evaluate", "--run", tiny_run, "--batch-size", "3", "--threads", "1")
    return tiny_run, json.loads((tiny_run / "metrics.json").read_text()), proc


def _read_predictions(path: Path) -> tuple[list[dict], np.ndarray]:
    with path.open() as f:
        rows = list(csv.DictReader(f))
    probs = np.array([[float(r[f"p_{label}"]) for label in LABELS] for r in rows])
    return rows, probs


def test_evaluate_writes_report_files(evaluated):
    run, metrics, proc = evaluated
    for name in ("metrics.json", "predictions.csv", "confusion_matrix_test.png", "mistakes_test.png"):
        assert (run / name).is_file(), name
    assert (run / "confusion_matrix_test_normalized.png").stat().st_size > 1000
    assert "accuracy" in proc.stdout and "ECE" in proc.stdout
    assert "test_corrupt.jpg" in proc.stderr  # reported, not a crash


def test_metrics_json_matches_predictions_csv(evaluated):
    run, metrics, _ = evaluated
    rows, probs = _read_predictions(run / "predictions.csv")
    assert len(rows) == 8 == metrics["n"]
    assert metrics["skipped"] == 1
    assert metrics["skipped_files"][0]["path"].endswith("test_corrupt.jpg")
    y = [LABELS.index(r["label"]) for r in rows]
    pred = [LABELS.index(r["predicted"]) for r in rows]
    assert pred == list(probs.argmax(1))
    ref = classification_metrics(y, pred, 5, LABELS)
    for key in ("accuracy", "macro_f1", "weighted_f1", "rmse", "mae", "off_by_one"):
        assert metrics[key] == pytest.approx(ref[key]), key
    assert metrics["confusion_matrix"] == ref["confusion_matrix"]
    assert metrics["per_class"] == ref["per_class"]
    assert metrics["ece_after"] == pytest.approx(expected_calibration_error(probs, y), abs=1e-4)
    assert metrics["ece"] == metrics["ece_after"]
    assert metrics["split"] == "test"


def test_calibration_is_fitted_on_val_and_written_to_the_artifact(evaluated):
    run, metrics, _ = evaluated
    assert metrics["calibrated"] is True
    assert metrics["temperature"] > 0 and metrics["temperature"] != 1.0
    th = metrics["review_thresholds"]
    assert th["source"] == "default"  # 6 val images are too few to choose a band
    meta = read_meta(run)
    assert meta.temperature == pytest.approx(metrics["temperature"])
    assert meta.decision_thresholds == {"review_low": th["review_low"], "review_high": th["review_high"]}
    assert meta.metrics["test_accuracy"] == pytest.approx(metrics["accuracy"])
    assert meta.metrics["test_n"] == 8


def test_evaluate_val_without_calibration(evaluated, tmp_path):
    run, first, _ = evaluated
    split_dir = run.parent / "split"
    proc = run_cli("evaluate", "--run", run, "--split", "val", "--data", split_dir, "--no-calibrate", "--threads", "1")
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["split"] == "val" and metrics["n"] == 6 and metrics["calibrated"] is False
    assert metrics["temperature"] == pytest.approx(first["temperature"])  # kept from the artifact
    assert (run / "confusion_matrix_val.png").is_file()
    assert "unchanged" in proc.stdout


def test_evaluate_without_data_is_a_clear_error(tmp_path, evaluated):
    run, _, _ = evaluated
    bare = tmp_path / "bare"
    (bare / "artifact").mkdir(parents=True)
    for f in (run / "artifact").iterdir():
        (bare / "artifact" / f.name).write_bytes(f.read_bytes())
    proc = run_cli("evaluate", "--run", bare, check=False)
    assert proc.returncode == 1
    assert "--data" in proc.stderr and "Traceback" not in proc.stderr


def test_predict_json_lines_with_check_and_corrupt_image(evaluated):
    run, _, _ = evaluated
    images = run.parent / "split" / "images"
    proc = run_cli("predict", "--model", run, images, "--expected-quantity", "3", "--threads", "1", check=False)
    assert proc.returncode == 1
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    paths = sorted(images.glob("*.jpg"))
    assert [line["image"] for line in lines] == [str(p) for p in paths]
    errors = [line for line in lines if "error" in line]
    assert len(errors) == 1 and errors[0]["image"].endswith("test_corrupt.jpg")
    assert "test_corrupt.jpg" in proc.stderr
    meta = read_meta(run)
    for line in lines:
        if "error" in line:
            continue
        assert sum(line["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert line["class_labels"] == LABELS
        check = line["check"]
        assert check["expected_quantity"] == 3 and check["match"] == (line["predicted_count"] == 3)
        p3 = line["probabilities"]["3"]
        if check["match"] and line["confidence"] >= meta.decision_thresholds["review_high"]:
            assert check["decision"] == "confirmed"
        elif p3 < meta.decision_thresholds["review_low"]:
            assert check["decision"] == "mismatch"
        else:
            assert check["decision"] == "review"


def test_predict_json_list_matches_evaluate(evaluated):
    run, _, _ = evaluated
    # predictions.csv holds the last evaluation's rows, made with the artifact's current temperature
    rows, probs = _read_predictions(run / "predictions.csv")
    picked = [rows[0]["path"], rows[1]["path"]]
    proc = run_cli("predict", "--model", run / "artifact", *picked, "--json-list", "--threads", "1")
    out = json.loads(proc.stdout)
    assert [o["image"] for o in out] == picked
    for o, row, p in zip(out, rows, probs, strict=False):
        assert "check" not in o
        assert o["predicted_label"] == row["predicted"]
        assert [o["probabilities"][label] for label in LABELS] == pytest.approx(list(p), abs=2e-6)


def test_predict_nothing_to_predict(tmp_path, evaluated):
    run, _, _ = evaluated
    proc = run_cli("predict", "--model", run, tmp_path, check=False)
    assert proc.returncode == 1 and "no .jpg/.jpeg/.png images" in proc.stderr


def test_evaluate_on_real_abid_photos(abid_sample, tmp_path, evaluated):
    """Real bin photos (decode + letterbox of full-size JPEGs): 12 test images from the sample."""
    run, _, _ = evaluated
    with (abid_sample / "labels.csv").open() as f:
        picked = [r for r in csv.DictReader(f) if r["expected_quantity"] in LABELS][:18]
    split = tmp_path / "abid-split"
    split.mkdir()
    for name, rows in (("train", picked[:0]), ("val", picked[:6]), ("test", picked[6:])):
        lines = ["path,label,sha256,source"]
        for r in rows:
            image = abid_sample / r["file"]
            lines.append(f"{image},{r['expected_quantity']},{hashlib.sha256(image.read_bytes()).hexdigest()},abid")
        (split / f"{name}.csv").write_text("\n".join(lines) + "\n")
    real_run = tmp_path / "real-run"
    (real_run / "artifact").mkdir(parents=True)
    for f in (run / "artifact").iterdir():
        (real_run / "artifact" / f.name).write_bytes(f.read_bytes())
    run_cli("evaluate", "--run", real_run, "--data", split, "--threads", "1", "--no-calibrate")
    metrics = json.loads((real_run / "metrics.json").read_text())  # no recorded data: --data is its own
    assert metrics["n"] == 12 and metrics["skipped"] == 0
    assert sum(row["support"] for row in metrics["per_class"].values()) == 12
    assert np.asarray(metrics["confusion_matrix"]).sum() == 12


def test_predict_formats_out_file_and_annotated_photos(tmp_path, evaluated):
    """--format csv/table/json, --out FILE (the same rows as stdout) and --save DIR (one annotated JPEG each)."""
    run, _, _ = evaluated
    rows, _ = _read_predictions(run / "predictions.csv")
    picked = [rows[0]["path"], rows[1]["path"]]
    corrupt = str(run.parent / "split" / "images" / "test_corrupt.jpg")
    base = ["predict", "--model", run / "artifact", *picked, corrupt, "--threads", "1", "--expected-quantity", "2"]
    lines = run_cli(*base, check=False).stdout.splitlines()
    jsonl = [json.loads(line) for line in lines]
    assert [e["image"] for e in jsonl] == [*picked, corrupt] and "error" in jsonl[2]

    out = tmp_path / "preds.csv"
    proc = run_cli(*base, "--format", "csv", "--out", out, "--save", tmp_path / "shown", check=False)
    assert proc.returncode == 1 and proc.stdout == ""  # the corrupt photo still fails the command
    table = list(csv.DictReader(out.open()))
    assert [r["image"] for r in table] == [*picked, corrupt]
    for r, e in zip(table[:2], jsonl, strict=False):
        assert r["predicted_label"] == e["predicted_label"] and float(r["confidence"]) == e["confidence"]
        assert r["expected_quantity"] == "2" and r["decision"] == e["check"]["decision"]
    assert table[2]["error"] and not table[2]["predicted_label"]
    shown = sorted((tmp_path / "shown").iterdir())
    assert [p.name for p in shown] == sorted(Path(p).stem + ".jpg" for p in picked)
    original = Image.open(picked[0]).convert("RGB")
    drawn = Image.open(tmp_path / "shown" / (Path(picked[0]).stem + ".jpg")).convert("RGB")
    assert drawn.size == original.size
    assert np.abs(np.asarray(drawn, np.int16) - np.asarray(original, np.int16)).max() > 100  # the banner is there

    text = run_cli(*base[:-2], "--format", "table", check=False).stdout.splitlines()
    assert text[0].split() == ["image", "count", "confidence"]
    assert [line.split()[0] for line in text[1:]] == [*picked, corrupt]
    assert json.loads(run_cli(*base, "--format", "json", check=False).stdout) == jsonl


def test_evaluating_other_data_never_clobbers_the_run(evaluated, tmp_path):
    """--data OTHER writes into RUN/evaluations/<name>-<split>/; a calibration that differs from the (already
    calibrated) artifact becomes a new artifact version there, and the run's own files stay byte-identical."""
    import shutil

    run, first, _ = evaluated
    kept = ("metrics.json", "predictions.csv", "confusion_matrix_test.png", "artifact/model.json")
    before = {name: (run / name).read_bytes() for name in kept}
    other = tmp_path / "other-split"
    shutil.copytree(run.parent / "split", other)
    val = (other / "val.csv").read_text().splitlines()
    (other / "val.csv").write_text("\n".join(val[:-2]) + "\n")  # other val data: another temperature
    proc = run_cli("evaluate", "--model", run, "--data", other, "--threads", "1")
    out = run / "evaluations" / "other-split-test"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["data"] == str(other.resolve()) and metrics["n"] == first["n"]
    assert (out / "predictions.csv").is_file() and (out / "confusion_matrix_test.png").is_file()
    assert {name: (run / name).read_bytes() for name in kept} == before
    assert metrics["temperature"] != pytest.approx(first["temperature"])
    new = read_meta(out / "artifact")
    assert new.version.startswith("v1+cal-") and new.temperature == pytest.approx(metrics["temperature"])
    assert read_meta(run).version == "v1"
    assert f"artifact updated: {out / 'artifact'}" in proc.stdout
    # the new version serves like any artifact
    served = run_cli("predict", "--model", out / "artifact", run.parent / "split" / "images" / "test_11.jpg")
    assert json.loads(served.stdout)["model"]["version"] == new.version


def test_evaluate_and_predict_settings_come_from_config_files_and_overrides(evaluated, tmp_path):
    run, _, _ = evaluated
    image = run.parent / "split" / "images" / "test_11.jpg"
    config = tmp_path / "predict.yaml"
    config.write_text("format: csv\nexpected_quantity: 3\nbatch_size: 2\n")
    out = run_cli("predict", "--model", run, image, "--config", config, "--threads", "1").stdout.splitlines()
    assert out[0].startswith("image,predicted_count") and out[1].split(",")[4] == "3"
    bad = run_cli("predict", "--model", run, image, "batch_size=0", check=False)
    assert bad.returncode == 2 and "batch_size must be >= 1" in bad.stderr
    bad = run_cli("predict", "--model", run, image, "backend=tpu", check=False)
    assert bad.returncode == 2 and "unknown backend 'tpu'" in bad.stderr  # refused when the config is read
    bad = run_cli("evaluate", "--model", run, "split=dev", check=False)
    assert bad.returncode == 2 and "split: 'dev' is not allowed" in bad.stderr


def test_evaluate_backend_is_a_config_key_checked_against_the_registry(evaluated, tmp_path):
    import shutil

    run, first, _ = evaluated
    other = tmp_path / "fp32-split"
    shutil.copytree(run.parent / "split", other)
    run_cli("evaluate", "--model", run, "--data", other, "--no-calibrate", "--threads", "1", "backend=torch-fp32")
    metrics = json.loads((run / "evaluations" / "fp32-split-test" / "metrics.json").read_text())
    assert metrics["backend"] == "torch-fp32" and metrics["precision"] == "float32"
    assert metrics["n"] == first["n"]
    bad = run_cli("evaluate", "--model", run, "backend=tpu", check=False)
    assert bad.returncode == 2 and "unknown backend 'tpu'" in bad.stderr and "torch-bf16" in bad.stderr
    bad = run_cli("evaluate", "--model", run, "--backend", "tpu", check=False)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
