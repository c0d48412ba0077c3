"""The evaluate job: predict a split with the run's artifact, calibrate on val, write metrics and plots.

Files written into the run directory (atomically):

- ``metrics.json``: everything :func:`classification_metrics` returns for the split, plus ``split``,
  ``temperature``, ``calibrated``, ``ece_before`` / ``ece_after`` (T = 1 vs the final temperature),
  ``review_thresholds``, ``skipped`` (unreadable images) and ``model``;
- ``predictions.csv``: ``path,label,predicted,confidence,p_<label>…`` with calibrated probabilities;
- ``confusion_matrix_<split>.png``, ``confusion_matrix_<split>_normalized.png``, ``mistakes_<split>.png``.

The artifact's ``model.json`` gets the fitted ``temperature``, the chosen ``decision_thresholds`` and the
headline numbers in ``metrics`` (``<split>_accuracy`` …).
"""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from binsight.errors import BinsightError, DataError
from binsight.evaluation.calibration import T_MAX, T_MIN, choose_review_thresholds, fit_temperature
from binsight.evaluation.metrics import classification_metrics, expected_calibration_error
from binsight.inference.artifact import resolve_artifact_dir, write_meta

log = logging.getLogger(__name__)

HEADLINE = ("accuracy", "macro_f1", "rmse", "mae", "off_by_one", "ece", "n")


@dataclass
class SplitOutputs:
    """Raw model outputs for the readable, in-vocabulary images of one split."""

    paths: list[Path] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)  # class indices
    outputs: list[np.ndarray] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)

    @property
    def y(self) -> np.ndarray:
        return np.asarray(self.labels, dtype=np.int64)

    @property
    def raw(self) -> np.ndarray:
        return np.concatenate(self.outputs) if self.outputs else np.zeros((0, 0), dtype=np.float32)


def run_dir_of(run: str | Path) -> tuple[Path, Path]:
    """(run directory, artifact folder) for a run directory or an artifact folder."""
    artifact = resolve_artifact_dir(run)
    return (artifact.parent if artifact.name == "artifact" else artifact), artifact


def split_dir_of(run_dir: Path, data: str | Path | None) -> Path:
    """``--data`` if given, else the ``data:`` of the run's ``config.yaml``."""
    if data:
        return Path(data)
    config = run_dir / "config.yaml"
    if not config.is_file():
        raise BinsightError(f"{run_dir} has no config.yaml to read the split folder from; pass --data SPLITDIR")
    import yaml

    try:
        value = (yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("data")
    except (OSError, yaml.YAMLError, AttributeError) as exc:
        raise BinsightError(f"{config} is unreadable ({exc}); pass --data SPLITDIR") from None
    if not value:
        raise BinsightError(f"{config} has no 'data:' entry; pass --data SPLITDIR")
    path = Path(value)
    if not path.exists() and not path.is_absolute() and (run_dir / path).exists():
        path = run_dir / path
    return path


def predict_split(predictor, rows, batch_size: int = 32, desc: str = "predict") -> SplitOutputs:
    """Run ``predictor`` over manifest ``rows`` in batches; unreadable images and unknown labels are skipped."""
    import torch

    from binsight.utils.progress import progress

    index = {label: i for i, label in enumerate(predictor.class_labels)}
    result = SplitOutputs()
    pending: list[tuple[Path, int, Any]] = []

    def flush() -> None:
        if not pending:
            return
        batch = torch.stack([tensor for _, _, tensor in pending])
        result.outputs.append(predictor.predict_outputs(batch))
        result.paths.extend(p for p, _, _ in pending)
        result.labels.extend(y for _, y, _ in pending)
        pending.clear()

    with progress(total=len(rows), desc=desc, unit="img") as bar:
        for row in rows:
            bar.update(1)
            if str(row.label) not in index:
                result.skipped.append(
                    (str(row.path), f"{row.path}: label {row.label} is not one of the classes {predictor.class_labels}")
                )
                continue
            try:
                img = predictor.open_image(row.path)
            except DataError as exc:
                result.skipped.append((str(row.path), str(exc)))
                continue
            pending.append((Path(row.path), index[str(row.label)], predictor.preprocess(img)))
            if len(pending) >= batch_size:
                flush()
        flush()
    for _, reason in result.skipped:
        log.warning("skipped %s", reason)
    return result


def _predictions_csv(paths, y, probs, labels) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["path", "label", "predicted", "confidence", *[f"p_{label}" for label in labels]])
    pred = probs.argmax(axis=1) if len(probs) else []
    for path, t, p, row in zip(paths, y, pred, probs, strict=True):
        writer.writerow([str(path), labels[t], labels[p], f"{row[p]:.6f}", *[f"{v:.6f}" for v in row]])
    return buf.getvalue()


