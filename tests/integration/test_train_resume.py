"""Never lose work: exact resume, stops at a safe point, max_runtime, damaged checkpoints."""

from __future__ import annotations

import csv
import logging

import pytest
import torch

from binsight.config import load_config
from binsight.config.schemas import TrainConfig
from binsight.errors import Interrupted
from binsight.training.checkpoint import load_checkpoint
from binsight.training.run import resume_config, train
from binsight.utils.signals import StopFlag
from tests.integration.train_helpers import TINY

# ``split``: the default tiny split, from tests/integration/conftest.py; ``one_thread`` from tests/conftest.py.
pytestmark = pytest.mark.usefixtures("one_thread")


def _cfg(split, tmp_path, *extra: str) -> TrainConfig:
    overrides = [*TINY, f"data={split}", f"cache_dir={tmp_path / 'cache'}", "deterministic=true", *extra]
    return load_config(TrainConfig, None, overrides)


class StopAtQuery(StopFlag):
    """A stop flag that turns on at its n-th check (the trainer checks after every batch and every epoch)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.left = n

    @property
    def requested(self) -> bool:
        self.left -= 1
        if self.left == 0:
            self.request("test stop")
        return super().requested


def _metrics(run_dir) -> list[dict]:
    with open(run_dir / "metrics.csv") as f:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]


def _assert_same_weights(a, b) -> None:
    wa, wb = load_checkpoint(a / "weights" / "last.pt")["model"], load_checkpoint(b / "weights" / "last.pt")["model"]
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), f"{k} differs after resume"


# 18 train images at batch 4 = 5 batches: checks 1-5 are epoch 1's batches, 6 its end, 7-8 epoch 2's batches 1-2.
@pytest.mark.parametrize("stop_at", [6, 8], ids=["after-epoch-1", "mid-epoch-2"])
def test_resume_is_exact(split, tmp_path, stop_at):
    cfg = _cfg(split, tmp_path, "epochs=3", "augment=strong", "balance=true", "warmup_epochs=0.5")
    straight = train(cfg, out=tmp_path / "straight", handle_signals=False)

    with pytest.raises(Interrupted) as err:
        train(cfg, out=tmp_path / "resumed", stop=StopAtQuery(stop_at), handle_signals=False)
    assert f"binsight train --resume {tmp_path / 'resumed'}" in str(err.value)
    state = load_checkpoint(tmp_path / "resumed" / "weights" / "last.pt")
    assert (state["epoch"], state["batch_in_epoch"]) == ((1, 0) if stop_at == 6 else (1, 2))

    torch.manual_seed(1234)  # disturb the global RNG: the checkpoint must restore it
    resumed = train(resume_config(tmp_path / "resumed"), resume=tmp_path / "resumed", handle_signals=False)
    assert _metrics(resumed.run_dir) == _metrics(straight.run_dir)
    assert len(_metrics(resumed.run_dir)) == 3
    _assert_same_weights(straight.run_dir, resumed.run_dir)
    assert resumed.best_epoch == straight.best_epoch


def test_early_stopping_stops_at_patience(split, tmp_path):
    # A learning rate this small cannot change the predictions, so macro-F1 never improves after epoch 1.
    cfg = _cfg(split, tmp_path, "epochs=20", "patience=2", "lr=1e-12", "augment=none")
    result = train(cfg, out=tmp_path / "run", handle_signals=False)
    assert result.stopped_early
    assert len(result.history) == 3 and result.best_epoch == 1
    assert len(_metrics(result.run_dir)) == 3


def test_max_runtime_checkpoints_before_the_limit(split, tmp_path):
    import time

    limit = 4.0
    cfg = _cfg(split, tmp_path, "epochs=100000", f"max_runtime={limit}")
    start = time.monotonic()
    with pytest.raises(Interrupted) as err:
        train(cfg, out=tmp_path / "run", start_time=start, handle_signals=False)
    elapsed = time.monotonic() - start
    assert "max_runtime of 4s is near" in str(err.value)
    assert "binsight train --resume" in str(err.value)
    assert elapsed < limit, f"stopped after {elapsed:.2f}s, past the {limit}s limit"
    state = load_checkpoint(tmp_path / "run" / "weights" / "last.pt")
    assert state["scheduler"]["step"] > 0

    # Continue with the limit lifted and just enough epochs to finish the current one.
    done = state["epoch"] + 1
    again = train(
        resume_config(tmp_path / "run", ["max_runtime=0", f"epochs={done}"]),
        resume=tmp_path / "run",
        handle_signals=False,
    )
    assert len(again.history) == done
    assert (again.run_dir / "artifact" / "model.safetensors").is_file()


def test_damaged_last_checkpoint_falls_back_to_previous(split, tmp_path, caplog):
    cfg = _cfg(split, tmp_path, "epochs=3")
    with pytest.raises(Interrupted):
        train(cfg, out=tmp_path / "run", stop=StopAtQuery(12), handle_signals=False)  # after epoch 2
    last = tmp_path / "run" / "weights" / "last.pt"
    prev = tmp_path / "run" / "weights" / "last.prev.pt"
    assert load_checkpoint(last)["epoch"] == 2 and load_checkpoint(prev)["epoch"] == 1
    last.write_bytes(last.read_bytes()[:-100])  # truncated, e.g. by a full disk

    with caplog.at_level(logging.WARNING):
        result = train(resume_config(tmp_path / "run"), resume=tmp_path / "run", handle_signals=False)
    warnings = " ".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
    assert str(last) in warnings and "truncated or corrupt" in warnings
    assert str(prev) in warnings
    assert [int(r["epoch"]) for r in _metrics(result.run_dir)] == [1, 2, 3]
    assert load_checkpoint(last)["epoch"] == 3


def test_resume_changes_only_safe_keys(split, tmp_path):
    from binsight.config import ConfigError

    train(_cfg(split, tmp_path, "epochs=1"), out=tmp_path / "run", handle_signals=False)
    with pytest.raises(ConfigError, match="model cannot be changed when resuming"):
        resume_config(tmp_path / "run", ["model=resnet18"])
    # A finished run trains on when a resume raises its epochs.
    more = train(resume_config(tmp_path / "run", ["epochs=2"]), resume=tmp_path / "run", handle_signals=False)
    assert [int(r["epoch"]) for r in _metrics(more.run_dir)] == [1, 2]
