"""The lever screen's feature specs: precision suffix and the CPU cost charged to each spec."""

from __future__ import annotations

import json

import pytest

from tests.conftest import load_benchmark


@pytest.fixture(scope="module")
def cv_screen():
    return load_benchmark("cv_screen")


def test_spec_without_suffix_is_float32_whatever_auto_would_pick(cv_screen):
    assert cv_screen.parse_spec("efficientnet_lite0:224") == ("efficientnet_lite0", 224, "off")
    assert cv_screen.parse_spec("efficientnet_lite0:320@bf16") == ("efficientnet_lite0", 320, "bf16")


@pytest.mark.parametrize("bad", ["efficientnet_lite0", "efficientnet_lite0:big", "efficientnet_lite0:224@fp16"])
def test_bad_spec_is_a_clear_error(cv_screen, bad):
    with pytest.raises(SystemExit, match="MODEL:SIZE@bf16"):
        cv_screen.parse_spec(bad)


def test_a_spec_that_found_its_images_decoded_is_charged_the_decode_of_its_size(cv_screen, tmp_path):
    timing = {
        "m:320:train": {"cpu_s": 130.0, "decode_cpu_s": 30.0, "features_cpu_s": 100.0},
        "m:320:val": {"cpu_s": 13.0, "decode_cpu_s": 3.0, "features_cpu_s": 10.0},
        "m:320@bf16:train": {"cpu_s": 40.0, "decode_cpu_s": 0.0, "features_cpu_s": 40.0},
        "m:320@bf16:val": {"cpu_s": 4.0, "decode_cpu_s": 0.0, "features_cpu_s": 4.0},
        "old:224:train": {"cpu_s": 60.0},
        "old:224:val": {"cpu_s": 6.0},
    }
    (tmp_path / "feature_timing.json").write_text(json.dumps(timing))
    assert cv_screen.feature_cpu_minutes(["m:320"], False, tmp_path) == round(143 / 60, 2)
    assert cv_screen.feature_cpu_minutes(["m:320@bf16"], False, tmp_path) == round(77 / 60, 2)
    assert cv_screen.feature_cpu_minutes(["old:224"], False, tmp_path) == round(66 / 60, 2)
    assert cv_screen.feature_cpu_minutes(["m:384"], False, tmp_path) is None


def _run(name: str, seed: int, folds: list[float]) -> dict:
    mean = sum(folds) / len(folds)
    cv = {k: {"mean": mean, "std": 0.0} for k in ("accuracy", "macro_f1", "off_by_one", "rmse", "ece")}
    cv.update(fold_macro_f1=folds, per_class_f1={"1": mean}, head_cpu_s_per_fold=1.0)
    return {"name": name, "seed": seed, "folds": len(folds), "params": {"features": "m:224"}, "cv": cv}


def test_ablation_table_pairs_seed_averaged_folds(cv_screen, tmp_path):
    entries = [
        _run("ref", 0, [0.30, 0.40, 0.50]),
        _run("ref", 1, [0.32, 0.42, 0.52]),
        _run("lever", 0, [0.35, 0.41, 0.55]),
        _run("lever", 1, [0.33, 0.45, 0.53]),
        _run("lever", 1, [0.0, 0.0, 0.0]),  # an older run of seed 1 would be replaced by a later one …
        _run("lever", 1, [0.33, 0.45, 0.53]),  # … so the latest counts
    ]
    table = cv_screen.ablation_table(entries, "ref", tmp_path)
    lever = next(line for line in table.splitlines() if line.startswith("| lever"))
    # per fold: lever (0.34, 0.43, 0.54) - ref (0.31, 0.41, 0.51) = (+0.03, +0.02, +0.03)
    assert lever.startswith("| lever (2 head seeds) | 0.437 ± 0.100 | +0.027 ± 0.006 |")


def test_bagged_thresholds_are_repeatable_and_average_the_single_fits(cv_screen):
    import numpy as np

    from binsight.evaluation.decision import fit_class_bias

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 200)
    logits = rng.normal(0, 1, (200, 3))
    logits[np.arange(200), y] += 1.0
    logits[:, 0] += 1.5  # leans to class 0: every fit pushes classes 1 and 2 up
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    bagged = cv_screen.bagged_class_bias(probs, y, resamples=8, seed=3)
    assert np.array_equal(bagged, cv_screen.bagged_class_bias(probs, y, resamples=8, seed=3))
    assert not np.array_equal(bagged, cv_screen.bagged_class_bias(probs, y, resamples=8, seed=4))
    assert bagged[0] == 0.0 and np.all(bagged[1:] > 0)
    one = cv_screen.bagged_class_bias(probs, y, resamples=1, seed=3)
    draw = np.random.default_rng(3)
    idx = np.concatenate([draw.choice(np.flatnonzero(y == c), size=int((y == c).sum())) for c in range(3)])
    assert np.array_equal(one, fit_class_bias(probs[idx], y[idx]))
