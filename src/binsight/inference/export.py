"""``binsight export``: ONNX (float32, optional static int8) and SageMaker ``model.tar.gz`` from a run.

- :func:`export_onnx` writes ``artifact/model.onnx``: input ``input`` float32 NCHW with a dynamic batch axis,
  output ``outputs`` = the raw head outputs (logits, or cumulative logits for an ordinal head); the Predictor
  applies temperature and the softmax/ordinal conversion, so every backend shares that code.
- :func:`quantize_int8` writes ``artifact/model.int8.onnx``: ONNX Runtime static quantization (QDQ, int8
  per-channel weights, uint8 activations) calibrated on validation images preprocessed exactly as at serving.
- :func:`compare_backends` measures accuracy, macro-F1 and images/s of each backend on the same test images.
- :func:`export_sagemaker` writes ``model.tar.gz`` (the artifact files at the archive root — SageMaker
  hosting unpacks it into ``/opt/ml/model``).
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from binsight.errors import BinsightError, DataError
from binsight.inference.artifact import META_FILE, WEIGHTS_FILE, read_meta, resolve_artifact_dir, run_dir_of
from binsight.inference.onnx_backend import ONNX_FILE, ONNX_INT8_FILE
from binsight.utils.io import write_tar_gz

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17
SAGEMAKER_FILES = (META_FILE, WEIGHTS_FILE, ONNX_FILE, ONNX_INT8_FILE)


def load_torch_model(artifact_dir: Path):
    """The artifact's network in eval mode (float32, CPU)."""
    from binsight.inference.artifact import load_weights
    from binsight.models import create_model

    meta = read_meta(artifact_dir)
    if meta.members:
        raise BinsightError(
            f"{artifact_dir} is an ensemble of {len(meta.members)} artifacts: export each member "
            f"({', '.join(meta.members)}) instead; the Predictor averages their ONNX outputs like their torch ones"
        )
    model = create_model(meta.architecture, meta.num_classes, weights="none", head=meta.head)
    model.load_state_dict(load_weights(artifact_dir))
    return model.eval()


def export_onnx(model_path: str | Path, opset: int = DEFAULT_OPSET, out: str | Path | None = None) -> Path:
    """Export the artifact's network to ONNX and check it loads.

    Args:
        model_path: Run directory or artifact folder.
        opset: ONNX opset (>= 17).
        out: Output file (default ``<artifact>/model.onnx``).

    Returns:
        The written file.
    """
    import onnx
    import torch

    from binsight.utils.io import atomic_write_bytes

    if opset < 17:
        raise BinsightError(f"opset {opset} is too old; use 17 or newer")
    folder = resolve_artifact_dir(model_path)
    meta = read_meta(folder)
    model = load_torch_model(folder)
    size = int(meta.input_size)
    example = torch.zeros(2, 3, size, size)
    target = Path(out) if out else folder / ONNX_FILE
    tmp = target.with_name(f".{target.name}.tmp")
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of dynamo (which needs onnxscript) but handles
        # every model of the registry with a dynamic batch axis, with no extra dependency.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            str(tmp),
            dynamo=False,
            opset_version=opset,
            input_names=["input"],
            output_names=["outputs"],
            dynamic_axes={"input": {0: "batch"}, "outputs": {0: "batch"}},
            do_constant_folding=True,
        )
    proto = onnx.load(str(tmp))
    onnx.checker.check_model(proto)
    proto.doc_string = f"binsight {meta.name} {meta.version}: {meta.architecture}, head {meta.head}"
    tmp.unlink()
    atomic_write_bytes(target, proto.SerializeToString())
    return target


class _CalibrationReader:
    """onnxruntime CalibrationDataReader over preprocessed float32 CHW arrays."""

    def __init__(self, arrays: Sequence[np.ndarray], input_name: str, batch_size: int = 8) -> None:
        self._batches: Iterator[np.ndarray] = (
            np.stack(arrays[i : i + batch_size]).astype(np.float32) for i in range(0, len(arrays), batch_size)
        )
        self.input_name = input_name

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {self.input_name: batch}


