"""Decision thresholds: per-class offsets on log-probabilities, fitted on val for macro-F1.

A model trained on imbalanced counts, or one whose val classes are rarer than its train classes, puts its
arg-max where cross-entropy wants it, not where macro-F1 does. The decision rule here is
``argmax_k(log p_k + b_k)`` with one offset ``b_k`` per class (``b_0 = 0``): a threshold between every pair of
classes. It is a prior shift, so the offsets are applied to the probabilities themselves
(:func:`apply_class_bias`: ``p'_k ∝ p_k · exp(b_k)``) and every consumer of a Predictor (predict, evaluate,
serve, the inventory check) sees one consistent set of probabilities whose arg-max is the decision.

* :func:`fit_class_bias` maximises val macro-F1 by coordinate ascent over a grid of offsets (a few sweeps;
  ties keep the smaller ``|b|``, so a class is only pushed when that pays on val).
* :func:`prior_bias` is logit adjustment (Menon et al. 2021): ``b_k = -tau · log prior_k``, in closed form.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

BIAS_GRID = np.round(np.arange(-3.0, 3.0001, 0.1), 6)


def apply_class_bias(probs: np.ndarray, bias: Sequence[float] | np.ndarray | None) -> np.ndarray:
    """Probabilities ``p'_k ∝ p_k · exp(b_k)`` (rows renormalised); ``probs`` unchanged for no/zero bias."""
    probs = np.asarray(probs, dtype=np.float64)
    if bias is None or not np.any(np.asarray(bias, dtype=np.float64)):
        return probs
    b = np.asarray(bias, dtype=np.float64)
    if b.shape != (probs.shape[1],):
        raise ValueError(f"class bias has {b.shape[0]} entries for {probs.shape[1]} classes")
    scores = np.log(np.clip(probs, 1e-12, None)) + b
    scores -= scores.max(axis=1, keepdims=True)
    out = np.exp(scores)
    return out / out.sum(axis=1, keepdims=True)


def _macro_f1(y: np.ndarray, pred: np.ndarray, k: int) -> float:
    """Macro-F1 as :func:`~binsight.evaluation.metrics.classification_metrics` computes it, without the rest."""
    cm = np.bincount(y * k + pred, minlength=k * k).reshape(k, k)
    tp = np.diag(cm).astype(np.float64)
    denom = cm.sum(axis=0) + cm.sum(axis=1)  # 2·F1 = 2·tp / (predicted + support)
    return float(np.mean(np.divide(2 * tp, denom, out=np.zeros(k), where=denom > 0)))


def fit_class_bias(
    probs: np.ndarray,
    y_true: Sequence[int] | np.ndarray,
    sweeps: int = 3,
    grid: np.ndarray = BIAS_GRID,
    min_share: float = 0.0,
) -> np.ndarray:
    """Per-class offsets (``b_0 = 0``) maximising macro-F1 of ``argmax(log p + b)`` on val.

    Args:
        probs: (N, K) calibrated val probabilities.
        y_true: (N,) true class indices.
        sweeps: coordinate-ascent passes over classes 1..K-1.
        grid: candidate offsets per class.
        min_share: keep every class predicted at least this share of its val support: the score is macro-F1
            less the missing share (0 = plain macro-F1). On a few hundred val photos the plain fit can trade a
            rare class away entirely for a point elsewhere.

    Returns:
        (K,) float64 offsets; all zeros when ``probs`` is empty or nothing beats the plain arg-max.
    """
    probs = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y_true, dtype=np.int64)
    k = probs.shape[1] if probs.ndim == 2 else 0
    bias = np.zeros(k, dtype=np.float64)
    if len(y) == 0 or k < 2:
        return bias
    logp = np.log(np.clip(probs, 1e-12, None))
    support = np.bincount(y, minlength=k)

    def score(pred: np.ndarray) -> float:
        f1 = _macro_f1(y, pred, k)
        if min_share <= 0:
            return f1
        missing = np.clip(min_share * support - np.bincount(pred, minlength=k), 0, None)
        return f1 - float(missing.sum()) / len(y)

    best = score(logp.argmax(axis=1))
    order = np.argsort(np.abs(grid), kind="stable")  # ties → the smallest |offset|
    for _ in range(sweeps):
        changed = False
        for c in range(1, k):
            trial = bias.copy()
            scores = []
            for value in grid[order]:
                trial[c] = value
                scores.append(score((logp + trial).argmax(axis=1)))
            i = int(np.argmax(scores))  # first maximum in |offset| order
            if scores[i] > best + 1e-12:
                best, bias[c], changed = scores[i], float(grid[order][i]), True
        if not changed:
            break
    return bias


def prior_bias(class_counts: Sequence[int], tau: float = 1.0) -> np.ndarray:
    """Logit adjustment: ``-tau · log(count_k / total)``, shifted so ``b_0 = 0``."""
    counts = np.asarray(class_counts, dtype=np.float64)
    if counts.ndim != 1 or len(counts) < 2 or np.any(counts <= 0):
        raise ValueError(f"class counts must be >= 2 positive numbers, got {list(class_counts)}")
    b = -tau * np.log(counts / counts.sum())
    return b - b[0]
