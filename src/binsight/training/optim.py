"""Optimizers and the per-step learning-rate schedule (linear warm-up, then cosine or step decay).

The schedule is a pure function of the global step, so a resumed run only needs the step count to continue
on exactly the same curve.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from binsight.config.schemas import TrainConfig


def build_optimizer(cfg: TrainConfig, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """AdamW, Adam or SGD (Nesterov momentum) over the trainable ``params``."""
    params = [p for p in params if p.requires_grad]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=cfg.momentum > 0
        )
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}")  # pragma: no cover - the config rejects it


class LRSchedule:
    """Learning-rate factor per optimizer step.

    Args:
        scheduler: ``cosine`` (to 0 at the last step), ``step`` (times ``gamma`` every ``step_size`` epochs)
            or ``none``.
        steps_per_epoch: optimizer steps in one epoch.
        epochs: planned epochs.
        warmup_epochs: linear warm-up length in epochs (fractions allowed); 0 disables it.
        step_size: epochs between decays for ``step``.
        gamma: decay factor for ``step``.
    """

    def __init__(
        self,
        scheduler: str,
        steps_per_epoch: int,
        epochs: int,
        warmup_epochs: float = 0.0,
        step_size: int = 10,
        gamma: float = 0.1,
    ) -> None:
        self.scheduler = scheduler
        self.total = max(1, steps_per_epoch * epochs)
        self.warmup = round(warmup_epochs * steps_per_epoch)
        self.step_every = max(1, step_size * steps_per_epoch)
        self.gamma = gamma

    def factor(self, step: int) -> float:
        """Multiplier of the base learning rate at global step ``step`` (0-based)."""
        if step < self.warmup:
            return (step + 1) / self.warmup
        if self.scheduler == "cosine":
            span = max(1, self.total - self.warmup)
            progress = min(1.0, (step - self.warmup) / span)
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        if self.scheduler == "step":
            return self.gamma ** (step // self.step_every)
        return 1.0

    def apply(self, optimizer: torch.optim.Optimizer, base_lr: float, step: int) -> float:
        """Set every parameter group's learning rate for ``step``; returns it."""
        lr = base_lr * self.factor(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        return lr
