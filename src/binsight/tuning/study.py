"""Run a study: create or load it, run workers against its storage, write the results.

Tuning run directory (``runs/tune/<name>[N]/``)::

    tune.yaml                 the resolved TuneConfig (``train.data`` = the split folder)
    study.json                study name, storage (password masked), data hash
    journal.log               the Optuna journal (default storage) + heartbeats/ of running trials
    logs/worker-<i>.log       output of each worker process (``jobs`` > 1)
    trials/<number>/          each trial's training run directory (config.yaml, metrics.csv, weights/, …)
    trials.csv, summary.json, best.yaml, optimization_history.png, param_importances.png

``trials`` is the study's total: every worker (on this machine or another one sharing the storage) asks for
a new trial only while fewer than ``trials`` count (a failed trial that is retried counts once).

What lives where: this module creates/checks the study and runs it (:func:`run_study`, :func:`run_worker`);
spawning the ``jobs`` worker processes and the per-worker threads and seeds live in
:mod:`binsight.tuning.workers`, the storages in :mod:`binsight.tuning.storage`, the trial itself in
:mod:`binsight.tuning.objective` and the results in :mod:`binsight.tuning.report`.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from binsight.config.loader import dump_yaml, from_dict, load_config, to_dict
from binsight.config.schemas import TrainConfig, TuneConfig
from binsight.errors import BinsightError, CheckpointError, Interrupted
from binsight.tuning import storage as st
from binsight.tuning.space import space_dict
from binsight.tuning.workers import (
    STORAGE_ENV,
    finished_trials,
    spawn_workers,
    worker_seed,
    worker_threads,
)

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

log = logging.getLogger(__name__)

CONFIG_FILE = "tune.yaml"
STUDY_FILE = "study.json"
# Keys `--resume` may change: they do not alter what a trial means.
RESUMABLE_KEYS = ("trials", "timeout", "jobs", "threads", "keep", "max_retry", "heartbeat", "grace", "storage")
# Training keys that may differ between machines sharing a study.
MACHINE_KEYS = ("name", "data", "cache_dir", "num_workers", "device")
# A trial raising one of these is marked FAIL and the study goes on; anything else stops the worker.
TRIAL_ERRORS = (RuntimeError, ValueError, ArithmeticError, MemoryError, CheckpointError)


class BudgetReached(Exception):
    """Raised from ``ask`` when the study already holds ``trials`` trials: ends a worker's optimize loop."""


def counted_trials(trials: Sequence[FrozenTrial]) -> int:
    """Trials that count toward the budget: all of them except FAIL trials that a later trial retries."""
    retried = st.retried_numbers(trials)
    return sum(1 for t in trials if t.number not in retried)


def make_sampler(cfg: TuneConfig, seed: int, parallel: bool) -> optuna.samplers.BaseSampler:
    import optuna

    if cfg.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant_liar is experimental in some versions
        # constant_liar: running trials count as bad guesses, so parallel workers spread out.
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=cfg.startup_trials, constant_liar=parallel)


def make_pruner(cfg: TuneConfig) -> optuna.pruners.BasePruner:
    """The pruner; epochs are the steps and the first ``pruner_warmup`` epochs are never pruned."""
    import optuna

    warmup = cfg.pruner_warmup + 1  # Optuna prunes from step == n_warmup_steps; steps are 1-based epochs
    if cfg.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=cfg.pruner_startup, n_warmup_steps=warmup)
    if cfg.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=max(1, warmup), max_resource=cfg.train.epochs)
    if cfg.pruner == "threshold":
        return optuna.pruners.ThresholdPruner(lower=cfg.prune_below, n_warmup_steps=warmup)
    return optuna.pruners.NopPruner()


def _study_class() -> type[optuna.Study]:
    import optuna

    class BudgetedStudy(optuna.Study):
        """A study whose ``ask`` fails stale trials and refuses to go past the trial budget (under a lock)."""

        budget: int = 0
        handle: st.StorageHandle
        lock_dir: Path
        retry: Any = None

        def ask(self, fixed_distributions: dict[str, Any] | None = None) -> optuna.Trial:
            from optuna.trial import TrialState

            with st.ask_lock(self.handle, self.lock_dir, self.study_name):
                if self.handle.kind == "journal":  # RDB storages did this just before ask
                    st.fail_stale_trials(self, self.handle, self.retry)
                trials = self.get_trials(deepcopy=False)
                waiting = any(t.state == TrialState.WAITING for t in trials)
                if not waiting and counted_trials(trials) >= self.budget:
                    raise BudgetReached
                return super().ask(fixed_distributions)

    return BudgetedStudy


