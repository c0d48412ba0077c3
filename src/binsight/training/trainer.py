"""The training loop: :meth:`Trainer.fit` runs epochs of :meth:`Trainer.train_one_epoch` and
:meth:`Trainer.evaluate`, with early stopping on validation macro-F1, best/last checkpoints and safe stops.

A stop request (SIGTERM/SIGINT via :mod:`binsight.training.signals`, or the ``max_runtime`` budget) is
honoured after the current batch: the full state (model, optimizer, step, RNG states including the sampler's
epoch-start state, early-stopping state, history and the partial epoch's sums) goes to ``weights/last.pt`` and
:class:`~binsight.errors.Interrupted` is raised. Resuming from it replays the rest of the epoch exactly.

What lives where: this module holds the :class:`Trainer` (set-up, the epoch/batch loop, the end-of-epoch
bookkeeping); the checkpoint state (``state_dict``/``load_state_dict``), ``last.pt`` and the stops come from
:mod:`binsight.training.trainer_state`, :meth:`Trainer.evaluate` from :mod:`binsight.training.validation`, and
the validation shards (:func:`~binsight.training.distributed.shard_bounds`) from
:mod:`binsight.training.distributed`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from binsight.config.schemas import TrainConfig
from binsight.precision import amp_dtype, autocast
from binsight.training.checkpoint import CheckpointManager
from binsight.training.data import SplitData, balanced_weights, batch_slices, epoch_order, gather
from binsight.training.distributed import (
    Dist,
    all_reduce_grads,
    any_flags,
    barrier,
    broadcast_object,
    unwrap,
)
from binsight.training.distributed import shard_bounds as _shard_bounds  # noqa: F401 - the name tests import
from binsight.training.optim import LRSchedule, build_optimizer
from binsight.training.records import BestSoFar, EpochSums, FitResult, write_metrics_csv
from binsight.training.runtime import (
    TimeBudget,
    deterministic_mode,
    resolve_device,
    seed_everything,
)
from binsight.training.signals import StopFlag
from binsight.training.trainer_state import (
    CHECKPOINT_FORMAT,  # noqa: F401 - importable from here as before
    OTHER_RANK,
    TrainerStateMixin,
)
from binsight.training.validation import ValidationMixin
from binsight.utils.progress import progress

log = logging.getLogger(__name__)

EpochCallback = Callable[[int, dict[str, Any]], None]


class Trainer(TrainerStateMixin, ValidationMixin):
    """One training run over decoded data, writing into ``run_dir``.

    Args:
        cfg: the validated training config.
        data: decoded train/val splits.
        run_dir: the run directory (``weights/`` and ``metrics.csv`` go there; only the main process writes).
        dist: rank and world size.
        stop: stop flag set by signal handlers or by the caller.
        on_epoch_end: callables ``(epoch, row)`` after each epoch's checkpoint; they may raise (e.g. to prune).
        start_time: ``time.monotonic()`` at process start, the origin of ``max_runtime``.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        data: SplitData,
        run_dir: Path,
        dist: Dist | None = None,
        stop: StopFlag | None = None,
        on_epoch_end: Sequence[EpochCallback] = (),
        start_time: float | None = None,
    ) -> None:
        from binsight.data.transforms import TrainPreset, train_transform
        from binsight.models import create_model
        from binsight.training.losses import build_loss

        self.cfg, self.data, self.run_dir = cfg, data, Path(run_dir)
        self.dist = dist or Dist()
        self.stop = stop or StopFlag()
        self.on_epoch_end = list(on_epoch_end)
        self.budget = TimeBudget(cfg.max_runtime, start_time)
        self.checkpoints = CheckpointManager(self.run_dir / "weights")
        self.device = resolve_device(cfg.device, self.dist)
        self.amp = amp_dtype("train", cfg.model, cfg.amp, self.device)
        self.eval_amp = amp_dtype("eval", cfg.model, cfg.amp, self.device)  # validation: inference's decision
        if self.device.type == "cuda" and not cfg.deterministic:
            torch.backends.cudnn.benchmark = True  # fixed input size: let cuDNN pick the fastest kernels

        seed_everything(cfg.seed)
        model = create_model(cfg.model, data.num_classes, weights=cfg.weights, head=cfg.head)
        self.mean, self.std = list(model.default_cfg["mean"]), list(model.default_cfg["std"])
        if cfg.freeze_backbone:
            for p in model.backbone.parameters():
                p.requires_grad_(False)
        model.to(self.device)
        if self.dist.distributed:
            from binsight.training.syncbn import convert_batchnorm

            # Batch statistics over the global batch, so N workers compute what one process would.
            model = convert_batchnorm(model, self.device)
        # Head-only training on cached features when nothing needs the images themselves.
        self.use_features = cfg.freeze_backbone and cfg.augment == "none"
        self.channels_last = cfg.channels_last and not self.use_features
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        self.model = self._wrap(model)  # weights are always saved from unwrap(self.model)
        self.loss_fn = build_loss(
            cfg.loss, data.num_classes, data.class_counts(), cfg.label_smoothing, cfg.focal_gamma
        ).to(self.device)
        self.optimizer = build_optimizer(cfg, model.parameters())
        self.trainable = [p for p in model.parameters() if p.requires_grad]
        self.transform = train_transform(TrainPreset(cfg.augment, self.mean, self.std))
        self.sample_weights = balanced_weights(data.train_targets, data.num_classes) if cfg.balance else None
        self.sampler_gen = torch.Generator().manual_seed(cfg.seed + 1)
        # Each rank augments its own shard: distinct streams (rank 0's is the single-process one).
        self.aug_gen = torch.Generator().manual_seed(cfg.seed + 2 + 1_000_003 * self.dist.rank)
        if self.dist.rank > 0:
            seed_everything(cfg.seed + 1_000_003 * self.dist.rank)  # e.g. dropout masks; weights came from rank 0
        self.batches_per_epoch = len(batch_slices(torch.arange(len(data.train)), cfg.batch_size, cfg.max_train_batches))
        self.schedule = LRSchedule(
            cfg.scheduler, self.batches_per_epoch, cfg.epochs, cfg.warmup_epochs, cfg.step_size, cfg.step_gamma
        )
        self.epoch = 0  # finished epochs
        self.batch_in_epoch = 0  # finished batches of the current epoch
        self.step = 0  # optimizer steps so far
        self.lr = cfg.lr
        self.epoch_sampler_state = self.sampler_gen.get_state()
        self.sums = EpochSums()
        self.best = BestSoFar()
        self.history: list[dict[str, Any]] = []
        self.finished = False
        self.stopped_early = False
        self._train_feats: np.ndarray | None = None
        self._val_feats: np.ndarray | None = None
        self._val_feats_flip: np.ndarray | None = None

    def _wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """DistributedDataParallel around ``model`` when data-parallel (not for a frozen backbone, whose head
        runs outside ``forward``: its few gradients are averaged by :func:`all_reduce_grads` instead)."""
        if not self.dist.distributed or self.cfg.freeze_backbone:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        # Synchronised BatchNorm keeps the running statistics identical on every rank: no per-step broadcast.
        import inspect

        params = inspect.signature(DistributedDataParallel.__init__).parameters
        sync = {"forward_sync_buffers": False} if "forward_sync_buffers" in params else {"broadcast_buffers": False}
        return DistributedDataParallel(model, device_ids=ids, **sync)

    # --- loop --------------------------------------------------------------------------------------------------

    def fit(self) -> FitResult:
        """Train until ``epochs``, early stopping, or a stop request (which raises Interrupted)."""
        with deterministic_mode(self.cfg.deterministic):
            if self.use_features:
                self._prepare_features()
            while not self.finished and self.epoch < self.cfg.epochs:
                self._run_epoch()
        return FitResult(self.history, self.best.epoch, self.best.metrics, self.stopped_early)

    def _set_train_mode(self) -> None:
        self.model.train()
        if self.cfg.freeze_backbone:
            unwrap(self.model).backbone.eval()  # frozen BatchNorm statistics, as in the feature cache

    def _prepare_features(self) -> None:
        from binsight.training.features import cached_features

        common = dict(
            model=unwrap(self.model),
            model_name=self.cfg.model,
            mean=self.mean,
            std=self.std,
            device=self.device,
            cache_dir=self.cfg.cache_dir,
            batch_size=max(64, self.cfg.batch_size),
            amp=self.cfg.amp,
        )
        # One process per machine computes the feature cache; the others then read it.
        first = self.dist.local_rank == 0
        if not first:
            barrier()
        self._train_feats, _ = cached_features(decoded=self.data.train, desc="features train", **common)
        self._val_feats, _ = cached_features(decoded=self.data.val, desc="features val", **common)
        if self.cfg.tta:
            self._val_feats_flip, _ = cached_features(decoded=self.data.val, flip=True, desc="features val", **common)
        if first:
            barrier()

    def _run_epoch(self) -> None:
        cfg, e = self.cfg, self.epoch
        resuming = self.batch_in_epoch > 0
        if resuming:
            self.sampler_gen.set_state(self.epoch_sampler_state)  # replay this epoch's order
        else:
            self.epoch_sampler_state = self.sampler_gen.get_state()
            self.sums = EpochSums()
        order = epoch_order(len(self.data.train), self.sampler_gen, self.sample_weights)
        batches = batch_slices(order, cfg.batch_size, cfg.max_train_batches)
        self.train_one_epoch(batches)

        if any_flags(self.budget.would_exceed(self._validation_estimate()))[0]:
            self._stop_now("max_runtime")
        t0 = time.monotonic()
        val = self.evaluate()
        self.budget.record_validation(time.monotonic() - t0)
        self._finish_epoch(e, val, time.monotonic() - t0)

    def train_one_epoch(self, batches: Sequence[torch.Tensor]) -> None:
        """Train on ``batches`` from ``self.batch_in_epoch`` on, honouring stop requests after each batch."""
        self._set_train_mode()
        bar = progress(
            total=len(batches),
            initial=self.batch_in_epoch,
            desc=f"epoch {self.epoch + 1}/{self.cfg.epochs}",
            unit="batch",
            leave=False,
        )
        try:
            for b in range(self.batch_in_epoch, len(batches)):
                t0 = time.monotonic()
                loss_sum, correct, n = self._train_step(batches[b])
                dt = time.monotonic() - t0
                self.sums.loss += loss_sum
                self.sums.correct += correct
                self.sums.seen += n
                self.sums.seconds += dt
                self.batch_in_epoch = b + 1
                self.budget.record_batch(dt)
                bar.update(1)
                bar.set_postfix(loss=f"{self.sums.loss / self.sums.seen:.4f}", img_s=f"{n / max(dt, 1e-9):.0f}")
                # One all-reduce per step: a signal or time limit on any rank stops every rank at this batch.
                signalled, out_of_time = any_flags(
                    self.stop.requested,
                    b + 1 < len(batches) and self.budget.would_exceed(self.budget.batch_seconds * 1.5),
                )
                if signalled:
                    self._stop_now(self.stop.reason or OTHER_RANK)
                if out_of_time:
                    self._stop_now("max_runtime")
        finally:
            bar.close()

    def _train_step(self, idx: torch.Tensor) -> tuple[float, int, int]:
        """One optimizer step on the global batch ``idx`` (this rank trains on its contiguous share of it)."""
        model, cfg = self.model, self.cfg
        scale = 1.0
        if self.dist.distributed:
            global_y = torch.from_numpy(self.data.train_targets[idx.numpy()])
            idx = idx.tensor_split(self.dist.world_size)[self.dist.rank]
            # DDP averages gradients over ranks; weighting each rank's mean loss by its share of the global
            # loss normaliser makes that average exactly the gradient of the global batch's mean loss, also for
            # a last batch that does not split evenly and for class-weighted losses.
            local_y = global_y[:0] if idx.numel() == 0 else torch.from_numpy(self.data.train_targets[idx.numpy()])
            scale = self.dist.world_size * self._normaliser(local_y) / self._normaliser(global_y)
        y = torch.from_numpy(self.data.train_targets[idx.numpy()]).to(self.device)
        self.lr = self.schedule.apply(self.optimizer, cfg.lr, self.step)
        if self.use_features:
            feats = gather(self._train_feats, idx).to(self.device)
            with autocast(self.device, self.amp):
                out = unwrap(model).forward_head(feats)
        else:
            x = self.transform(gather(self.data.train.images, idx).to(self.device, non_blocking=True), self.aug_gen)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(self.device, self.amp):
                if cfg.freeze_backbone:
                    with torch.no_grad():
                        feats = unwrap(model).features(x)
                    out = unwrap(model).forward_head(feats)
                else:
                    out = model(x)
        out = out.float()
        n = int(y.shape[0])
        loss = self.loss_fn(out, y) if n else out.sum() * 0.0  # an empty shard still joins the all-reduce
        self.optimizer.zero_grad(set_to_none=True)
        (loss * scale if scale != 1.0 else loss).backward()
        if self.dist.distributed and model is unwrap(model):
            all_reduce_grads(self.trainable, self.dist.world_size)
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], cfg.grad_clip)
        self.optimizer.step()
        self.step += 1
        with torch.no_grad():
            pred = unwrap(model).probabilities(out.detach()).argmax(1)
        return float(loss.item()) * n, int((pred == y).sum().item()), n

    def _normaliser(self, y: torch.Tensor) -> float:
        """What the loss divides its sum by for targets ``y``: their count, or their class weights' sum."""
        weight = getattr(self.loss_fn, "weight", None)
        if weight is None:
            weight = getattr(self.loss_fn, "alpha", None)
        if weight is None:
            return float(y.numel())
        return float(weight.detach().cpu()[y].sum())

    def _finish_epoch(self, e: int, val: dict[str, Any], val_seconds: float) -> None:
        cfg = self.cfg
        sums = self._global_sums()
        row = {
            "epoch": e + 1,
            "train_loss": sums.loss / max(1, sums.seen),
            "train_acc": sums.correct / max(1, sums.seen),
            "val_loss": val["loss"],
            "val_acc": val["accuracy"],
            "val_macro_f1": val["macro_f1"],
            "lr": self.lr,
            "seconds": round(sums.seconds + val_seconds, 3),
        }
        self.history.append(row)
        improved = val["macro_f1"] > self.best.f1
        if improved:
            self.best = BestSoFar(epoch=e + 1, f1=val["macro_f1"], metrics=val, bad_epochs=0)
        else:
            self.best.bad_epochs += 1
        self.epoch, self.batch_in_epoch = e + 1, 0
        self.sums = EpochSums()
        if cfg.patience > 0 and self.best.bad_epochs >= cfg.patience and self.epoch < cfg.epochs:
            self.stopped_early = True
        # Every rank computed the same metrics, but the decision is rank 0's so no rank can go on alone.
        self.stopped_early = broadcast_object(self.stopped_early)
        self.finished = self.stopped_early or self.epoch >= cfg.epochs
        if self.dist.is_main and improved:
            self.checkpoints.save_best(
                {
                    "model": unwrap(self.model).state_dict(),
                    "epoch": e + 1,
                    "metrics": val,
                    "classes": self.data.classes,
                }
            )
        self._save_last()
        if self.dist.is_main:
            write_metrics_csv(self.run_dir / "metrics.csv", self.history)
        log.info(
            "epoch %d/%d  train_loss %.4f acc %.3f | val_loss %.4f acc %.3f macro_f1 %.3f%s | lr %.3g | %.1fs",
            e + 1,
            cfg.epochs,
            row["train_loss"],
            row["train_acc"],
            row["val_loss"],
            row["val_acc"],
            row["val_macro_f1"],
            " *" if improved else "",
            row["lr"],
            row["seconds"],
        )
        if self.stopped_early:
            log.info(
                "early stopping: no better validation macro-F1 for %d epochs (best: epoch %d)",
                cfg.patience,
                self.best.epoch,
            )
        for callback in self.on_epoch_end:
            callback(e + 1, row)
        if not self.finished:
            signalled, out_of_time = any_flags(
                self.stop.requested, self.budget.would_exceed(self.budget.batch_seconds * 1.5)
            )
            if signalled:
                self._stop_now(self.stop.reason or OTHER_RANK, saved=True)
            if out_of_time:
                self._stop_now("max_runtime", saved=True)
