"""A training run end to end: run directory, data, :class:`~binsight.training.trainer.Trainer`, artifact, plots.

Run directory (``runs/train/<name>[N]/`` auto-numbered, or ``--out``)::

    config.yaml            the resolved TrainConfig (``data`` = the split folder)
    metrics.csv            one row per epoch
    weights/last.pt        latest resumable state (+ last.prev.pt, the previous good one)
    weights/best.pt        weights of the best validation macro-F1
    artifact/              model.json + model.safetensors of the best weights
    curves.png             loss / accuracy / macro-F1 / learning rate per epoch
    confusion_matrix.png   validation confusion matrix at the best epoch

Single process:  ``binsight train --data SPLITDIR epochs=10``; resume: ``binsight train --resume RUNDIR``.
Data-parallel: the same call in every worker of a torchrun / ``binsight train --nproc N`` job (the rank comes
from the environment); rank 0 picks the run directory and the checkpoint, and alone writes files.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from binsight.config.loader import ConfigError, dump_yaml, load_config
from binsight.config.schemas import TrainConfig
from binsight.errors import BinsightError
from binsight.faults import Faults
from binsight.tracking import Tracker, log_files, open_tracker
from binsight.training.checkpoint import has_checkpoint, holds_run
from binsight.training.protocol import WorkerEnv
from binsight.utils.signals import StopFlag, stop_on_signals

if TYPE_CHECKING:
    import numpy as np

    from binsight.training.trainer import EpochCallback, Trainer

log = logging.getLogger(__name__)

# Keys a resume may change: they do not alter the network, the data or the optimiser's state. Changing
# ``epochs`` stretches the learning-rate schedule from the resume point on.
RESUMABLE_KEYS = ("epochs", "patience", "max_runtime", "device", "amp", "cache_dir", "num_workers")


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        run_dir: the run directory.
        artifact_dir: ``run_dir/artifact``.
        best_epoch: 1-based epoch of the best validation macro-F1.
        best_metrics: its validation metrics.
        history: one row per epoch (the ``metrics.csv`` columns).
        stopped_early: early stopping ended the run.
    """

    run_dir: Path
    artifact_dir: Path
    best_epoch: int
    best_metrics: dict[str, Any]
    history: list[dict[str, Any]]
    stopped_early: bool


def resolve_run_dir(run: str | Path) -> Path:
    """A run directory from ``run`` (the folder, its ``weights/`` folder, or a checkpoint file in it)."""
    path = Path(run)
    if path.is_file():
        path = path.parent
    if path.name == "weights":
        path = path.parent
    if not (path / "config.yaml").is_file():
        raise BinsightError(
            f"{run} is not a training run directory: {path / 'config.yaml'} is missing "
            "(pass the folder `binsight train` created, e.g. runs/train/exp)"
        )
    return path


def resume_config(run: str | Path, overrides: list[str] | None = None, data: str | Path | None = None) -> TrainConfig:
    """The config of a run to resume: its ``config.yaml`` with allowed ``key=value`` overrides applied.

    Raises:
        ConfigError: an override names a key that a resume cannot change (the message lists those it can).
    """
    from binsight.config.loader import parse_override

    run_dir = resolve_run_dir(run)
    for text in overrides or []:
        key = ".".join(parse_override(text)[0])
        if key not in RESUMABLE_KEYS:
            raise ConfigError(
                f"{key} cannot be changed when resuming (the checkpoint was trained with the run's value); "
                f"keys a resume may change: {', '.join(RESUMABLE_KEYS)}. Start a new run to change {key}"
            )
    cfg = load_config(TrainConfig, run_dir / "config.yaml", overrides)
    if data is not None:
        cfg = replace(cfg, data=str(Path(data).resolve()))
    return cfg


