"""The evaluate job: predict a split with the run's artifact, calibrate on val, write metrics and plots.

Files written (atomically) into the run directory when the split is the run's own data, else into
``<run>/evaluations/<data folder name>-<split>/`` so that evaluating other data never overwrites the run's results:

- ``metrics.json``: everything :func:`classification_metrics` returns for the split, plus ``split``,
  ``temperature``, ``calibrated``, ``ece_before`` / ``ece_after`` (T = 1 vs the final temperature),
  ``review_thresholds``, ``skipped`` (unreadable images) and ``model``;
- ``predictions.csv``: ``path,label,predicted,confidence,p_<label>…`` with calibrated probabilities;
- ``confusion_matrix_<split>.png``, ``confusion_matrix_<split>_normalized.png``, ``mistakes_<split>.png``.

On the run's own data the artifact's ``model.json`` gets the headline numbers (``<split>_accuracy`` …) and, the
first time, the fitted ``temperature``, ``decision_thresholds`` and, when its ``decision_rule`` is ``macro_f1``,
the ``class_bias`` fitted for macro-F1 on val (:mod:`binsight.evaluation.decision`). A calibration that would
change an already calibrated artifact, or one fitted on other data, is written as a new artifact version in
``<out>/artifact`` instead, so a served model's probabilities never change under the same version.
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
from binsight.inference.artifact import run_dir_of, write_meta

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


def evaluation_dir(run_dir: Path, data: str | Path | None, split: str) -> Path:
    """Where an evaluation's files go: the run directory for its own data, else a folder named after the data."""
    if data is None:
        return run_dir
    try:
        own = split_dir_of(run_dir, None).resolve() == Path(data).resolve()
    except BinsightError:
        own = True  # a bare artifact records no data: the data it is given is its own
    if own:
        return run_dir
    name = f"{Path(data).resolve().name or 'data'}-{split}"
    out = run_dir / "evaluations" / name
    recorded = out / "metrics.json"
    if recorded.is_file():
        import json

        try:
            same = json.loads(recorded.read_text()).get("data") == str(Path(data).resolve())
        except (OSError, ValueError):
            same = False
        if not same:  # another folder of the same name: keep both
            import hashlib

            out = out.with_name(f"{name}-{hashlib.sha256(str(Path(data).resolve()).encode()).hexdigest()[:6]}")
    return out


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
    from binsight.inference.predictor import Predictor
    from binsight.utils.io import atomic_write_json, atomic_write_text

    if split not in SPLITS:
        raise BinsightError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    if batch_size < 1:
        raise BinsightError("--batch-size must be >= 1")
    run_dir, artifact_dir = run_dir_of(run)
    split_dir = split_dir_of(run_dir, data)
    splits = load_split(split_dir)
    out_dir = evaluation_dir(run_dir, data, split)
    own_data = out_dir == run_dir
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
    class_bias = list(meta.class_bias)
    thresholds: dict[str, Any] = {**meta.decision_thresholds, "source": "artifact"}
    calibrated = False
    if calibrate and split != "val":
        val = predict_split(predictor, splits["val"], batch_size, desc="calibrate on val") if splits["val"] else None
        if val is not None and val.labels:
            temperature = fit_temperature(val.raw, val.y, meta.head)
            if not T_MIN * 1.01 < temperature < T_MAX * 0.99:
                # At a bound the val NLL kept falling: val is tiny, or the model is near-uniform / memorised val.
                log.warning("temperature %.3f is at the search bound [%g, %g]", temperature, T_MIN, T_MAX)
            if meta.decision_rule == "macro_f1":
                from binsight.evaluation.decision import fit_class_bias

                class_bias = fit_class_bias(predictor.probabilities(val.raw, temperature, []), val.y).tolist()
            val_probs = predictor.probabilities(val.raw, temperature, class_bias)
            thresholds = choose_review_thresholds(val_probs, val.y, defaults=meta.decision_thresholds)
            calibrated = True
        else:
            log.warning("no readable val images: keeping temperature %.3f and the review band", temperature)

    raw, y = evaluated.raw, evaluated.y
    probs_before = predictor.probabilities(raw, 1.0, [])
    probs = predictor.probabilities(raw, temperature, class_bias)
    pred = probs.argmax(axis=1)
    metrics = classification_metrics(y, pred, k, labels, probs=probs)
    metrics.update(
        split=split,
        temperature=temperature,
        class_bias=class_bias,
        calibrated=calibrated,
        ece_before=expected_calibration_error(probs_before, y),
        ece_after=metrics["ece"],
        review_thresholds=thresholds,
        skipped=len(evaluated.skipped),
        skipped_files=[{"path": p, "reason": r} for p, r in evaluated.skipped],
        model={"name": meta.name, "version": meta.version, "artifact": str(artifact_dir)},
        data=str(split_dir.resolve()),
        evaluation_dir=str(out_dir),
        backend=backend,
    )
    if hasattr(predictor.backend, "precision"):  # the torch backends: the precision the policy chose
        metrics["precision"] = predictor.backend.precision.mode

    atomic_write_text(out_dir / "predictions.csv", _predictions_csv(evaluated.paths, y, probs, labels))
    cm = np.asarray(metrics["confusion_matrix"])
    plot_confusion_matrix(cm, labels, out_dir / f"confusion_matrix_{split}.png", title=f"confusion matrix ({split})")
    plot_confusion_matrix(
        cm, labels, out_dir / f"confusion_matrix_{split}_normalized.png", normalize=True, title=f"recall ({split})"
    )
    mistakes = [
        Mistake(path, labels[t], labels[p], float(row[p]))
        for path, t, p, row in zip(evaluated.paths, y, pred, probs, strict=True)
        if t != p
    ]
    plot_mistakes(mistakes, out_dir / f"mistakes_{split}.png")
    metrics["artifact_written"] = _update_artifact(artifact_dir, out_dir, meta, metrics, split, own_data, calibrated)
    atomic_write_json(out_dir / "metrics.json", metrics)
    _track(run_dir, out_dir, metrics, split if own_data else f"{out_dir.name}")
    return metrics


