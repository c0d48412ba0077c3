"""classification_metrics and ECE against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from binsight.evaluation.metrics import classification_metrics, confusion_matrix, expected_calibration_error

# Three classes "1", "2", "3"; class indices 0, 1, 2.
Y_TRUE = [0, 0, 0, 0, 1, 1, 2, 2, 2, 2]
Y_PRED = [0, 0, 1, 2, 1, 1, 2, 2, 1, 0]


def test_confusion_matrix_by_hand():
    # true 0 → predicted 0,0,1,2; true 1 → 1,1; true 2 → 2,2,1,0
    expected = [[2, 1, 1], [0, 2, 0], [1, 1, 2]]
    cm = confusion_matrix(Y_TRUE, Y_PRED, 3)
    assert cm.dtype == np.int64
    assert cm.tolist() == expected


def test_confusion_matrix_rejects_out_of_range():
    with pytest.raises(ValueError):
        confusion_matrix([0, 3], [0, 1], 3)


def test_classification_metrics_by_hand():
    m = classification_metrics(Y_TRUE, Y_PRED, 3, ["1", "2", "3"])
    # precision = diagonal / column sums (3, 4, 3); recall = diagonal / row sums (4, 2, 4)
    precision = [2 / 3, 2 / 4, 2 / 3]
    recall = [2 / 4, 2 / 2, 2 / 4]
    f1 = [2 * p * r / (p + r) for p, r in zip(precision, recall, strict=True)]
    support = [4, 2, 4]
    assert m["n"] == 10
    assert m["accuracy"] == pytest.approx(6 / 10)
    for i, label in enumerate(["1", "2", "3"]):
        row = m["per_class"][label]
        assert row["precision"] == pytest.approx(precision[i])
        assert row["recall"] == pytest.approx(recall[i])
        assert row["f1"] == pytest.approx(f1[i])
        assert row["support"] == support[i]
    assert m["macro_precision"] == pytest.approx(sum(precision) / 3)
    assert m["macro_recall"] == pytest.approx(sum(recall) / 3)
    assert m["macro_f1"] == pytest.approx(sum(f1) / 3)
    assert m["weighted_precision"] == pytest.approx(sum(p * s for p, s in zip(precision, support, strict=True)) / 10)
    assert m["weighted_recall"] == pytest.approx(6 / 10)  # weighted recall is accuracy
    assert m["weighted_f1"] == pytest.approx(sum(f * s for f, s in zip(f1, support, strict=True)) / 10)
    assert m["confusion_matrix"] == [[2, 1, 1], [0, 2, 0], [1, 1, 2]]
    # count errors (pred - true): 0 0 +1 +2 0 0 0 0 -1 -2 → squares sum to 10
    assert m["rmse"] == pytest.approx(math.sqrt(10 / 10))
    assert m["mae"] == pytest.approx(6 / 10)
    assert m["off_by_one"] == pytest.approx(8 / 10)
    assert "nll" not in m and "ece" not in m


def test_count_errors_use_numeric_labels():
    # Labels "2" and "4": predicting 4 for a true 2 is off by two items, not by one class index.
    m = classification_metrics([0, 0], [1, 0], 2, ["2", "4"])
    assert m["mae"] == pytest.approx(1.0)
    assert m["off_by_one"] == pytest.approx(0.5)


def test_class_never_predicted_has_zero_precision():
    m = classification_metrics([0, 1], [0, 0], 2, ["a", "b"])
    assert m["per_class"]["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert m["per_class"]["a"]["precision"] == pytest.approx(0.5)
    assert m["macro_precision"] == pytest.approx(0.25)
    # non-numeric labels: counts are class indices
    assert m["mae"] == pytest.approx(0.5)


def test_nll_and_ece_with_probs():
    probs = np.array([[0.95, 0.05], [0.75, 0.25], [0.45, 0.55], [0.35, 0.65]])
    y = [0, 1, 1, 1]
    m = classification_metrics(y, probs.argmax(1), 2, probs=probs)
    assert m["nll"] == pytest.approx(-np.mean(np.log([0.95, 0.25, 0.55, 0.65])))
    assert m["ece"] == pytest.approx(expected_calibration_error(probs, y))


def test_ece_by_hand():
    probs = np.array([[0.95, 0.05], [0.75, 0.25], [0.45, 0.55], [0.35, 0.65]])
    y = [0, 1, 1, 1]
    # 5 bins of width 0.2. confidences 0.95 (right) | 0.75 (wrong), 0.65 (right) | 0.55 (right)
    # bin (0.8,1]: |1 - 0.95| * 1/4; bin (0.6,0.8]: |0.5 - 0.70| * 2/4; bin (0.4,0.6]: |1 - 0.55| * 1/4
    expected = 0.05 / 4 + 0.2 / 2 + 0.45 / 4
    assert expected_calibration_error(probs, y, n_bins=5) == pytest.approx(expected)
    # a perfectly calibrated, always-right one-hot predictor has ECE 0
    assert expected_calibration_error(np.eye(3), [0, 1, 2]) == pytest.approx(0.0)


def test_empty_input_is_all_zero():
    m = classification_metrics([], [], 2, probs=np.zeros((0, 2)))
    assert m["n"] == 0 and m["accuracy"] == 0.0 and m["ece"] == 0.0
