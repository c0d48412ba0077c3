"""``benchmarks/accuracy.py --cv K --ensemble``: the K fold models scored alone and as one ensemble artifact."""

from __future__ import annotations

import statistics

import pytest

from binsight.config import load_config
from binsight.config.schemas import TrainConfig
from binsight.evaluation.evaluate import evaluate_run
from binsight.inference.artifact import read_meta
from binsight.training.run import train
from tests.conftest import load_benchmark
from tests.integration.train_helpers import TINY

pytestmark = pytest.mark.usefixtures("one_thread")


def test_fold_models_become_one_ensemble_with_their_mean_calibration(split, tmp_path):
    accuracy = load_benchmark("accuracy")
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text("name: tiny\n")
    with pytest.raises(SystemExit, match="missing: .*accuracy-x-cv2-f0/tiny"):
        accuracy.fold_run_dirs(tmp_path, "x", str(recipe), 2)

    thresholded = ["head=ordinal", "loss=ordinal", "decision=macro_f1", "epochs=2", "lr=0.05"]
    for i in range(2):
        cfg = load_config(TrainConfig, None, [*TINY, *thresholded, f"seed={i}", f"data={split}"])
        cfg_dir = tmp_path / "runs" / f"accuracy-x-cv2-f{i}" / "tiny"
        train(cfg, out=cfg_dir, handle_signals=False)
        evaluate_run(cfg_dir, split="test", threads=1)  # fits the fold model's own temperature and offsets
    dirs = accuracy.fold_run_dirs(tmp_path, "x", str(recipe), 2)
    metas = [read_meta(accuracy.calibrated_artifact(d)) for d in dirs]

    rows = accuracy.score_ensemble(str(recipe), dirs, split, tmp_path / "ens", "torch-fp32", 1)
    assert len(rows["members"]) == 2
    for name, tta in (("tiny", False), ("tiny-flip", True)):
        meta = read_meta(tmp_path / "ens" / name)
        assert len(meta.members) == 2 and meta.tta_flip is tta
        assert meta.temperature == pytest.approx(statistics.fmean(m.temperature for m in metas))
        mean_bias = [statistics.fmean(m.class_bias[c] if m.class_bias else 0.0 for m in metas) for c in range(3)]
        assert meta.class_bias == pytest.approx(mean_bias)
    for name in ("ensemble", "ensemble_flip"):
        assert 0.0 <= rows[name]["macro_f1"] <= 1.0 and set(rows[name]["per_class_f1"]) == {"1", "2", "3"}
    table = accuracy.format_ensemble_table({"tiny": rows}).splitlines()
    assert [line.split(" | ")[1] for line in table[2:]] == ["each fold model alone (2)", "ensemble of 2", "+ flip TTA"]
