"""The one front door to training: :func:`run_training_job`.

The CLI (``binsight train``), the pipeline's train stages, tuning trials and the SageMaker entry all call it.
It decides which room this process is in:

- a launcher (``launch`` given, and no launcher started this process): start the workers through torchrun's
  agent and wait (:func:`binsight.training.launch.launch_job`);
- a worker, or a single process: train here (:func:`binsight.training.run.train`), with what the
  :class:`~binsight.training.protocol.WorkerEnv` says about this process (read once, by the caller or here).

Single process::

    result = run_training_job(cfg, out="runs/train/exp")

Two data-parallel workers on this machine::

    result = run_training_job(cfg, launch=Launch(nproc=2), out="runs/train/ddp")
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from binsight.config.schemas import TrainConfig
from binsight.faults import Faults
from binsight.training.launch import Launch, launch_job
from binsight.training.protocol import WorkerEnv, WorkerStopped
from binsight.training.run import TrainResult, train
from binsight.training.trainer import EpochCallback
from binsight.utils.signals import StopFlag


def run_training_job(
    cfg: TrainConfig,
    launch: Launch | None = None,
    *,
    out: str | Path | None = None,
    project: str | Path = "runs",
    resume: str | Path | None = None,
    auto_resume: bool = False,
    on_epoch_end: Sequence[EpochCallback] = (),
    stop: StopFlag | None = None,
    handle_signals: bool = True,
    publish_sagemaker: bool = False,
    verbose: bool = False,
    worker: WorkerEnv | None = None,
    faults: Faults | None = None,
) -> TrainResult | None:
    """Run a training job: in this process, or as data-parallel workers started here.

    Args:
        cfg: the resolved training config (``cfg.data`` = the split folder; for a resume, from
            :func:`~binsight.training.run.resume_config`).
        launch: start workers this way (``--nproc``/``--nnodes``); None trains in this process. Ignored in a
            process a launcher started (it is one of the workers).
        out: the run directory (default ``project/train/<cfg.name>[N]``).
        project: root of auto-numbered run directories.
        resume: a run directory to continue from its checkpoint.
        auto_resume: when ``out`` already holds this run with a checkpoint, continue it. Restarted workers
            (``TORCHELASTIC_RESTART_COUNT`` > 0) with an ``out`` always do.
        on_epoch_end: callables ``(epoch, row)`` after each epoch's checkpoint (in-process training only).
        stop: a flag the caller may set to stop at the next batch (in-process training only).
        handle_signals: SIGTERM/SIGINT save a checkpoint and stop (main thread only).
        publish_sagemaker: rank 0 copies the artifact and metrics into ``SM_MODEL_DIR``/``SM_OUTPUT_DATA_DIR``.
        verbose: workers log debug messages.
        worker: this process's worker environment (default: read from ``os.environ`` now).
        faults: test seams (default: those a test enabled in the environment; none in production).

    Returns:
        The run's result; None in a worker whose launcher reports the result (it stopped and told the
        launcher), and in a launcher whose rank 0 wrote the run on another machine.

    Raises:
        Interrupted: stopped with a checkpoint saved (the message says how to resume).
        BinsightError, ConfigError: bad data, config, checkpoint or launch options; a worker failed.
    """
    start = time.monotonic()  # max_runtime counts from the job's start
    worker = worker or WorkerEnv.from_env()
    if launch is not None and not worker.torchrun:
        return launch_job(cfg, launch, out, project, resume, auto_resume, publish_sagemaker, verbose)
    if worker.launcher is not None and worker.launcher.threads:
        import torch

        torch.set_num_threads(worker.launcher.threads)
    auto_resume = auto_resume or (worker.restart_count > 0 and out is not None)
    try:
        result = train(
            cfg,
            out=out,
            project=project,
            resume=resume,
            worker=worker,
            stop=stop,
            on_epoch_end=on_epoch_end,
            start_time=worker.start_time(start),
            handle_signals=handle_signals,
            auto_resume=auto_resume,
            faults=faults or Faults.from_env(),
        )
    except WorkerStopped:
        return None  # a deliberate stop under a binsight launcher: the launcher reports it (exit 3) once
    if publish_sagemaker and worker.dist.is_main:
        from binsight.training.sagemaker import publish, sagemaker_env

        sm = sagemaker_env()
        if sm is not None:
            publish(result.run_dir, sm)
    return result
