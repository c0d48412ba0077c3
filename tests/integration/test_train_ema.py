"""``ema``: an exponential moving average of the weights, which validation, early stopping and best.pt use."""

from __future__ import annotations

import csv

import pytest
import torch

from binsight.config import load_config
from binsight.config.schemas import TrainConfig
from binsight.errors import Interrupted
from binsight.training.checkpoint import load_checkpoint
from binsight.training.data import load_split_data
from binsight.training.run import resume_config, train
from binsight.training.trainer import Trainer
from tests.integration.test_train_resume import StopAtQuery
from tests.integration.train_helpers import TINY

# ``split``: the default tiny split, from tests/integration/conftest.py; ``one_thread`` from tests/conftest.py.
pytestmark = pytest.mark.usefixtures("one_thread")

DECAY = 0.6


def _cfg(split, tmp_path, *extra: str) -> TrainConfig:
    overrides = [*TINY, f"data={split}", f"cache_dir={tmp_path / 'cache'}", "deterministic=true", *extra]
    return load_config(TrainConfig, None, overrides)


class RecordingTrainer(Trainer):
    """Keeps the raw weights and BatchNorm statistics after every optimizer step."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.after_steps: list[dict[str, torch.Tensor]] = []

    def _train_step(self, idx):
        out = super()._train_step(idx)
        self.after_steps.append({k: v.detach().clone() for k, v in self.model.state_dict().items()})
        return out


def test_the_average_follows_every_step_and_is_what_validation_scores(split, tmp_path):
    cfg = _cfg(split, tmp_path, "epochs=2", f"ema={DECAY}")
    data = load_split_data(split, cfg.img_size, cfg.resize, cfg.cache_dir)
    trainer = RecordingTrainer(cfg, data, tmp_path / "run")
    trainer.fit()

    # The average computed here from the recorded raw weights: the first step copies, later ones blend.
    expected = dict(trainer.after_steps[0])
    for step in trainer.after_steps[1:]:
        for k, v in step.items():
            expected[k] = DECAY * expected[k] + (1 - DECAY) * v if v.is_floating_point() else v
    averaged = trainer.ema.module.state_dict()
    for k, v in expected.items():
        if v.is_floating_point():
            torch.testing.assert_close(averaged[k], v, rtol=1e-5, atol=1e-6, msg=f"{k} is not the step average")
    raw = trainer.model.state_dict()
    assert any(not torch.allclose(raw[k], averaged[k]) for k in raw if raw[k].is_floating_point())

    # The last epoch's logged validation loss is the average's, not the raw network's.
    with open(tmp_path / "run" / "metrics.csv") as f:
        logged = float(list(csv.DictReader(f))[-1]["val_loss"])
    assert trainer.validator.evaluate(trainer.ema.module)["loss"] == pytest.approx(logged, rel=1e-6)
    assert trainer.validator.evaluate(trainer.model)["loss"] != pytest.approx(logged, rel=1e-6)

    best = load_checkpoint(tmp_path / "run" / "weights" / "best.pt")
    if best["epoch"] == 2:
        for k, v in averaged.items():
            assert torch.equal(best["model"][k], v), f"best.pt holds the raw {k}"


def test_a_run_with_an_average_resumes_exactly(split, tmp_path):
    cfg = _cfg(split, tmp_path, "epochs=2", f"ema={DECAY}")
    straight = train(cfg, out=tmp_path / "straight", handle_signals=False)
    with pytest.raises(Interrupted):
        train(cfg, out=tmp_path / "resumed", stop=StopAtQuery(8), handle_signals=False)  # mid-epoch 2
    resumed = train(resume_config(tmp_path / "resumed"), resume=tmp_path / "resumed", handle_signals=False)
    a = load_checkpoint(straight.run_dir / "weights" / "last.pt")
    b = load_checkpoint(resumed.run_dir / "weights" / "last.pt")
    assert a["ema"].keys() == b["ema"].keys()
    for k in a["ema"]:
        assert torch.equal(a["ema"][k], b["ema"][k]), f"the average's {k} differs after resume"
    assert resumed.best_metrics["macro_f1"] == straight.best_metrics["macro_f1"]


def test_ema_outside_its_range_is_refused(split, tmp_path):
    with pytest.raises(ValueError, match=r"ema must be in \[0, 1\)"):
        _cfg(split, tmp_path, "ema=1.0")
