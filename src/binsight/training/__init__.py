"""Training: ``train`` (a whole run: run directory, data, loop, artifact) and the pieces it is made of.

>>> from binsight.training import train, resume_config
>>> result = train(cfg, project="runs")            # cfg: a TrainConfig with cfg.data = a split folder

Attributes are imported on first use so ``import binsight.training`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "train": "binsight.training.run",
    "resume_config": "binsight.training.run",
    "resolve_run_dir": "binsight.training.run",
    "TrainResult": "binsight.training.run",
    "RESUMABLE_KEYS": "binsight.training.run",
    "Trainer": "binsight.training.trainer",
    "FitResult": "binsight.training.records",
    "StopFlag": "binsight.training.signals",
    "stop_on_signals": "binsight.training.signals",
    "Dist": "binsight.training.distributed",
    "CheckpointManager": "binsight.training.checkpoint",
    "load_checkpoint": "binsight.training.checkpoint",
    "load_split_data": "binsight.training.data",
    "train_distributed": "binsight.training.launch",
    "launch_workers": "binsight.training.launch",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'binsight.training' has no attribute {name!r}")
