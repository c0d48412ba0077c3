"""Training: :func:`run_training_job` (a whole job: in this process or as data-parallel workers) and the pieces
it is made of.

>>> from binsight.training import run_training_job, Launch
>>> result = run_training_job(cfg, project="runs")                  # cfg: a TrainConfig, cfg.data = a split
>>> result = run_training_job(cfg, Launch(nproc=2), out="runs/train/ddp")

Attributes are imported on first use so ``import binsight.training`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "run_training_job": "binsight.training.job",
    "Launch": "binsight.training.launch",
    "train": "binsight.training.run",
    "resume_config": "binsight.training.run",
    "resolve_run_dir": "binsight.training.run",
    "TrainResult": "binsight.training.run",
    "RESUMABLE_KEYS": "binsight.training.run",
    "WorkerEnv": "binsight.training.protocol",
    "Trainer": "binsight.training.trainer",
    "FitResult": "binsight.training.records",
    "Dist": "binsight.training.distributed",
    "CheckpointManager": "binsight.training.checkpoint",
    "load_checkpoint": "binsight.training.checkpoint",
    "load_split_data": "binsight.training.data",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'binsight.training' has no attribute {name!r}")
