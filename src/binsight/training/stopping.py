"""When a run stops before its epochs are done, and how it says so: :class:`StopPolicy`.

Two things stop a run early: a stop request on the :class:`~binsight.utils.signals.StopFlag` (SIGTERM/SIGINT,
or the caller) and the ``max_runtime`` budget (:class:`TimeBudget`). The policy is asked after every batch,
before validation and after every epoch; with several workers one all-reduce per check makes every rank stop
at the same point. After the trainer has saved its checkpoint, :meth:`StopPolicy.stop` raises
:class:`~binsight.errors.Interrupted` with the resume command, or hands the stop to a waiting launcher
(:mod:`binsight.training.protocol`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import NoReturn

from binsight.errors import Interrupted
from binsight.training.distributed import any_flags
from binsight.training.protocol import WorkerEnv, WorkerStopped, hand_stop_to_launcher
from binsight.utils.signals import StopFlag

OTHER_RANK = "a stop signal on another worker"
MAX_RUNTIME = "max_runtime"


class StopPolicy:
    """Decides when to stop (stop requests and the time budget, agreed across ranks) and raises the stop.

    Args:
        flag: stop requests (signal handlers or the caller set it).
        budget: the ``max_runtime`` budget.
        worker: this process's place in the job (a launcher may be waiting for the stop record).
    """

    def __init__(self, flag: StopFlag, budget: TimeBudget, worker: WorkerEnv) -> None:
        self.flag, self.budget, self.worker = flag, budget, worker

    def after_batch(self, more_batches: bool) -> str | None:
        """The reason to stop after this batch, or None (checks the flag on every call: one all-reduce)."""
        signalled, out_of_time = any_flags(
            self.flag.requested, more_batches and self.budget.would_exceed(self.budget.batch_seconds * 1.5)
        )
        if signalled:
            return self.flag.reason or OTHER_RANK
        return MAX_RUNTIME if out_of_time else None

    def before_validation(self, batch_size: int, n_val: int) -> str | None:
        """``max_runtime`` when the coming validation would not fit in the budget, else None."""
        late = self.budget.would_exceed(self.budget.validation_estimate(batch_size, n_val))
        return MAX_RUNTIME if any_flags(late)[0] else None

    def after_epoch(self) -> str | None:
        """The reason to stop between epochs, or None."""
        return self.after_batch(more_batches=True)

    def stop(self, reason: str, where: str, checkpoint: Path, run_dir: Path) -> NoReturn:
        """Raise the stop (the checkpoint is saved): Interrupted with how to resume, or WorkerStopped when a
        launcher waits for the record and prints the resume command itself."""
        why = f"max_runtime of {self.budget.limit:g}s is near" if reason == MAX_RUNTIME else f"{reason} received"
        message = f"training stopped {where}: {why}. Checkpoint saved to {checkpoint}."
        if hand_stop_to_launcher(message, reason, self.worker):
            raise WorkerStopped(message)  # exit 0: not a failure for the agent to restart; the launcher reports it
        raise Interrupted(f"{message}\nResume with: binsight train --resume {run_dir}")


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

    def validation_estimate(self, batch_size: int, n_val: int) -> float:
        """Seconds the next validation will take: the last one's, or before the first a guess from the batches
        (a forward pass costs about a third of a training step per image)."""
        if self.val_seconds is not None:
            return self.val_seconds
        return self.batch_seconds / max(1, batch_size) * n_val / 3

    def would_exceed(self, next_work: float) -> bool:
        """True when ``next_work`` seconds plus a checkpoint save would not fit before the limit."""
        if not self.enabled:
            return False
        return self.elapsed() + next_work + self.save_seconds + self.margin > self.limit
