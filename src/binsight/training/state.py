"""Where a training run stands: :class:`TrainingState` owns the progress counters, the epoch's running sums,
early stopping, the history and the random generators whose states let a resume replay the same batches."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from binsight.training.distributed import Dist, all_gather_object
from binsight.training.records import BestSoFar, EpochSums
from binsight.training.runtime import rng_state, set_rng_state

log = logging.getLogger(__name__)


@dataclass
class TrainingState:
    """The resumable progress of a run (everything of a checkpoint but the model, optimizer and config).

    Attributes:
        sampler_gen: draws each epoch's sample order (the same on every rank).
        aug_gen: draws augmentations (one stream per rank).
        epoch: finished epochs.
        batch_in_epoch: finished batches of the current epoch.
        step: optimizer steps so far.
        lr: the learning rate of the last step.
        epoch_sampler_state: ``sampler_gen``'s state at the current epoch's start (a resume replays its order).
        sums: running sums of the current epoch on this rank.
        best: early-stopping state.
        history: one row per finished epoch.
        finished: the run reached ``epochs`` or stopped early.
        stopped_early: early stopping ended the run.
    """

    sampler_gen: torch.Generator
    aug_gen: torch.Generator
    lr: float
    epoch: int = 0
    batch_in_epoch: int = 0
    step: int = 0
    epoch_sampler_state: torch.Tensor | None = None
    sums: EpochSums = field(default_factory=EpochSums)
    best: BestSoFar = field(default_factory=BestSoFar)
    history: list[dict[str, Any]] = field(default_factory=list)
    finished: bool = False
    stopped_early: bool = False

    @classmethod
    def start(cls, seed: int, rank: int, lr: float) -> TrainingState:
        """A fresh run's state; rank 0's augmentation stream is the single-process one."""
        sampler_gen = torch.Generator().manual_seed(seed + 1)
        aug_gen = torch.Generator().manual_seed(seed + 2 + 1_000_003 * rank)
        return cls(sampler_gen, aug_gen, lr, epoch_sampler_state=sampler_gen.get_state())

    def begin_epoch(self) -> None:
        """Start the epoch's sample order, or replay it when resuming in the middle of the epoch."""
        if self.batch_in_epoch > 0:
            assert self.epoch_sampler_state is not None
            self.sampler_gen.set_state(self.epoch_sampler_state)
        else:
            self.epoch_sampler_state = self.sampler_gen.get_state()
            self.sums = EpochSums()

    def record_batch(self, loss_sum: float, correct: int, n: int, seconds: float) -> None:
        self.sums.loss += loss_sum
        self.sums.correct += correct
        self.sums.seen += n
        self.sums.seconds += seconds
        self.batch_in_epoch += 1

    def end_epoch(self, row: dict[str, Any], val: dict[str, Any], patience: int, epochs: int) -> bool:
        """Record a finished epoch; returns True when its validation macro-F1 is the best so far."""
        self.history.append(row)
        improved = bool(val["macro_f1"] > self.best.f1)
        if improved:
            self.best = BestSoFar(epoch=self.epoch + 1, f1=val["macro_f1"], metrics=val, bad_epochs=0)
        else:
            self.best.bad_epochs += 1
        self.epoch, self.batch_in_epoch = self.epoch + 1, 0
        self.sums = EpochSums()
        self.stopped_early = patience > 0 and self.best.bad_epochs >= patience and self.epoch < epochs
        return improved

    def global_sums(self, dist: Dist) -> EpochSums:
        """The epoch's running sums over all ranks (``seconds`` is this rank's: the ranks run in lockstep)."""
        if not dist.distributed:
            return self.sums
        parts = all_gather_object((self.sums.loss, self.sums.correct, self.sums.seen))
        return EpochSums(
            loss=sum(p[0] for p in parts),
            correct=sum(p[1] for p in parts),
            seen=sum(p[2] for p in parts),
            seconds=self.sums.seconds,
        )

    def rank_state(self) -> dict[str, Any]:
        """This rank's own random state (its augmentation stream and the global RNGs)."""
        return {"aug": self.aug_gen.get_state(), "rng": rng_state()}

    def state_dict(self) -> dict[str, Any]:
        return {
            "scheduler": {"step": self.step},
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "epoch_sampler_state": self.epoch_sampler_state,
            "sampler_state": self.sampler_gen.get_state(),
            "aug_state": self.aug_gen.get_state(),
            "rng": rng_state(),
            "sums": vars(self.sums).copy(),
            "best": vars(self.best).copy(),
            "history": list(self.history),
            "finished": self.finished,
            "stopped_early": self.stopped_early,
        }

    def load_state_dict(
        self, state: dict[str, Any], dist: Dist, patience: int, epochs: int, source: Path | str = "checkpoint"
    ) -> None:
        """Restore :meth:`state_dict`; ``patience`` and ``epochs`` are the (possibly raised) values to go on with."""
        self.step = int(state["scheduler"]["step"])
        self.epoch, self.batch_in_epoch = int(state["epoch"]), int(state["batch_in_epoch"])
        self.epoch_sampler_state = state["epoch_sampler_state"]
        self.sampler_gen.set_state(state["sampler_state"])
        ranks = state.get("rank_states") or [{"aug": state["aug_state"], "rng": state["rng"]}]
        if len(ranks) == dist.world_size:
            self.aug_gen.set_state(ranks[dist.rank]["aug"])
            set_rng_state(ranks[dist.rank]["rng"])
        elif dist.is_main:
            self.aug_gen.set_state(state["aug_state"])
            set_rng_state(state["rng"])
            log.warning(
                "%s was written by %d worker(s), this run has %d: the data order and global batch are the same, "
                "augmentation draws differ from an uninterrupted run",
                source,
                len(ranks),
                dist.world_size,
            )
        # The checkpoint holds the epoch's sums over all ranks; rank 0 carries them on, the others add theirs.
        self.sums = EpochSums(**state["sums"]) if dist.is_main else EpochSums()
        self.best = BestSoFar(**state["best"])
        self.history = list(state["history"])
        # Recomputed rather than restored: a resume may raise `epochs` or `patience` to train on.
        self.stopped_early = 0 < patience <= self.best.bad_epochs and self.epoch < epochs
        self.finished = self.stopped_early or self.epoch >= epochs