def open_study(cfg: TuneConfig, tune_dir: Path, handle: st.StorageHandle, seed: int, parallel: bool) -> Any:
    """Load the (existing) study as a budget-aware study object."""
    cls: Any = _study_class()  # a BudgetedStudy, whose budget and storage handle are set here
    study = cls(cfg.study_name or cfg.name, handle.storage, make_sampler(cfg, seed, parallel), make_pruner(cfg))
    study.budget, study.handle, study.lock_dir = cfg.trials, handle, Path(tune_dir)
    study.retry = st.retry_callback(cfg.max_retry)
    return study


def _comparable_train(train: TrainConfig) -> dict[str, Any]:
    return {k: v for k, v in to_dict(train).items() if k not in MACHINE_KEYS}


def create_or_check_study(cfg: TuneConfig, handle: st.StorageHandle, data_hash: str) -> optuna.Study:
    """Create the study in the storage, or load it and check it searches the same space on the same data.

    Raises:
        BinsightError: the existing study was made with another space, training config or split.
    """
    import optuna

    name = cfg.study_name or cfg.name
    study = optuna.create_study(study_name=name, storage=handle.storage, direction="maximize", load_if_exists=True)
    mine: dict[str, Any] = {
        "binsight_space": space_dict(cfg.space),
        "binsight_train": _comparable_train(cfg.train),
        "binsight_data_hash": data_hash,
    }
    attrs: dict[str, Any] = study.user_attrs
    if "binsight_space" not in attrs:
        for key, value in mine.items():
            study.set_user_attr(key, value)
        return study
    for key, what in (("binsight_space", "search space"), ("binsight_train", "training config")):
        if attrs.get(key) != mine[key]:
            theirs: dict[str, Any] = attrs.get(key) or {}
            ours: dict[str, Any] = mine[key]
            diff = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
            raise BinsightError(
                f"study {name!r} in {handle.display} was created with another {what} "
                f"(keys that differ: {', '.join(diff)}); use the same --config on every machine, "
                "or pick a new --study-name"
            )
    if attrs.get("binsight_data_hash") != data_hash:
        raise BinsightError(
            f"study {name!r} in {handle.display} was created on another split (training manifest hash "
            f"{str(attrs.get('binsight_data_hash'))[:12]}…, this one {data_hash[:12]}…); pass the same split"
        )
    return study


def prepare_data(cfg: TuneConfig) -> str:
    """Check the split and fill the decode cache for every image size of the space; returns the data hash.

    Done once before the workers start, so parallel workers find a complete cache entry instead of decoding
    the same images side by side, and bad data stops the study before any trial runs.
    """
    from binsight.training.data import load_split_data

    sizes = cfg.space.img_size or [cfg.train.img_size]
    data_hash = ""
    for size in sizes:
        data = load_split_data(cfg.train.data, size, cfg.train.resize, cfg.train.cache_dir, cfg.train.num_workers)
        data_hash = data.data_hash
    return data_hash


def run_worker(tune_dir: Path, index: int = 0, storage_url: str | None = None, show_progress: bool = False) -> int:
    """One worker: ``study.optimize`` against the study's storage until the budget or the timeout is reached.

    Returns:
        The number of trials this worker ran.

    Raises:
        Interrupted: a signal stopped the running trial (its checkpoint is saved; ``--resume`` continues it).
    """
    import optuna
    import torch
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    from binsight.tuning.objective import Objective

    tune_dir = Path(tune_dir)
    cfg = load_config(TuneConfig, tune_dir / CONFIG_FILE)
    url = storage_url or os.environ.get(STORAGE_ENV) or cfg.storage
    handle = st.open_storage(url, tune_dir, cfg.heartbeat, cfg.grace, cfg.max_retry)
    torch.set_num_threads(worker_threads(cfg))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = open_study(cfg, tune_dir, handle, worker_seed(cfg, index, handle), cfg.jobs > 1 or handle.kind == "rdb")
    objective = Objective(
        tune_dir, cfg.train, cfg.space, handle.heartbeat_dir if handle.kind == "journal" else None, cfg.heartbeat
    )
    ran = 0
    bar = None
    if show_progress:
        from binsight.utils.progress import progress

        bar = progress(total=cfg.trials, initial=min(cfg.trials, finished_trials(study)), desc="trials", unit="trial")

    def count(study_: optuna.Study, trial: FrozenTrial) -> None:
        nonlocal ran
        ran += 1
        log.info(
            "trial %d %s%s", trial.number, trial.state.name, f": {trial.value:.4f}" if trial.value is not None else ""
        )
        if bar is not None:
            bar.n = min(cfg.trials, finished_trials(study_))
            bar.refresh()

    try:
        study.optimize(
            objective,
            timeout=cfg.timeout or None,
            catch=TRIAL_ERRORS,
            callbacks=[MaxTrialsCallback(cfg.trials, states=(TrialState.COMPLETE, TrialState.PRUNED)), count],
        )
    except BudgetReached:
        pass
    finally:
        if bar is not None:
            bar.close()
    return ran


