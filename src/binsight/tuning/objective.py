"""The objective: one trial = one :func:`binsight.training.run.train` run, scored by validation macro-F1.

Every epoch reports its validation macro-F1 to Optuna (``trial.report``) and asks the pruner whether to go
on (``trial.should_prune``); a weak trial raises ``optuna.TrialPruned`` from the trainer's epoch-end hook,
after that epoch's checkpoint and ``metrics.csv`` row were written. The trial's value is the best epoch's
validation macro-F1, as in the capstone report's tuning jobs.

A trial that re-runs a failed one (its worker died, or it was stopped by a signal) takes over the failed
trial's run directory and resumes it from ``weights/last.pt``, replaying the epochs it already reported.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from binsight.config.schemas import SearchSpace, TrainConfig
from binsight.errors import Interrupted
from binsight.tuning.space import apply_params, suggest
from binsight.tuning.storage import HOST, FileHeartbeat

if TYPE_CHECKING:
    import optuna

    from binsight.training.run import TrainResult
    from binsight.training.trainer import EpochCallback

log = logging.getLogger(__name__)

TRIALS_DIR = "trials"


def trial_dir(tune_dir: Path, number: int) -> Path:
    """Run directory of trial ``number`` inside the tuning run directory."""
    return Path(tune_dir) / TRIALS_DIR / str(number)


def read_metrics(run_dir: Path) -> list[dict[str, str]]:
    """Rows of a run's ``metrics.csv`` (empty when it has none)."""
    path = Path(run_dir) / "metrics.csv"
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@dataclass
class Objective:
    """Callable ``objective(trial) -> float`` for ``study.optimize``.

    Attributes:
        tune_dir: the tuning run directory (trials go to ``trials/<number>/``).
        base: the training config every trial starts from (``data`` set).
        space: the search space.
        heartbeat_dir: where journal-storage heartbeat files go (None for RDB storages, which beat themselves).
        heartbeat: seconds between heartbeats.
    """

    tune_dir: Path
    base: TrainConfig
    space: SearchSpace
    heartbeat_dir: Path | None = None
    heartbeat: float = 60.0

    def __call__(self, trial: optuna.Trial) -> float:
        import optuna

        beat = (
            FileHeartbeat(self.heartbeat_dir, trial._trial_id, self.heartbeat)
            if self.heartbeat_dir is not None
            else contextlib.nullcontext()
        )
        with beat:
            params = suggest(trial, self.space)
            cfg = apply_params(self.base, self.space, params, name=f"trial{trial.number}")
            run_dir = trial_dir(self.tune_dir, trial.number)
            resume = self._take_over_failed(trial, run_dir)
            trial.set_user_attr("run_dir", str(run_dir.resolve()))
            trial.set_user_attr("host", HOST)
            trial.set_user_attr("interrupted", False)  # a retry inherits the failed trial's attributes
            trial.set_user_attr("error", "")
            if resume is not None:
                for row in read_metrics(run_dir):  # the epochs the failed trial already reported
                    trial.report(float(row["val_macro_f1"]), int(row["epoch"]))

            def report(epoch: int, row: dict[str, Any]) -> None:
                value = float(row["val_macro_f1"])
                trial.report(value, epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned after epoch {epoch} (val macro-F1 {value:.4f})")

            try:
                result = self._train(cfg, run_dir, resume, report)
            except optuna.TrialPruned:
                raise
            except Interrupted:
                # The checkpoint is saved: `binsight tune --resume` re-queues this trial and continues it.
                trial.set_user_attr("interrupted", True)
                raise
            except Exception as exc:
                trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:500])
                raise
            trial.set_user_attr("best_epoch", result.best_epoch)
            trial.set_user_attr("val_accuracy", float(result.best_metrics["accuracy"]))
            return float(result.best_metrics["macro_f1"])

    def _train(self, cfg: TrainConfig, run_dir: Path, resume: Path | None, report: EpochCallback) -> TrainResult:
        from binsight.training.job import run_training_job
        from binsight.training.protocol import WorkerEnv
        from binsight.training.run import resume_config

        main_thread = threading.current_thread() is threading.main_thread()
        if resume is not None:
            cfg = resume_config(resume, data=cfg.data)
        # A trial always trains in this process (never a launcher's worker: any RANK in the environment is not its).
        result = run_training_job(
            cfg,
            out=None if resume else run_dir,
            resume=resume,
            on_epoch_end=[report],
            handle_signals=main_thread,
            worker=WorkerEnv(),
        )
        assert result is not None  # in-process training without a launcher always returns its result
        return result

    def _take_over_failed(self, trial: optuna.Trial, run_dir: Path) -> Path | None:
        """When ``trial`` retries a failed trial with a checkpoint here, move its run dir to ``run_dir``."""
        history = trial.storage.get_trial_system_attrs(trial._trial_id).get("retry_history") or []
        if not history:
            return None
        previous = trial_dir(self.tune_dir, int(history[-1]))
        if not previous.is_dir():
            return None  # it ran on another machine: start afresh
        from binsight.training.checkpoint import has_checkpoint

        if not has_checkpoint(previous):
            shutil.rmtree(previous, ignore_errors=True)  # died before its first checkpoint: nothing to keep
            return None
        previous.rename(run_dir)
        log.info("trial %d resumes trial %d from its checkpoint", trial.number, int(history[-1]))
        return run_dir
