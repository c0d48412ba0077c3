"""Checkpoint state and safe stops of the :class:`~binsight.training.trainer.Trainer` (a mixin it inherits).

:meth:`TrainerStateMixin.state_dict` / :meth:`~TrainerStateMixin.load_state_dict` build and restore everything a
resume needs: model, optimizer, step, RNG states including the sampler's epoch-start state, early-stopping
state, history and the partial epoch's sums (with one augmentation/RNG state per rank when data-parallel).
:meth:`~TrainerStateMixin._save_last` writes ``weights/last.pt``; :meth:`~TrainerStateMixin._stop_now` saves it
and raises :class:`~binsight.errors.Interrupted` (or hands the stop to the launcher) with how to resume.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from binsight.config.loader import to_dict
from binsight.errors import CheckpointError, Interrupted
from binsight.training.distributed import all_gather_object, barrier, unwrap
from binsight.training.records import BestSoFar, EpochSums
from binsight.training.runtime import rng_state, set_rng_state
from binsight.training.stopfile import WorkerStopped, hand_stop_to_launcher

log = logging.getLogger("binsight.training.trainer")  # the trainer's logger: same log lines as before the split

CHECKPOINT_FORMAT = 1
OTHER_RANK = "a stop signal on another worker"


class TrainerStateMixin:
    """Checkpoint state, ``last.pt`` and stop handling for :class:`~binsight.training.trainer.Trainer`.

    Uses the trainer's attributes: ``cfg``, ``data``, ``run_dir``, ``dist``, ``model``, ``optimizer``,
    ``checkpoints``, ``budget``, ``sampler_gen``, ``aug_gen``, ``epoch``, ``batch_in_epoch``, ``step``,
    ``epoch_sampler_state``, ``sums``, ``best``, ``history``, ``finished`` and ``stopped_early``.
    """

    # --- state -------------------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything a resume needs (see the module docstring)."""
        return {
            "format": CHECKPOINT_FORMAT,
            "config": to_dict(self.cfg),
            "classes": self.data.classes,
            "data_hash": self.data.data_hash,
            "model": unwrap(self.model).state_dict(),
            "optimizer": self.optimizer.state_dict(),
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

    def load_state_dict(self, state: dict[str, Any], source: Path | str = "checkpoint") -> None:
        """Restore a :meth:`state_dict` (from ``source``, named in errors)."""
        if state.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"{source}: checkpoint format {state.get('format')!r} is not supported")
        if list(state["classes"]) != list(self.data.classes):
            raise CheckpointError(f"{source}: trained on classes {state['classes']}, the data has {self.data.classes}")
        if state["data_hash"] != self.data.data_hash:
            raise CheckpointError(
                f"{source}: trained on other data (training manifest hash {state['data_hash'][:12]}…, "
                f"the split has {self.data.data_hash[:12]}…); resume with the run's own split"
            )
        unwrap(self.model).load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["scheduler"]["step"])
        self.epoch, self.batch_in_epoch = int(state["epoch"]), int(state["batch_in_epoch"])
        self.epoch_sampler_state = state["epoch_sampler_state"]
        self.sampler_gen.set_state(state["sampler_state"])
        ranks = state.get("rank_states") or [{"aug": state["aug_state"], "rng": state["rng"]}]
        if len(ranks) == self.dist.world_size:
            self.aug_gen.set_state(ranks[self.dist.rank]["aug"])
            set_rng_state(ranks[self.dist.rank]["rng"])
        elif self.dist.is_main:
            self.aug_gen.set_state(state["aug_state"])
            set_rng_state(state["rng"])
            log.warning(
                "%s was written by %d worker(s), this run has %d: the data order and global batch are the same, "
                "augmentation draws differ from an uninterrupted run",
                source,
                len(ranks),
                self.dist.world_size,
            )
        # The checkpoint holds the epoch's sums over all ranks; rank 0 carries them on, the others add theirs.
        self.sums = EpochSums(**state["sums"]) if self.dist.is_main else EpochSums()
        self.best = BestSoFar(**state["best"])
        self.history = list(state["history"])
        # Recomputed rather than restored: a resume may raise `epochs` or `patience` to train on.
        cfg = self.cfg
        self.stopped_early = 0 < cfg.patience <= self.best.bad_epochs and self.epoch < cfg.epochs
        self.finished = self.stopped_early or self.epoch >= cfg.epochs

    # --- last.pt and stops ---------------------------------------------------------------------------------------

    def _global_sums(self) -> EpochSums:
        """The epoch's running sums over all ranks (``seconds`` is this rank's: the ranks run in lockstep)."""
        if not self.dist.distributed:
            return self.sums
        parts = all_gather_object((self.sums.loss, self.sums.correct, self.sums.seen))
        return EpochSums(
            loss=sum(p[0] for p in parts),
            correct=sum(p[1] for p in parts),
            seen=sum(p[2] for p in parts),
            seconds=self.sums.seconds,
        )

    def _save_last(self) -> Path:
        """Write ``last.pt`` (rank 0). Collective when data-parallel: every rank calls it at the same point,
        contributing its augmentation/RNG state and its share of the epoch's sums."""
        t0 = time.monotonic()
        state = None
        if self.dist.distributed:
            ranks = all_gather_object({"aug": self.aug_gen.get_state(), "rng": rng_state()})
            sums = self._global_sums()
            if self.dist.is_main:
                state = self.state_dict()
                state.update(rank_states=ranks, sums=vars(sums).copy(), world_size=self.dist.world_size)
        elif self.dist.is_main:
            state = self.state_dict()
        if state is not None:
            self.checkpoints.save_last(state)
        self.budget.record_save(time.monotonic() - t0)
        return self.checkpoints.last

    def _stop_now(self, reason: str, saved: bool = False) -> None:
        """Checkpoint (unless just done) and raise Interrupted with how to resume."""
        if not saved:
            self._save_last()
        if self.dist.distributed:
            barrier()  # no rank exits (and so gets its peers killed by the agent) before rank 0 has written last.pt
        where = (
            f"after epoch {self.epoch}"
            if self.batch_in_epoch == 0
            else f"in epoch {self.epoch + 1} after batch {self.batch_in_epoch}"
        )
        why = {"max_runtime": f"max_runtime of {self.cfg.max_runtime:g}s is near"}.get(reason, f"{reason} received")
        message = f"training stopped {where}: {why}. Checkpoint saved to {self.checkpoints.last}."
        d = self.dist
        if hand_stop_to_launcher(message, reason, d.rank, d.world_size, d.local_rank):
            raise WorkerStopped(message)  # exit 0: not a failure for the agent to restart; the launcher reports it
        raise Interrupted(f"{message}\nResume with: binsight train --resume {self.run_dir}")