def resume_tune_config(tune_dir: Path, overrides: list[str] | None = None) -> TuneConfig:
    """The config of a tuning run to continue: its ``tune.yaml`` with allowed ``key=value`` overrides.

    Raises:
        BinsightError: ``tune_dir`` is not a tuning run directory.
        ConfigError: an override changes what the trials mean (only RESUMABLE_KEYS may change).
    """
    from binsight.config.loader import ConfigError, parse_override

    if not (Path(tune_dir) / CONFIG_FILE).is_file():
        raise BinsightError(
            f"{tune_dir} is not a tuning run directory: {Path(tune_dir) / CONFIG_FILE} is missing "
            "(pass the folder `binsight tune` created, e.g. runs/tune/study)"
        )
    for text in overrides or []:
        key = ".".join(parse_override(text)[0])
        if key not in RESUMABLE_KEYS:
            raise ConfigError(
                f"{key} cannot be changed when resuming a study (its trials were run with the old value); "
                f"keys a resume may change: {', '.join(RESUMABLE_KEYS)}"
            )
    return load_config(TuneConfig, Path(tune_dir) / CONFIG_FILE, overrides)


def run_study(
    cfg: TuneConfig,
    data: str | Path | None,
    out: str | Path,
    resume: bool = False,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Run (or continue) the study ``cfg`` on the split ``data`` in the tuning run directory ``out``.

    Args:
        cfg: the tuning config (search space, budget, storage, and the base training config).
        data: the split folder (None: ``cfg.train.data``).
        out: the tuning run directory (created; with ``resume`` an existing one).
        resume: continue the study recorded in ``out`` (more trials, retries of stopped trials).
        show_progress: show a trials progress bar.

    Returns:
        The summary (also ``out/summary.json``): ``best_value``, ``best_params``, ``best_trial``,
        ``best_yaml``, ``best_run_dir``, ``states``, ``time_to_best_s``, … (see :func:`report.write_results`).

    Raises:
        BinsightError: bad data, an unreachable storage, or no trial completed.
        Interrupted: stopped by a signal after saving the running trials' checkpoints.
    """
    from binsight.tuning.report import cleanup_trials, write_results
    from binsight.utils.io import atomic_write_json, atomic_write_text

    started = time.time()
    tune_dir = Path(out)
    if not resume and (tune_dir / STUDY_FILE).exists():
        raise BinsightError(
            f"{tune_dir} already holds a study; continue it with `binsight tune --resume {tune_dir}` "
            "or choose another --out"
        )
    data = data or cfg.train.data
    if not data:
        raise BinsightError("no training data: pass --data SPLITDIR (a folder made by `binsight data split`)")
    cfg = replace(cfg, train=replace(cfg.train, data=str(Path(data).resolve())))
    cfg = from_dict(TuneConfig, to_dict(cfg))  # validate the merged config once more
    tune_dir.mkdir(parents=True, exist_ok=True)
    data_hash = prepare_data(cfg)
    handle = st.open_storage(cfg.storage, tune_dir, cfg.heartbeat, cfg.grace, cfg.max_retry)
    create_or_check_study(cfg, handle, data_hash)
    stored = cfg if not st.has_password(cfg.storage) else replace(cfg, storage=handle.display)
    atomic_write_text(tune_dir / CONFIG_FILE, dump_yaml(stored))
    atomic_write_json(
        tune_dir / STUDY_FILE,
        {"study_name": cfg.study_name or cfg.name, "storage": handle.display, "kind": handle.kind, "data": data_hash},
    )
    study = open_study(cfg, tune_dir, handle, worker_seed(cfg, 0, handle), cfg.jobs > 1)
    with st.ask_lock(handle, tune_dir, study.study_name):
        st.fail_stale_trials(study, handle, study.retry)
        if resume:
            st.retry_interrupted(study, study.retry)
    log.info("study %s in %s: %d trial(s) so far", study.study_name, handle.display, len(study.trials))
    interrupted: Interrupted | None = None
    try:
        if cfg.jobs == 1:
            run_worker(tune_dir, 0, handle.url, show_progress=show_progress)
        else:
            spawn_workers(cfg, tune_dir, handle, study, show_progress)
    except Interrupted as exc:
        interrupted = exc
    summary = write_results(study, tune_dir, cfg, handle, started)
    if interrupted is not None:
        raise Interrupted(f"tuning stopped; continue with: binsight tune --resume {tune_dir}") from None
    if cfg.keep == "best":
        cleanup_trials(tune_dir, summary.get("best_trial"))
    if summary.get("best_trial") is None:
        raise BinsightError(
            f"no trial completed ({summary['states']}); see the error column of {tune_dir / 'trials.csv'} "
            f"and the logs in {tune_dir}"
        )
    return summary