def _new_run_dir(cfg: TrainConfig, out: str | Path | None, project: str | Path) -> Path:
    from binsight.utils.io import next_run_dir

    if out is None:
        return next_run_dir(project, "train", cfg.name)
    run_dir = Path(out)
    if holds_run(run_dir):
        raise BinsightError(
            f"{run_dir} already holds a training run; continue it with `binsight train --resume {run_dir}` "
            "or choose another --out"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def train(
    cfg: TrainConfig,
    out: str | Path | None = None,
    project: str | Path = "runs",
    resume: str | Path | None = None,
    worker: WorkerEnv | None = None,
    stop: StopFlag | None = None,
    on_epoch_end: Sequence[EpochCallback] = (),
    start_time: float | None = None,
    handle_signals: bool = True,
    auto_resume: bool = False,
    faults: Faults | None = None,
) -> TrainResult:
    """Train a model as configured in this process and write the run directory.

    Callers outside the training package use :func:`binsight.training.job.run_training_job`, which also
    starts workers and reads the worker environment; this is the part that runs inside one worker.

    Args:
        cfg: the training config; ``cfg.data`` is the split folder.
        out: run directory (default ``project/train/<cfg.name>[N]``); ignored when resuming.
        project: root of auto-numbered run directories.
        resume: a run directory to continue from its ``weights/last.pt`` (``cfg`` should come from
            :func:`resume_config`).
        worker: this process's place in the job (default: a single process); with several ranks the
            process group is joined here.
        stop: a :class:`~binsight.utils.signals.StopFlag` the caller may set to stop at the next batch.
        on_epoch_end: callables ``(epoch, row)`` after each epoch (tuning reports and prunes here).
        start_time: ``time.monotonic()`` when the job started; ``max_runtime`` counts from it.
        handle_signals: turn SIGTERM/SIGINT into a checkpoint-and-stop (main thread only).
        auto_resume: when ``out`` already holds this run with a checkpoint, continue it (worker restarts,
            spot instances) instead of refusing; its config must match ``cfg`` apart from :data:`RESUMABLE_KEYS`.
        faults: test seams (inert unless a test enables them).

    Returns:
        The run's :class:`TrainResult`.

    Raises:
        Interrupted: stopped by a signal, ``stop`` or ``max_runtime`` after saving ``weights/last.pt``.
        DataError, CheckpointError, BinsightError: bad data, damaged checkpoints, bad arguments.
    """
    from binsight.training import distributed as D

    worker = worker or WorkerEnv()
    stop = stop or StopFlag()
    if not cfg.data:
        raise BinsightError("no training data: pass --data SPLITDIR (a folder made by `binsight data split`)")
    cfg = replace(cfg, data=str(Path(cfg.data).resolve()))
    dist = worker.dist
    joined = False
    if dist.distributed and not D.is_initialized():
        from binsight.training.runtime import resolve_device

        D.init_process_group(dist, resolve_device(cfg.device, dist))
        joined = True
    if not dist.is_main:
        os.environ["BINSIGHT_NO_PROGRESS"] = "1"  # one progress bar and one log per job: rank 0's
        logging.getLogger("binsight").setLevel(logging.WARNING)
    tracker: Tracker | None = None
    try:
        trainer = _prepare(cfg, out, project, resume, worker, auto_resume, stop, on_epoch_end, start_time, faults)
        if dist.is_main:
            tracker = _start_tracking(cfg, trainer)
        guard = stop_on_signals(stop) if handle_signals else contextlib.nullcontext(stop)
        with guard:
            result = trainer.fit()
        run_dir, data = trainer.run_dir, trainer.data
        if result.best_epoch == 0:  # pragma: no cover - fit always finishes at least one epoch or raises
            raise BinsightError("training ended without a validated epoch")
        artifact_dir = run_dir / "artifact"
        if dist.is_main:
            export_artifact(trainer, run_dir, result.best_epoch)
            write_plots(run_dir, result.history, result.best_metrics, data.class_labels)
        D.barrier()  # no rank reports success before the artifact exists
        if tracker is not None:
            log_files(tracker, run_dir, ("config.yaml", "metrics.csv", "*.png"))
            tracker.log_artifacts(artifact_dir, "model")
            tracker.close()
            tracker = None
    except BaseException:
        if tracker is not None:
            tracker.close("KILLED")  # stopped (resumable) or failed: MLflow shows it as not finished
        raise
    finally:
        if joined:
            D.destroy_process_group()
    best = result.best_metrics
    log.info(
        "best epoch %d: val macro-F1 %.4f, accuracy %.4f; artifact in %s",
        result.best_epoch,
        best["macro_f1"],
        best["accuracy"],
        artifact_dir,
    )
    return TrainResult(run_dir, artifact_dir, result.best_epoch, best, result.history, result.stopped_early)


def _start_tracking(cfg: TrainConfig, trainer: Trainer) -> Tracker | None:
    """Open the run's tracker (``cfg.tracking``), log the config and hook per-epoch metrics."""
    from binsight.config.loader import to_dict

    tracker = open_tracker(cfg.tracking, trainer.run_dir, trainer.run_dir.name, {"binsight.model": cfg.model})
    if tracker is not None:
        active = tracker
        active.log_params(to_dict(cfg))
        trainer.on_epoch_end.append(lambda epoch, row: active.log_metrics(row, step=epoch))
    return tracker


def _prepare(
    cfg: TrainConfig,
    out: str | Path | None,
    project: str | Path,
    resume: str | Path | None,
    worker: WorkerEnv,
    auto_resume: bool,
    stop: StopFlag,
    on_epoch_end: Sequence[EpochCallback],
    start_time: float | None,
    faults: Faults | None,
) -> Trainer:
    """Run directory, data and a :class:`Trainer` (restored when resuming), the same on every rank.

    Rank 0 alone decides the run directory and reads the checkpoint; the other ranks get both by broadcast,
    so every rank continues from the same file even when one is being rewritten, and errors reach all ranks.
    """
    from binsight.models.weights import check_weights
    from binsight.training import distributed as D
    from binsight.training.data import SplitData, load_split_data
    from binsight.training.teacher import check_teacher, teacher_targets
    from binsight.training.trainer import Trainer
    from binsight.utils.io import atomic_write_text

    dist = worker.dist
    check_weights(cfg.model, cfg.weights)
    if cfg.teacher:
        check_teacher(cfg.teacher)

    def choose_run_dir() -> tuple[str, bool, bool]:
        """(run directory, resuming, whether this call created the folder)."""
        if resume is not None:
            return str(resolve_run_dir(resume)), True, False
        if auto_resume and out is not None and has_checkpoint(Path(out)):
            _check_same_run(Path(out), cfg)
            log.info("%s holds this run with a checkpoint: resuming it", out)
            return str(Path(out)), True, False
        if auto_resume and out is not None:
            Path(out).mkdir(parents=True, exist_ok=True)  # a run that died before its first checkpoint
            return str(Path(out)), False, False
        existed = out is not None and Path(out).exists()
        return str(_new_run_dir(cfg, out, project)), False, not existed

    chosen, resuming, created = D.run_on_main(choose_run_dir, dist)
    run_dir = Path(chosen)
    if dist.is_main:
        atomic_write_text(run_dir / "config.yaml", dump_yaml(cfg))
    log.info("run directory: %s", run_dir)

    # One process per machine decodes into the cache; the others then hit it.
    def load() -> SplitData:
        return load_split_data(cfg.data, cfg.img_size, cfg.resize, cfg.cache_dir, workers=cfg.num_workers)

    def soft_targets() -> np.ndarray:
        import torch

        threads = torch.get_num_threads()
        return teacher_targets(cfg.teacher, data.split_dir, data.classes, data.data_hash, run_dir, threads)

    try:
        start = None
        if cfg.synth_pretrain and not resuming:  # a resumed run's weights come from its checkpoint
            from binsight.training.synthstart import synth_start

            start = str(synth_start(cfg, may_build=not dist.distributed, stop=stop))
        data = D.run_on_local_first(load, dist)
        if cfg.teacher:
            data = replace(data, train_soft_targets=D.run_on_main(soft_targets, dist))
        trainer = Trainer(cfg, data, run_dir, worker, stop, on_epoch_end, start_time, faults, start)
    except BaseException:
        if created and dist.is_main:  # a failed start (data, weights) leaves no folder and frees the number
            import shutil

            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    if resuming:
        state, path = D.run_on_main(lambda: trainer.checkpoints.load_latest(), dist)
        trainer.load_state_dict(state, path)
        st = trainer.state
        log.info("resuming from %s: epoch %d, batch %d, step %d", path, st.epoch, st.batch_in_epoch, st.step)
    return trainer


def _check_same_run(run_dir: Path, cfg: TrainConfig) -> None:
    """Refuse to auto-resume ``run_dir`` with a config that differs in a key a resume cannot change."""
    from binsight.config.loader import to_dict

    saved = to_dict(load_config(TrainConfig, run_dir / "config.yaml"))
    wanted = to_dict(cfg)
    differ = sorted(k for k in wanted if k not in RESUMABLE_KEYS and k != "data" and saved.get(k) != wanted[k])
    if differ:
        changes = ", ".join(f"{k}: {saved.get(k)!r} -> {wanted[k]!r}" for k in differ)
        raise ConfigError(
            f"{run_dir} holds a run with another config ({changes}); a resume may change only "
            f"{', '.join(RESUMABLE_KEYS)}. Choose another --out to start a new run"
        )


def export_artifact(trainer: Trainer, run_dir: Path, best_epoch: int) -> Path:
    """Write ``run_dir/artifact`` from ``weights/best.pt`` with the model, preprocessing and best val metrics."""
    from binsight import __version__
    from binsight.inference.artifact import ArtifactMeta, save_artifact
    from binsight.training.checkpoint import load_checkpoint
    from binsight.training.features import state_digest

    cfg = trainer.cfg
    best = load_checkpoint(trainer.checkpoints.best)
    metrics = dict(best["metrics"])
    metrics.update({"split": "val", "epoch": best_epoch, "tta": cfg.tta})
    meta = ArtifactMeta(
        name=run_dir.name,
        architecture=cfg.model,
        class_labels=[str(c) for c in trainer.data.classes],
        head=cfg.head,
        input_size=cfg.img_size,
        resize=cfg.resize,
        mean=list(trainer.mean),
        std=list(trainer.std),
        training_data_hash=trainer.data.data_hash,
        decision_rule=cfg.decision,
        tta_flip=cfg.tta,
        amp=cfg.amp,
        metrics=metrics,
        version=f"{run_dir.name}-{state_digest(best['model'])[:12]}",
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        binsight_version=__version__,
    )
    return save_artifact(run_dir / "artifact", best["model"], meta)


def write_plots(run_dir: Path, history: list[dict[str, Any]], best_metrics: dict[str, Any], labels: list[str]) -> None:
    """``curves.png`` and ``confusion_matrix.png`` (validation, best epoch); a plotting failure only warns."""
    from binsight.evaluation.plots import plot_confusion_matrix, plot_curves

    try:
        plot_curves(history, run_dir / "curves.png")
        plot_confusion_matrix(
            best_metrics["confusion_matrix"], labels, run_dir / "confusion_matrix.png", title="validation, best epoch"
        )
    except Exception as exc:  # plots are a convenience: never lose a finished run to a plotting error
        log.warning("could not draw the plots: %s", exc)