def quantize_int8(model_path: str | Path, calibration: Sequence[np.ndarray], out: str | Path | None = None) -> Path:
    """Statically quantize ``model.onnx`` to ``model.int8.onnx`` (QDQ; int8 weights per channel, uint8 activations).

    Args:
        model_path: Run directory or artifact folder holding ``model.onnx``.
        calibration: Preprocessed float32 CHW images (validation images, as the Predictor prepares them).
        out: Output file (default ``<artifact>/model.int8.onnx``).
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from binsight.utils.io import atomic_write_bytes

    if not calibration:
        raise DataError("no calibration images: int8 quantization needs validation images (val.csv of the split)")
    folder = resolve_artifact_dir(model_path)
    src = folder / ONNX_FILE
    if not src.is_file():
        raise BinsightError(f"{src} is missing; export the float32 model first (binsight export --format onnx)")
    target = Path(out) if out else folder / ONNX_INT8_FILE
    prep = target.with_name(f".{target.name}.prep.onnx")
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        # Shape inference + graph cleanup first: ONNX Runtime's recommended step before quantization.
        quant_pre_process(str(src), str(prep), skip_symbolic_shape=True)
        quantize_static(
            str(prep),
            str(tmp),
            _CalibrationReader(list(calibration), "input"),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
        atomic_write_bytes(target, tmp.read_bytes())
    finally:
        for path in (prep, tmp):
            path.unlink(missing_ok=True)
    return target


def preprocess_rows(predictor, rows, limit: int = 0, desc: str = "preprocess") -> tuple[list[np.ndarray], list[int]]:
    """Decode + preprocess manifest rows with the Predictor's eval preset; unreadable images are skipped.

    Returns:
        (CHW float32 arrays, class indices); rows whose label is not a class of the model are skipped.
    """
    from binsight.utils.progress import progress

    index = {label: i for i, label in enumerate(predictor.class_labels)}
    arrays: list[np.ndarray] = []
    labels: list[int] = []
    for row in progress(rows[:limit] if limit else rows, desc=desc, unit="img"):
        if str(row.label) not in index:
            continue
        try:
            img = predictor.open_image(row.path)
        except DataError as exc:
            log.warning("skipped %s", exc)
            continue
        arrays.append(predictor.preprocess(img).numpy())
        labels.append(index[str(row.label)])
    return arrays, labels


def measure_backend(
    predictor, arrays: Sequence[np.ndarray], batch_size: int = 8, min_seconds: float = 1.0
) -> tuple[np.ndarray, float]:
    """(N, K) probabilities of ``arrays`` and the backend's images/s (after one untimed warm-up batch)."""
    if not arrays:
        return np.zeros((0, len(predictor.class_labels))), 0.0
    batches = [np.stack(arrays[i : i + batch_size]) for i in range(0, len(arrays), batch_size)]
    predictor.predict_proba(batches[0])
    start = time.perf_counter()
    probs = np.concatenate([predictor.predict_proba(b) for b in batches])
    passes = 1
    # Small test sets finish in milliseconds: repeat (up to 1 s) so images/s is not timer noise.
    while time.perf_counter() - start < min_seconds and passes < 50:
        for b in batches:
            predictor.predict_proba(b)
        passes += 1
    elapsed = time.perf_counter() - start
    return probs, passes * len(arrays) / elapsed if elapsed > 0 else 0.0


def compare_backends(
    model_path: str | Path,
    arrays: Sequence[np.ndarray],
    labels: Sequence[int],
    backends: Sequence[str] = ("torch", "onnx"),
    threads: int | None = None,
    batch_size: int = 8,
    min_seconds: float = 1.0,
) -> list[dict[str, Any]]:
    """Accuracy, macro-F1, images/s and max |Δp| vs the first backend, for each backend on the same images.

    Returns:
        One dict per backend: ``backend``, ``accuracy``, ``macro_f1``, ``images_per_s``, ``speedup`` (vs the
        first backend), ``max_abs_prob_diff`` (vs the first backend), ``agreement`` (share of equal argmax),
        and for the torch backends ``precision`` (what the policy chose: ``torch`` runs bf16 where it pays).
    """
    from binsight.evaluation.metrics import classification_metrics
    from binsight.inference.predictor import Predictor

    rows: list[dict[str, Any]] = []
    reference: np.ndarray | None = None
    base_speed = 0.0
    for name in backends:
        predictor = Predictor(model_path, backend=name, threads=threads)
        probs, speed = measure_backend(predictor, arrays, batch_size, min_seconds)
        pred = probs.argmax(axis=1) if len(probs) else np.zeros(0, dtype=int)
        metrics = classification_metrics(labels, pred, len(predictor.class_labels), predictor.class_labels)
        if reference is None:
            reference, base_speed = probs, speed
        precision = predictor.backend.precision.mode if hasattr(predictor.backend, "precision") else None
        rows.append(
            {
                "backend": name,
                "precision": precision,
                "accuracy": round(metrics["accuracy"], 4),
                "macro_f1": round(metrics["macro_f1"], 4),
                "images_per_s": round(speed, 2),
                "speedup": round(speed / base_speed, 2) if base_speed else None,
                "max_abs_prob_diff": float(np.abs(probs - reference).max()) if len(probs) else 0.0,
                "agreement": float((pred == reference.argmax(axis=1)).mean()) if len(probs) else 1.0,
                "n": len(labels),
            }
        )
    return rows


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """A plain-text table of :func:`compare_backends` rows."""
    header = f"{'backend':<16} {'accuracy':>8} {'macro-F1':>8} {'images/s':>9} {'speed-up':>8} {'max|Δp|':>9}"
    lines = [header, "-" * len(header)]
    for r in rows:
        label = f"{r['backend']} ({r['precision']})" if r.get("precision") else r["backend"]
        lines.append(
            f"{label:<16} {r['accuracy']:>8.4f} {r['macro_f1']:>8.4f} {r['images_per_s']:>9.2f} "
            f"{(r['speedup'] or 0):>7.2f}x {r['max_abs_prob_diff']:>9.2e}"
        )
    return "\n".join(lines)


def export_sagemaker(model_path: str | Path, out: str | Path | None = None) -> Path:
    """Write ``model.tar.gz`` with the artifact's files at the archive root (what SageMaker hosting takes).

    Args:
        model_path: Run directory or artifact folder.
        out: Output file (default: ``<run>/model.tar.gz`` next to ``artifact/``, or inside a bare artifact
            folder).

    Returns:
        The written archive.
    """
    folder = resolve_artifact_dir(model_path)
    read_meta(folder)
    if not (folder / WEIGHTS_FILE).is_file():
        raise BinsightError(f"{folder / WEIGHTS_FILE} is missing; the artifact is incomplete")
    if out is None:
        out = run_dir_of(folder)[0] / "model.tar.gz"
    members = [(folder / name, name) for name in SAGEMAKER_FILES if (folder / name).is_file()]
    return write_tar_gz(out, members)
