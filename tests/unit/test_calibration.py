"""Temperature scaling and the review band."""

from __future__ import annotations

import numpy as np
import pytest

from binsight.evaluation.calibration import choose_review_thresholds, fit_temperature, temperature_nll
from binsight.evaluation.metrics import expected_calibration_error
from binsight.inference.predictor import outputs_to_probs_np


def _calibrated_logits(n: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels drawn from softmax(logits): these logits are calibrated by construction."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 2.0, size=(n, k)).astype(np.float32)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    y = np.array([rng.choice(k, p=row) for row in p])
    return z, y


def test_fit_temperature_recovers_known_temperature():
    z, y = _calibrated_logits(4000, 5)
    t = fit_temperature(z * 3.0, y, "softmax")  # overconfident by a factor 3
    assert t == pytest.approx(3.0, rel=0.1)
    t_under = fit_temperature(z * 0.5, y, "softmax")
    assert t_under == pytest.approx(0.5, rel=0.1)


def test_fitted_temperature_lowers_nll_and_ece():
    z, y = _calibrated_logits(2000, 5, seed=1)
    outputs = z * 4.0
    t = fit_temperature(outputs, y, "softmax")
    assert temperature_nll(outputs, y, "softmax", t) < temperature_nll(outputs, y, "softmax", 1.0)
    before = expected_calibration_error(outputs_to_probs_np(outputs, "softmax", 1.0), y)
    after = expected_calibration_error(outputs_to_probs_np(outputs, "softmax", t), y)
    assert after < before


def test_fit_temperature_ordinal_head_recovers_known_temperature():
    rng = np.random.default_rng(2)
    # Ordered cumulative logits (P(y > k) decreasing in k), labels drawn from their class probabilities.
    shift = rng.normal(0.0, 2.0, size=(3000, 1))
    z = (shift - np.array([[-1.5, -0.5, 0.5, 1.5]])).astype(np.float32)
    p = outputs_to_probs_np(z, "ordinal", 1.0)
    y = np.array([rng.choice(5, p=row / row.sum()) for row in p])
    t = fit_temperature(z * 3.0, y, "ordinal")
    assert t == pytest.approx(3.0, rel=0.15)
    assert temperature_nll(z * 3.0, y, "ordinal", t) < temperature_nll(z * 3.0, y, "ordinal", 1.0)


def test_review_thresholds_by_hand():
    # 10 images, 2 classes. Confident ones (0.95) are always right, hesitant ones (0.6) right half the time.
    probs = np.array([[0.95, 0.05]] * 6 + [[0.6, 0.4]] * 4)
    y = np.array([0] * 6 + [0, 0, 1, 1])
    th = choose_review_thresholds(probs, y, target_precision=0.9, min_samples=5, min_support=3)
    assert th["source"] == "val"
    # any t <= 0.6 includes all 10 images (8/10 right < 0.9); t in (0.6, 0.95] keeps the 6 confident ones
    assert th["review_high"] == pytest.approx(0.61)
    # pairs: p=0.05 (6, all wrong), p=0.4 (4: 2 wrong [y=0], 2 right), p=0.6 (4), p=0.95 (6).
    # t in (0.05, 0.4]: the six 0.05 pairs, precision 1. t in (0.4, 0.6]: 10 pairs, 8 wrong → 0.8 < 0.9.
    assert th["review_low"] == pytest.approx(0.40)
    assert th["review_low"] <= th["review_high"]


def test_review_thresholds_fall_back_when_val_is_small():
    probs = np.array([[0.9, 0.1], [0.2, 0.8]])
    th = choose_review_thresholds(probs, [0, 1], defaults={"review_low": 0.15, "review_high": 0.7})
    assert th["source"] == "default"
    assert (th["review_low"], th["review_high"]) == (0.15, 0.7)


def test_review_high_is_one_when_target_unreachable():
    rng = np.random.default_rng(3)
    probs = rng.dirichlet([1, 1, 1], size=50)
    y = (probs.argmax(1) + 1) % 3  # always wrong
    th = choose_review_thresholds(probs, y)
    assert th["review_high"] == 1.0
