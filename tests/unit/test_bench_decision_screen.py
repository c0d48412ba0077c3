"""``benchmarks/decision_screen.py``: every decision rule fitted on val and scored on the held-out fold."""

from __future__ import annotations

import numpy as np
import pytest

from binsight.evaluation.calibration import fit_temperature
from binsight.evaluation.decision import fit_class_bias
from binsight.inference.predictor import outputs_to_probs_np
from tests.conftest import load_benchmark


def test_rules_are_fitted_on_val_and_scored_on_the_held_out_fold():
    screen = load_benchmark("decision_screen")
    rng = np.random.default_rng(0)

    def outputs(n):
        y = rng.integers(0, 4, n)
        raw = rng.normal(0, 1, (n, 4))
        raw[np.arange(n), y] += 1.2
        raw[:, 0] += 1.5  # leans to class 0, so the fitted offsets move
        return raw, y

    (val_raw, val_y), (test_raw, test_y) = outputs(300), outputs(200)
    folds = [
        screen.score_rules({"val_raw": val_raw, "val_y": val_y, "test_raw": test_raw, "test_y": test_y}, "softmax")
    ]
    scores = folds[0]
    assert set(scores) == set(screen.RULES)
    assert scores["argmax"]["bias"] == [0.0] * 4
    probs = outputs_to_probs_np(val_raw, "softmax", fit_temperature(val_raw, val_y, "softmax"))
    assert scores["fit"]["bias"] == pytest.approx(np.round(fit_class_bias(probs, val_y), 2).tolist())
    assert scores["fit"]["macro_f1"] > scores["argmax"]["macro_f1"]  # the offsets fitted on val carry over
    rows = screen.table("synthetic", folds).splitlines()[2:]
    assert [r.split(" | ")[0].lstrip("| ") for r in rows] == list(screen.RULES)
