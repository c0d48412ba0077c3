"""Decision thresholds (per-class log-probability offsets) fitted for macro-F1 on val."""

from __future__ import annotations

import numpy as np
import pytest

from binsight.evaluation.decision import _macro_f1, apply_class_bias, fit_class_bias, prior_bias
from binsight.evaluation.metrics import classification_metrics


def skewed_probs(n: int = 600, k: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A model that knows the class but leans towards class 0 (as a prior-heavy classifier does)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, size=n)
    logits = rng.normal(0, 1.0, size=(n, k))
    logits[np.arange(n), y] += 1.5
    logits[:, 0] += 1.8
    probs = np.exp(logits)
    return probs / probs.sum(axis=1, keepdims=True), y


def test_fast_macro_f1_agrees_with_classification_metrics():
    rng = np.random.default_rng(1)
    y, pred = rng.integers(0, 5, 300), rng.integers(0, 4, 300)  # class 4 never predicted
    assert _macro_f1(y, pred, 5) == pytest.approx(classification_metrics(y, pred, 5)["macro_f1"])


def test_fitted_bias_raises_val_macro_f1_and_generalises():
    probs, y = skewed_probs(seed=0)
    plain = classification_metrics(y, probs.argmax(1), 4)["macro_f1"]
    bias = fit_class_bias(probs, y)
    assert bias[0] == 0.0 and np.all(bias[1:] > 0)  # the over-predicted class 0 is pushed back
    fitted = classification_metrics(y, apply_class_bias(probs, bias).argmax(1), 4)["macro_f1"]
    assert fitted > plain + 0.05
    test_probs, test_y = skewed_probs(seed=1)  # same model, fresh samples
    before = classification_metrics(test_y, test_probs.argmax(1), 4)["macro_f1"]
    after = classification_metrics(test_y, apply_class_bias(test_probs, bias).argmax(1), 4)["macro_f1"]
    assert after > before + 0.03


def test_a_balanced_model_keeps_zero_bias_and_empty_input():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 200)
    probs = np.full((200, 3), 0.05)
    probs[np.arange(200), y] = 0.9
    assert np.all(fit_class_bias(probs, y) == 0.0)  # already perfect: nothing moves
    assert fit_class_bias(np.zeros((0, 3)), []).tolist() == [0.0, 0.0, 0.0]


def test_apply_bias_is_a_renormalised_prior_shift():
    probs = np.array([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]])
    out = apply_class_bias(probs, [0.0, np.log(2.0), 0.0])
    np.testing.assert_allclose(out.sum(axis=1), 1.0)
    np.testing.assert_allclose(out[0], np.array([0.5, 0.6, 0.2]) / 1.3)
    assert apply_class_bias(probs, None) is not None and np.array_equal(apply_class_bias(probs, [0, 0, 0]), probs)
    with pytest.raises(ValueError, match="3 classes"):
        apply_class_bias(probs, [0.0, 1.0])


def test_prior_bias_is_logit_adjustment():
    b = prior_bias([100, 50, 25], tau=1.0)
    np.testing.assert_allclose(b, [0.0, np.log(2.0), np.log(4.0)])
    np.testing.assert_allclose(prior_bias([100, 50, 25], tau=0.5), b / 2)
    with pytest.raises(ValueError):
        prior_bias([10, 0])


def test_min_share_keeps_every_class_predicted_at_the_price_of_some_val_macro_f1():
    rng = np.random.default_rng(0)
    y = np.array([0] * 60 + [1] * 30 + [2] * 10)
    logits = rng.normal(0, 1, (100, 3))
    logits[np.arange(100), y] += 1.0
    logits[y == 2, 1] += 1.2  # count 2 looks like count 1: the plain fit gives class 1 up
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    support = np.bincount(y, minlength=3)

    def predicted(bias):
        return np.bincount((np.log(probs) + bias).argmax(axis=1), minlength=3)

    plain, kept = fit_class_bias(probs, y), fit_class_bias(probs, y, min_share=0.5)
    assert predicted(plain)[1] < 0.5 * support[1]  # the plain fit trades most of class 1 away
    assert np.all(predicted(kept) >= 0.5 * support)
    assert _macro_f1(y, (np.log(probs) + plain).argmax(1), 3) >= _macro_f1(y, (np.log(probs) + kept).argmax(1), 3)
    assert np.array_equal(fit_class_bias(probs, y, min_share=0.0), plain)