def evaluate_run(
    run: str | Path,
    split: str = "test",
    data: str | Path | None = None,
    batch_size: int = 32,
    calibrate: bool = True,
    threads: int | None = None,
    backend: str = "torch",
) -> dict[str, Any]:
    """Evaluate a run on one split and write its report files (see the module docstring).

    Args:
        run: run directory (or artifact folder) from ``binsight train``.
        split: ``train``, ``val`` or ``test``.
        data: split folder; default the ``data:`` of the run's ``config.yaml``.
        batch_size: images per forward pass.
        calibrate: fit the temperature and review band on ``val`` (skipped when ``split`` is ``val``).
        threads: torch intra-op threads (default ``OMP_NUM_THREADS`` or all CPUs).
        backend: the Predictor backend (``torch``: the precision policy's choice; ``torch-bf16``,
            ``torch-fp32``, ``onnx``, ``onnx-int8``), to measure what a serving backend does to accuracy.

    Returns:
        The contents of ``metrics.json``.
    """
    from binsight.data.manifest import SPLITS, load_split
    from binsight.evaluation.gallery import Mistake, plot_mistakes
    from binsight.evaluation.plots import plot_confusion_matrix
    from binsight.inference.predictor import Predictor, outputs_to_probs_np
    from binsight.utils.io import atomic_write_json, atomic_write_text

    if split not in SPLITS:
        raise BinsightError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    if batch_size < 1:
        raise BinsightError("--batch-size must be >= 1")
    run_dir, artifact_dir = run_dir_of(run)
    splits = load_split(split_dir_of(run_dir, data))
    if not splits[split]:
        raise DataError(f"the {split} split is empty; nothing to evaluate")
    predictor = Predictor(artifact_dir, backend=backend, threads=threads)
    meta = predictor.meta
    labels = predictor.class_labels
    k = len(labels)

    evaluated = predict_split(predictor, splits[split], batch_size, desc=f"evaluate {split}")
    if not evaluated.labels:
        raise DataError(f"no image of the {split} split could be read ({len(evaluated.skipped)} skipped)")

    temperature = float(meta.temperature)
    thresholds: dict[str, Any] = {**meta.decision_thresholds, "source": "artifact"}
    calibrated = False
    if calibrate and split != "val":
        val = predict_split(predictor, splits["val"], batch_size, desc="calibrate on val") if splits["val"] else None
        if val is not None and val.labels:
            temperature = fit_temperature(val.raw, val.y, meta.head)
            if not T_MIN * 1.01 < temperature < T_MAX * 0.99:
                # At a bound the val NLL kept falling: val is tiny, or the model is near-uniform / memorised val.
                log.warning("temperature %.3f is at the search bound [%g, %g]", temperature, T_MIN, T_MAX)
            val_probs = outputs_to_probs_np(val.raw, meta.head, temperature)
            thresholds = choose_review_thresholds(val_probs, val.y, defaults=meta.decision_thresholds)
            calibrated = True
        else:
            log.warning("no readable val images: keeping temperature %.3f and the review band", temperature)

    raw, y = evaluated.raw, evaluated.y
    probs_before = outputs_to_probs_np(raw, meta.head, 1.0)
    probs = outputs_to_probs_np(raw, meta.head, temperature)
    pred = probs.argmax(axis=1)
    metrics = classification_metrics(y, pred, k, labels, probs=probs)
    metrics.update(
        split=split,
        temperature=temperature,
        calibrated=calibrated,
        ece_before=expected_calibration_error(probs_before, y),
        ece_after=metrics["ece"],
        review_thresholds=thresholds,
        skipped=len(evaluated.skipped),
        skipped_files=[{"path": p, "reason": r} for p, r in evaluated.skipped],
        model={"name": meta.name, "version": meta.version, "artifact": str(artifact_dir)},
        backend=backend,
    )
    if hasattr(predictor.backend, "precision"):  # the torch backends: the precision the policy chose
        metrics["precision"] = predictor.backend.precision.mode

    atomic_write_text(run_dir / "predictions.csv", _predictions_csv(evaluated.paths, y, probs, labels))
    cm = np.asarray(metrics["confusion_matrix"])
    plot_confusion_matrix(cm, labels, run_dir / f"confusion_matrix_{split}.png", title=f"confusion matrix ({split})")
    plot_confusion_matrix(
        cm, labels, run_dir / f"confusion_matrix_{split}_normalized.png", normalize=True, title=f"recall ({split})"
    )
    mistakes = [
        Mistake(path, labels[t], labels[p], float(row[p]))
        for path, t, p, row in zip(evaluated.paths, y, pred, probs, strict=True)
        if t != p
    ]
    plot_mistakes(mistakes, run_dir / f"mistakes_{split}.png")
    atomic_write_json(run_dir / "metrics.json", metrics)

    # The artifact carries what every predictor needs: temperature, review band, headline numbers.
    if calibrated:
        meta.temperature = temperature
        meta.decision_thresholds = {k_: float(thresholds[k_]) for k_ in ("review_low", "review_high")}
    meta.metrics = {**(meta.metrics or {}), **{f"{split}_{key}": metrics[key] for key in HEADLINE}}
    if calibrated:
        meta.metrics.update(ece_before=metrics["ece_before"], ece_after=metrics["ece_after"])
    write_meta(artifact_dir, meta)
    return metrics


