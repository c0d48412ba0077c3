"""Process-level training settings: device, seeds, deterministic mode, RNG state, time budget."""

from __future__ import annotations

import contextlib
import os
import random
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from binsight.errors import BinsightError
from binsight.training.distributed import Dist


def resolve_device(name: str, dist: Dist | None = None) -> torch.device:
    """``auto`` → the process's GPU when CUDA is available, else CPU; anything else is checked and returned."""
    dist = dist or Dist()
    if name == "auto":
        return torch.device(f"cuda:{dist.local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise BinsightError(f"device {name!r} is not a torch device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BinsightError(f"device {name!r} asked for but CUDA is not available; use device=cpu or device=auto")
    return device


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextlib.contextmanager
def deterministic_mode(enabled: bool) -> Iterator[None]:
    """Within the block, torch uses only deterministic algorithms (and cuDNN does not auto-tune)."""
    if not enabled:
        yield
        return
    # cuBLAS needs this before its first use to be deterministic; harmless on CPU.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    previous = torch.are_deterministic_algorithms_enabled()
    previous_benchmark = torch.backends.cudnn.benchmark
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)
        torch.backends.cudnn.benchmark = previous_benchmark


def rng_state() -> dict[str, Any]:
    """Every global RNG's state (Python, numpy, torch CPU and CUDA)."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class TimeBudget:
    """Decides when to stop so that a checkpoint is on disk before ``max_runtime`` seconds have passed.

    Costs are learned as the run goes: an exponential average of the batch time, the last validation time
    and the slowest checkpoint save. A stop is due when the next piece of work plus a save plus a safety margin
    would cross the limit.
    """

    def __init__(self, max_runtime: float, start: float | None = None) -> None:
        self.limit = float(max_runtime)
        self.start = time.monotonic() if start is None else start
        self.batch_seconds = 0.0
        self.save_seconds = 1.0  # a first guess until a save has been timed
        self._save_timed = False
        self.val_seconds: float | None = None

    @property
    def enabled(self) -> bool:
        return self.limit > 0

    @property
    def margin(self) -> float:
        return max(0.5, 0.02 * self.limit)

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def record_batch(self, seconds: float) -> None:
        self.batch_seconds = seconds if self.batch_seconds == 0 else 0.8 * self.batch_seconds + 0.2 * seconds

    def record_save(self, seconds: float) -> None:
        self.save_seconds = max(self.save_seconds, seconds) if self._save_timed else seconds
        self._save_timed = True

    def record_validation(self, seconds: float) -> None:
        self.val_seconds = seconds

    def would_exceed(self, next_work: float) -> bool:
        """True when ``next_work`` seconds plus a checkpoint save would not fit before the limit."""
        if not self.enabled:
            return False
        return self.elapsed() + next_work + self.save_seconds + self.margin > self.limit