def _track(run_dir: Path, out_dir: Path, metrics: dict[str, Any], prefix: str) -> None:
    """Log the evaluation into the run's MLflow run when the run was tracked."""
    from binsight.tracking import continue_tracker, log_files

    tracker = continue_tracker(run_dir)
    if tracker is None:
        return
    tracker.log_metrics({f"{prefix}_{key}": metrics[key] for key in HEADLINE if key in metrics})
    log_files(tracker, out_dir, ("metrics.json", "predictions.csv", "*.png"), f"evaluation/{prefix}")
    tracker.close()


def _update_artifact(
    artifact_dir: Path, out_dir: Path, meta, metrics: dict[str, Any], split: str, own_data: bool, calibrated: bool
) -> str:
    """Record the calibration and headline numbers: in place where that changes no prediction of a versioned
    artifact, else as a new artifact version in ``out_dir/artifact``. Returns the folder written ("" if none)."""
    import shutil

    thresholds = {k: float(metrics["review_thresholds"][k]) for k in ("review_low", "review_high")}
    bias = [float(b) for b in metrics.get("class_bias") or []]
    changes = calibrated and (
        not np.isclose(meta.temperature, metrics["temperature"], rtol=1e-6)
        or meta.decision_thresholds != thresholds
        or [float(b) for b in meta.class_bias or []] != bias
    )
    first_calibration = "ece_after" not in (meta.metrics or {})
    if not own_data and not changes:
        return ""  # other data, nothing that changes predictions: the artifact stays as it is
    if changes:
        meta.temperature = float(metrics["temperature"])
        meta.decision_thresholds = thresholds
        meta.class_bias = bias
        meta.metrics = {**(meta.metrics or {}), "ece_before": metrics["ece_before"], "ece_after": metrics["ece_after"]}
    if own_data:
        meta.metrics = {**(meta.metrics or {}), **{f"{split}_{key}": metrics[key] for key in HEADLINE}}
    if not changes or (own_data and first_calibration):
        write_meta(artifact_dir, meta)
        return str(artifact_dir)
    import hashlib

    digest = hashlib.sha256(f"{meta.temperature:.9f}{sorted(thresholds.items())}{bias}".encode()).hexdigest()[:8]
    meta.version = f"{meta.version.split('+cal-')[0]}+cal-{digest}"
    target = out_dir / "artifact"
    if target.resolve() != artifact_dir.resolve():
        # the new version holds the artifact's files, never the evaluations folder a bare artifact keeps inside
        shutil.copytree(artifact_dir, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("evaluations"))
    write_meta(target, meta)
    log.info("recalibrated artifact written as a new version %s in %s", meta.version, target)
    return str(target)


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
