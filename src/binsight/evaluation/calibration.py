"""Post-hoc calibration on the validation split: temperature scaling and the inventory-check review band.

**Temperature.** :func:`fit_temperature` finds the scalar ``T > 0`` that minimises the mean negative
log-likelihood of ``outputs_to_probs(outputs / T)`` on validation outputs (a bounded 1-D search over
``log T``: a coarse grid, then golden-section refinement). Dividing logits by ``T`` never changes the
softmax arg-max, so accuracy is unchanged while confidences become honest.

**Review band.** The inventory check (see :func:`binsight.inference.predictor.check_decision`) says
``confirmed`` when the predicted count equals the expected one with probability >= ``review_high``, and
``mismatch`` when the probability of the expected count is < ``review_low``. :func:`choose_review_thresholds`
picks both from calibrated validation probabilities:

* ``review_high``: the smallest threshold ``t`` on a 0.01 grid such that, among validation images whose
  top probability is >= ``t`` (at least ``min_support`` of them), the prediction is right for a share
  >= ``target_precision``. So a "confirmed" is right at least that often on validation. When no threshold
  gets there, 1.0: nothing is confirmed automatically.
* ``review_low``: every validation image is paired with every class as the expected count (a uniform prior
  on what the records say); ``review_low`` is the largest ``t <= review_high`` such that, among pairs with
  probability < ``t`` (at least ``min_support``), the expected count is wrong for a share
  >= ``target_precision``. When none qualifies, 0.0: nothing is flagged mismatch automatically.
* With fewer than ``min_samples`` validation images, the given defaults are kept (``source: "default"``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from binsight.evaluation.metrics import negative_log_likelihood

T_MIN, T_MAX = 0.05, 20.0
DEFAULT_THRESHOLDS = {"review_low": 0.2, "review_high": 0.5}


def _probs(outputs: np.ndarray, head: str, temperature: float) -> np.ndarray:
    from binsight.inference.predictor import outputs_to_probs_np

    return outputs_to_probs_np(outputs, head, temperature)


def temperature_nll(outputs: np.ndarray, y_true: Sequence[int] | np.ndarray, head: str, temperature: float) -> float:
    """Mean NLL of the true classes after dividing ``outputs`` by ``temperature``."""
    return negative_log_likelihood(_probs(outputs, head, temperature), y_true)


def fit_temperature(outputs: np.ndarray, y_true: Sequence[int] | np.ndarray, head: str = "softmax") -> float:
    """Fit the calibration temperature on validation outputs.

    Args:
        outputs: raw head outputs, (N, K) logits (``softmax``) or (N, K-1) cumulative logits (``ordinal``).
        y_true: (N,) true class indices.
        head: ``softmax`` or ``ordinal``.

    Returns:
        ``T`` in [0.05, 20] minimising the mean NLL; 1.0 for an empty input.
    """
    outputs = np.asarray(outputs, dtype=np.float32)
    y = np.asarray(y_true, dtype=np.int64).reshape(-1)
    if y.size == 0:
        return 1.0

    def loss(log_t: float) -> float:
        return temperature_nll(outputs, y, head, math.exp(log_t))

    # A coarse grid first: NLL(T) is unimodal for softmax but need not be for the ordinal head.
    lo, hi = math.log(T_MIN), math.log(T_MAX)
    grid = np.linspace(lo, hi, 41)
    losses = [loss(g) for g in grid]
    best = int(np.argmin(losses))
    a, b = grid[max(0, best - 1)], grid[min(len(grid) - 1, best + 1)]
    # Golden-section search inside the bracket around the best grid point.
    inv_phi = (math.sqrt(5) - 1) / 2
    c, d = b - inv_phi * (b - a), a + inv_phi * (b - a)
    fc, fd = loss(c), loss(d)
    for _ in range(40):
        if b - a < 1e-5:
            break
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - inv_phi * (b - a)
            fc = loss(c)
        else:
            a, c, fc = c, d, fd
            d = a + inv_phi * (b - a)
            fd = loss(d)
    candidates = [(losses[best], grid[best]), (fc, c), (fd, d)]
    return float(math.exp(min(candidates)[1]))


def choose_review_thresholds(
    probs: np.ndarray,
    y_true: Sequence[int] | np.ndarray,
    target_precision: float = 0.9,
    min_samples: int = 20,
    min_support: int = 5,
    defaults: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Pick the inventory-check review band from calibrated validation probabilities (rule: module docstring).

    Args:
        probs: (N, K) calibrated validation probabilities.
        y_true: (N,) true class indices.
        target_precision: required precision of ``confirmed`` and of ``mismatch`` decisions on validation.
        min_samples: below this many validation images the defaults are kept.
        min_support: a threshold only counts when at least this many images / pairs fall on its side.
        defaults: thresholds used as fallback (default ``review_low`` 0.2, ``review_high`` 0.5).

    Returns:
        ``{"review_low", "review_high", "source": "val"|"default", "target_precision", "n"}``.
    """
    defaults = dict(defaults or DEFAULT_THRESHOLDS)
    probs = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y_true, dtype=np.int64).reshape(-1)
    n = int(y.size)
    out: dict[str, Any] = {"target_precision": float(target_precision), "n": n}
    if n < min_samples:
        return {
            "review_low": float(defaults.get("review_low", DEFAULT_THRESHOLDS["review_low"])),
            "review_high": float(defaults.get("review_high", DEFAULT_THRESHOLDS["review_high"])),
            "source": "default",
            **out,
        }
    grid = np.round(np.arange(0.01, 1.0, 0.01), 2)
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y
    high = 1.0
    for t in grid:
        sel = conf >= t
        if sel.sum() >= min_support and correct[sel].mean() >= target_precision:
            high = float(t)
            break
    # Every (image, class) pair: the class plays the expected count; it is wrong unless it is the true class.
    pair_p = probs.reshape(-1)
    pair_wrong = (np.arange(probs.shape[1])[None, :] != y[:, None]).reshape(-1)
    low = 0.0
    for t in grid[::-1]:
        if t > high:
            continue
        sel = pair_p < t
        if sel.sum() >= min_support and pair_wrong[sel].mean() >= target_precision:
            low = float(t)
            break
    return {"review_low": low, "review_high": high, "source": "val", **out}
