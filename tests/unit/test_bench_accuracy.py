"""The accuracy benchmark's fixed choices: SynthBins split sizes, recipe paths, and the shipped recipes."""

from __future__ import annotations

import pytest

from binsight.config.loader import load_config
from binsight.config.schemas import TrainConfig
from binsight.data.split import split_counts
from binsight.data.synth.plan import class_plan
from tests.conftest import REPO, load_benchmark


@pytest.fixture(scope="module")
def accuracy():
    return load_benchmark("accuracy")


def test_synth_split_fractions_give_the_reports_val_and_test_sizes(accuracy):
    plan = class_plan(accuracy.SYNTH_N, [1, 2, 3, 4, 5], "udacity")
    assert sum(plan.values()) == 10_441
    sizes = [split_counts(n, *accuracy.SYNTH_SPLIT) for n in plan.values()]
    train, val, test = (sum(s[i] for s in sizes) for i in range(3))
    assert (val, test) == (1041, 1049)  # the report's val / test sizes
    assert train == 10_441 - 1041 - 1049


def test_recipe_path_resolves_names_and_paths(accuracy, tmp_path):
    assert accuracy.recipe_path("abid") == REPO / "configs" / "abid.yaml"
    own = tmp_path / "mine.yaml"
    assert accuracy.recipe_path(str(own)) == own


def test_shipped_recipes_differ_where_the_benchmark_says():
    seed = load_config(TrainConfig, REPO / "configs" / "seed-baseline.yaml")
    ours = load_config(TrainConfig, REPO / "configs" / "abid.yaml")
    # The report's recipe: Adam at 2e-5, batch 64, plain CE, no augmentation, centre crop, whole network trained.
    assert (seed.optimizer, seed.lr, seed.batch_size, seed.loss) == ("adam", 2.0e-5, 64, "ce")
    assert (seed.augment, seed.resize, seed.img_size, seed.patience) == ("none", "center_crop", 224, 5)
    assert not seed.freeze_backbone
    assert seed.model == ours.model == "efficientnet_lite0" and seed.weights == ours.weights == "imagenet"
    assert (ours.resize, ours.head, ours.loss, ours.decision) == ("letterbox", "ordinal", "ordinal", "macro_f1")
    softmax = load_config(TrainConfig, REPO / "configs" / "abid-softmax.yaml")
    assert (softmax.head, softmax.loss, softmax.decision) == ("softmax", "weighted_ce", "argmax")
    assert not ours.freeze_backbone and ours.augment == "light"  # binsight's recipe fine-tunes the whole network
    fast = load_config(TrainConfig, REPO / "configs" / "abid-fast.yaml")
    assert (fast.head, fast.loss, fast.decision) == ("ordinal", "ordinal", "macro_f1")
    # The head-only recipes must hit the trainer's feature-cache path.
    assert fast.freeze_backbone and fast.augment == "none" and softmax.freeze_backbone and softmax.augment == "none"


def test_format_table_lists_every_recipe(accuracy):
    entry = {
        "recipe": "abid",
        "overrides": ["epochs=3"],
        "test": {key: 0.5 for key, _ in accuracy.COLUMNS},
        "val_macro_f1": 0.4,
        "epochs_run": 3,
        "best_epoch": 2,
        "train_seconds": 12.0,
    }
    table = accuracy.format_table([entry, {**entry, "recipe": "seed-baseline", "overrides": []}])
    lines = table.splitlines()
    assert len(lines) == 4
    assert lines[2].startswith("| abid (epochs=3) |") and lines[3].startswith("| seed-baseline |")


def test_cv_summary_is_mean_and_sample_std_and_table_lists_folds(accuracy):
    assert accuracy.mean_std([0.3, 0.5]) == {"mean": 0.4, "std": 0.1414}
    assert accuracy.mean_std([0.25]) == {"mean": 0.25, "std": 0.0}
    entry = {
        "recipe": "abid",
        "overrides": [],
        "folds_run": [0, 1],
        "k": 5,
        "cv": {key: {"mean": 0.5, "std": 0.01} for key in accuracy.CV_KEYS},
        "per_class_f1": {str(c): {"mean": 0.1 * c, "std": 0.0} for c in range(1, 6)},
        "train_cpu_minutes_per_fold": {"mean": 1.25, "std": 0.1},
    }
    lines = accuracy.format_cv_table([entry]).splitlines()
    assert len(lines) == 3
    assert lines[2].startswith("| abid | 2/5 | 0.500 ± 0.010 |")
    assert "0.10 / 0.20 / 0.30 / 0.40 / 0.50" in lines[2] and lines[2].endswith("| 1.2 |")


def test_cv_plot_writes_the_curve_with_a_cached_zero_cpu_recipe(accuracy, tmp_path):
    from PIL import Image

    def entry(recipe, cpu, f1):
        return {
            "recipe": recipe,
            "overrides": [],
            "folds_run": [0, 1],
            "k": 5,
            "cv": {"macro_f1": {"mean": f1, "std": 0.01}},
            "train_cpu_minutes_per_fold": {"mean": cpu, "std": 0.0},
        }

    out = accuracy.plot_cv([entry("abid", 0.0, 0.35), entry("abid-finetune", 27.6, 0.38)], tmp_path / "cv.png")
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size == (1080, 720)