def format_report(metrics: dict[str, Any]) -> str:
    """A readable summary table of ``metrics.json``."""
    lines = [
        f"split {metrics['split']}: {metrics['n']} images"
        + (f", {metrics['skipped']} skipped" if metrics["skipped"] else ""),
        f"{'class':>8} {'precision':>10} {'recall':>8} {'f1':>8} {'support':>8}",
    ]
    for label, row in metrics["per_class"].items():
        lines.append(
            f"{label:>8} {row['precision']:>10.3f} {row['recall']:>8.3f} {row['f1']:>8.3f} {row['support']:>8d}"
        )
    lines.append(
        f"{'macro':>8} {metrics['macro_precision']:>10.3f} {metrics['macro_recall']:>8.3f} {metrics['macro_f1']:>8.3f}"
    )
    lines.append(
        f"{'weighted':>8} {metrics['weighted_precision']:>10.3f} {metrics['weighted_recall']:>8.3f} "
        f"{metrics['weighted_f1']:>8.3f}"
    )
    th = metrics["review_thresholds"]
    lines += [
        f"accuracy {metrics['accuracy']:.3f}   off-by-one {metrics['off_by_one']:.3f}   "
        f"RMSE {metrics['rmse']:.3f}   MAE {metrics['mae']:.3f}   NLL {metrics['nll']:.3f}",
        f"temperature {metrics['temperature']:.3f} ({'fitted on val' if metrics['calibrated'] else 'unchanged'})   "
        f"ECE {metrics['ece_before']:.3f} -> {metrics['ece_after']:.3f}",
        f"review band: mismatch below {th['review_low']:.2f}, confirmed from {th['review_high']:.2f} "
        f"({th.get('source', 'artifact')})",
    ]
    return "\n".join(lines)
