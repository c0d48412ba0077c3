"""Classification metrics for bin counts, in plain numpy (no scikit-learn dependency).

Definitions follow scikit-learn: precision of a class that is never predicted is 0 (``zero_division=0``),
macro averages weigh every class equally, weighted averages weigh each class by its support. Because the
classes are counts, the error of the predicted count (RMSE, MAE, share within one item) is reported too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def confusion_matrix(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, num_classes: int):
    """Count (true, predicted) pairs.

    Args:
        y_true: true class indices in ``[0, num_classes)``.
        y_pred: predicted class indices in ``[0, num_classes)``.
        num_classes: K.

    Returns:
        A (K, K) int64 array; rows are true classes, columns predicted classes.
    """
    t = np.asarray(y_true, dtype=np.int64).reshape(-1)
    p = np.asarray(y_pred, dtype=np.int64).reshape(-1)
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} entries but y_pred has {p.size}")
    for name, arr in (("y_true", t), ("y_pred", p)):
        if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
            raise ValueError(f"{name} holds class indices outside [0, {num_classes})")
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (t, p), 1)
    return cm


def class_counts(num_classes: int, class_labels: Sequence[str] | None = None) -> np.ndarray:
    """The item count each class stands for: ``int(label)`` when every label is numeric, else the index."""
    if class_labels is not None:
        try:
            return np.array([int(str(label)) for label in class_labels], dtype=np.float64)
        except ValueError:
            pass
    return np.arange(num_classes, dtype=np.float64)


def expected_calibration_error(probs: np.ndarray, y_true: Sequence[int] | np.ndarray, n_bins: int = 15) -> float:
    """Expected calibration error of the top-1 confidence.

    Confidences are put in ``n_bins`` equal-width bins over (0, 1]; ECE is the sample-weighted mean of
    ``|accuracy(bin) - mean confidence(bin)|``.

    Args:
        probs: (N, K) class probabilities.
        y_true: (N,) true class indices.
        n_bins: number of bins.

    Returns:
        ECE in [0, 1]; 0.0 for an empty input.
    """
    probs = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y_true, dtype=np.int64).reshape(-1)
    if probs.shape[0] == 0:
        return 0.0
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y).astype(np.float64)
    # Bin i holds confidences in (i/n, (i+1)/n]; a confidence of exactly 0 joins the first bin.
    bins = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        mask = bins == b
        if mask.any():
            ece += mask.mean() * abs(correct[mask].mean() - conf[mask].mean())
    return float(ece)


def negative_log_likelihood(probs: np.ndarray, y_true: Sequence[int] | np.ndarray) -> float:
    """Mean ``-log p(true class)``, with probabilities clipped at 1e-12 so a confident miss stays finite."""
    probs = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y_true, dtype=np.int64).reshape(-1)
    if y.size == 0:
        return 0.0
    return float(-np.log(np.clip(probs[np.arange(y.size), y], 1e-12, 1.0)).mean())


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num = num.astype(np.float64)
    den = den.astype(np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def classification_metrics(
    y_true: Sequence[int] | np.ndarray,
    y_pred: Sequence[int] | np.ndarray,
    num_classes: int,
    class_labels: list[str] | None = None,
    probs: np.ndarray | None = None,
) -> dict[str, Any]:
    """All headline metrics of a set of predictions, JSON-serialisable.

    Args:
        y_true: true class indices.
        y_pred: predicted class indices.
        num_classes: K.
        class_labels: names of the K classes (default ``"0"`` … ``"K-1"``); numeric labels are the counts
            used by ``rmse``/``mae``/``off_by_one``.
        probs: optional (N, K) probabilities; adds ``nll`` and ``ece``.

    Returns:
        ``accuracy``, ``macro_precision``/``_recall``/``_f1``, ``weighted_precision``/``_recall``/``_f1``,
        ``per_class`` {label: {precision, recall, f1, support}}, ``confusion_matrix`` (list of lists),
        ``rmse``, ``mae``, ``off_by_one`` (share with ``|pred count - true count| <= 1``), ``n``; plus
        ``nll`` and ``ece`` when ``probs`` is given. Rates are 0.0 for an empty input.
    """
    labels = (
        [str(label) for label in class_labels] if class_labels is not None else [str(i) for i in range(num_classes)]
    )
    if len(labels) != num_classes:
        raise ValueError(f"{len(labels)} class labels given for {num_classes} classes")
    t = np.asarray(y_true, dtype=np.int64).reshape(-1)
    p = np.asarray(y_pred, dtype=np.int64).reshape(-1)
    cm = confusion_matrix(t, p, num_classes)
    n = int(t.size)
    tp = np.diag(cm)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    precision = _safe_div(tp, predicted)
    recall = _safe_div(tp, support)
    f1 = _safe_div(2 * precision * recall, precision + recall)
    weights = support / n if n else np.zeros(num_classes)

    counts = class_counts(num_classes, labels)
    err = counts[p] - counts[t] if n else np.zeros(0)
    out: dict[str, Any] = {
        "accuracy": float(tp.sum() / n) if n else 0.0,
        "macro_precision": float(precision.mean()),
        "macro_recall": float(recall.mean()),
        "macro_f1": float(f1.mean()),
        "weighted_precision": float((precision * weights).sum()),
        "weighted_recall": float((recall * weights).sum()),
        "weighted_f1": float((f1 * weights).sum()),
        "per_class": {
            label: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, label in enumerate(labels)
        },
        "confusion_matrix": cm.tolist(),
        "rmse": float(np.sqrt(np.mean(err**2))) if n else 0.0,
        "mae": float(np.mean(np.abs(err))) if n else 0.0,
        "off_by_one": float(np.mean(np.abs(err) <= 1)) if n else 0.0,
        "n": n,
    }
    if probs is not None:
        probs = np.asarray(probs, dtype=np.float64)
        if probs.shape != (n, num_classes):
            raise ValueError(f"probs has shape {probs.shape}, expected ({n}, {num_classes})")
        out["nll"] = negative_log_likelihood(probs, t)
        out["ece"] = expected_calibration_error(probs, t)
    return out
