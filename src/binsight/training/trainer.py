"""The training loop: :meth:`Trainer.fit` runs epochs of :meth:`Trainer.train_one_epoch` and validation, with
early stopping on validation macro-F1, best/last checkpoints and safe stops.

The trainer composes parts that own their data: :class:`~binsight.training.state.TrainingState` (progress,
sums, early stopping, history, generators), :class:`~binsight.training.validation.Validator` and
:class:`~binsight.training.stopping.StopPolicy` (stop requests and the ``max_runtime`` budget). It owns the
model, loss and optimizer, and builds the checkpoint (:meth:`Trainer.state_dict`).

A stop request (SIGTERM/SIGINT via :func:`~binsight.utils.signals.stop_on_signals`, or the ``max_runtime``
budget) is honoured after the current batch: the full state goes to ``weights/last.pt`` and
:class:`~binsight.errors.Interrupted` is raised. Resuming from it replays the rest of the epoch exactly.

Hooks for numerics live in :meth:`Trainer._train_step` (autocast around the forward pass, the backward pass and
the optimizer step) and in :class:`~binsight.training.validation.Validator` (autocast around validation).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from binsight.config.loader import to_dict
from binsight.config.schemas import TrainConfig
from binsight.errors import CheckpointError
from binsight.faults import Faults
from binsight.precision import amp_dtype, autocast
from binsight.training.checkpoint import CheckpointManager
from binsight.training.data import SplitData, balanced_weights, batch_slices, epoch_order, gather
from binsight.training.distributed import all_gather_object, all_reduce_grads, barrier, broadcast_object, unwrap
from binsight.training.optim import LRSchedule, build_optimizer
from binsight.training.protocol import WorkerEnv
from binsight.training.records import FitResult, write_metrics_csv
from binsight.training.runtime import deterministic_mode, resolve_device, seed_everything
from binsight.training.state import TrainingState
from binsight.training.stopping import StopPolicy, TimeBudget
from binsight.training.validation import Validator
from binsight.utils.progress import progress
from binsight.utils.signals import StopFlag

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1
EpochCallback = Callable[[int, dict[str, Any]], None]


class Trainer:
    """One training run over decoded data, writing into ``run_dir``.

    Args:
        cfg: the validated training config.
        data: decoded train/val splits.
        run_dir: the run directory (``weights/`` and ``metrics.csv`` go there; only the main process writes).
        worker: this process's place in the job (rank, world size, a waiting launcher); default: one process.
        stop: stop flag set by signal handlers or by the caller.
        on_epoch_end: callables ``(epoch, row)`` after each epoch's checkpoint; they may raise (e.g. to prune).
        start_time: ``time.monotonic()`` at the job's start, the origin of ``max_runtime``.
        faults: test seams (inert unless a test enables them).
        start_weights: what the network starts from when that is not ``cfg.weights`` (the SynthBins start of
            ``synth_pretrain``, see :mod:`binsight.training.synthstart`).
    """

    def __init__(
        self,
        cfg: TrainConfig,
        data: SplitData,
        run_dir: Path,
        worker: WorkerEnv | None = None,
        stop: StopFlag | None = None,
        on_epoch_end: Sequence[EpochCallback] = (),
        start_time: float | None = None,
        faults: Faults | None = None,
        start_weights: str | None = None,
    ) -> None:
        from binsight.data.transforms import TrainPreset, train_transform
        from binsight.models import create_model
        from binsight.training.losses import SoftTargetLoss, build_loss

        self.cfg, self.data, self.run_dir = cfg, data, Path(run_dir)
        self.worker = worker or WorkerEnv()
        self.dist = self.worker.dist
        self.stop = stop or StopFlag()
        self.on_epoch_end = list(on_epoch_end)
        self.faults = faults or Faults()
        self.stopper = StopPolicy(self.stop, TimeBudget(cfg.max_runtime, start_time), self.worker)
        self.checkpoints = CheckpointManager(self.run_dir / "weights")
        self.device = resolve_device(cfg.device, self.dist)
        self.amp = amp_dtype("train", cfg.model, cfg.amp, self.device)
        self.eval_amp = amp_dtype("eval", cfg.model, cfg.amp, self.device)  # validation: inference's decision
        if self.device.type == "cuda" and not cfg.deterministic:
            torch.backends.cudnn.benchmark = True  # fixed input size: let cuDNN pick the fastest kernels

        seed_everything(cfg.seed)
        # A BinCounter; Any because batch-norm conversion may give it back as a plain Module.
        model: Any = create_model(cfg.model, data.num_classes, weights=start_weights or cfg.weights, head=cfg.head)
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
        self.ema = _weight_average(model, cfg.ema) if cfg.ema > 0 else None
        self.loss_fn = build_loss(
            cfg.loss_kind, data.num_classes, data.class_counts(), cfg.label_smoothing, cfg.focal_gamma
        ).to(self.device)
        self.soft_loss = SoftTargetLoss(cfg.head) if data.train_soft_targets is not None else None
        if self.soft_loss is not None:
            log.info("distilling from %s (teacher_weight %g)", cfg.teacher, cfg.teacher_weight)
        self.optimizer = build_optimizer(cfg, model.parameters())
        self.trainable = [p for p in model.parameters() if p.requires_grad]
        self.transform = train_transform(TrainPreset(cfg.augment, self.mean, self.std))
        self.sample_weights = balanced_weights(data.train_targets, data.num_classes) if cfg.balance else None
        self.state = TrainingState.start(cfg.seed, self.dist.rank, cfg.lr)
        if self.dist.rank > 0:
            seed_everything(cfg.seed + 1_000_003 * self.dist.rank)  # e.g. dropout masks; weights came from rank 0
        self.batches_per_epoch = len(batch_slices(torch.arange(len(data.train)), cfg.batch_size, cfg.max_train_batches))
        self.schedule = LRSchedule(
            cfg.scheduler, self.batches_per_epoch, cfg.epochs, cfg.warmup_epochs, cfg.step_size, cfg.step_gamma
        )
        self.validator = Validator(
            data, self.dist, self.device, self.eval_amp, self.loss_fn, self.mean, self.std,
            cfg.batch_size, cfg.tta, self.channels_last, cfg.decision,
        )  # fmt: skip
        if cfg.decision == "macro_f1":
            log.info("val metrics and early stopping use the thresholded decision (offsets fitted on val each epoch)")
        self._train_feats: np.ndarray | None = None

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
        sync: dict[str, Any] = (
            {"forward_sync_buffers": False} if "forward_sync_buffers" in params else {"broadcast_buffers": False}
        )
        return DistributedDataParallel(model, device_ids=ids, **sync)

    # --- loop --------------------------------------------------------------------------------------------------

    def fit(self) -> FitResult:
        """Train until ``epochs``, early stopping, or a stop request (which raises Interrupted)."""
        st = self.state
        with deterministic_mode(self.cfg.deterministic):
            if self.use_features:
                self._prepare_features()
            while not st.finished and st.epoch < self.cfg.epochs:
                self._run_epoch()
        return FitResult(st.history, st.best.epoch, st.best.metrics, st.stopped_early)

    def _set_train_mode(self) -> None:
        self.model.train()
        if self.cfg.freeze_backbone:
            cast(Any, unwrap(self.model)).backbone.eval()  # frozen BatchNorm statistics, as in the feature cache

    def _prepare_features(self) -> None:
        from binsight.training.features import cached_features

        net: Any = unwrap(self.model)
        common: dict[str, Any] = dict(
            model=net,
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
        val, _ = cached_features(decoded=self.data.val, desc="features val", **common)
        flipped = None
        if self.cfg.tta:
            flipped, _ = cached_features(decoded=self.data.val, flip=True, desc="features val", **common)
        self.validator.use_features(val, flipped)
        if first:
            barrier()

    def _run_epoch(self) -> None:
        cfg, st = self.cfg, self.state
        st.begin_epoch()
        order = epoch_order(len(self.data.train), st.sampler_gen, self.sample_weights)
        batches = batch_slices(order, cfg.batch_size, cfg.max_train_batches)
        self.train_one_epoch(batches)

        reason = self.stopper.before_validation(cfg.batch_size, len(self.data.val))
        if reason:
            self._stop_now(reason)
        t0 = time.monotonic()
        val = self.validator.evaluate(self.scored_model())
        self._set_train_mode()
        self.stopper.budget.record_validation(time.monotonic() - t0)
        self._finish_epoch(val, time.monotonic() - t0)

    def train_one_epoch(self, batches: Sequence[torch.Tensor]) -> None:
        """Train on ``batches`` from the state's ``batch_in_epoch`` on, honouring stop requests after each batch."""
        st, budget = self.state, self.stopper.budget
        self._set_train_mode()
        bar = progress(
            total=len(batches),
            initial=st.batch_in_epoch,
            desc=f"epoch {st.epoch + 1}/{self.cfg.epochs}",
            unit="batch",
            leave=False,
        )
        try:
            for b in range(st.batch_in_epoch, len(batches)):
                t0 = time.monotonic()
                loss_sum, correct, n = self._train_step(batches[b])
                dt = time.monotonic() - t0
                st.record_batch(loss_sum, correct, n, dt)
                budget.record_batch(dt)
                bar.update(1)
                bar.set_postfix(loss=f"{st.sums.loss / st.sums.seen:.4f}", img_s=f"{n / max(dt, 1e-9):.0f}")
                # One all-reduce per step: a signal or time limit on any rank stops every rank at this batch.
                reason = self.stopper.after_batch(more_batches=b + 1 < len(batches))
                if reason:
                    self._stop_now(reason)
        finally:
            bar.close()

    def _train_step(self, idx: torch.Tensor) -> tuple[float, int, int]:
        """One optimizer step on the global batch ``idx`` (this rank trains on its contiguous share of it)."""
        model, cfg, st = self.model, self.cfg, self.state
        net: Any = unwrap(model)
        scale, global_n = 1.0, int(idx.numel())
        if self.dist.distributed:
            global_y = torch.from_numpy(self.data.train_targets[idx.numpy()])
            idx = idx.tensor_split(self.dist.world_size)[self.dist.rank]
            # DDP averages gradients over ranks; weighting each rank's mean loss by its share of the global
            # loss normaliser makes that average exactly the gradient of the global batch's mean loss, also for
            # a last batch that does not split evenly and for class-weighted losses.
            local_y = global_y[:0] if idx.numel() == 0 else torch.from_numpy(self.data.train_targets[idx.numpy()])
            scale = self.dist.world_size * self._normaliser(local_y) / self._normaliser(global_y)
        y = torch.from_numpy(self.data.train_targets[idx.numpy()]).to(self.device)
        st.lr = self.schedule.apply(self.optimizer, cfg.lr, st.step)
        if self._train_feats is not None:
            feats = gather(self._train_feats, idx).to(self.device)
            with autocast(self.device, self.amp):
                out = net.forward_head(feats)
        else:
            x = self.transform(gather(self.data.train.images, idx).to(self.device, non_blocking=True), st.aug_gen)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(self.device, self.amp):
                if cfg.freeze_backbone:
                    with torch.no_grad():
                        feats = net.features(x)
                    out = net.forward_head(feats)
                else:
                    out = model(x)
        out = out.float()
        n = int(y.shape[0])
        loss = self.loss_fn(out, y) if n else out.sum() * 0.0  # an empty shard still joins the all-reduce
        objective = loss * scale if scale != 1.0 else loss
        soft = self.data.train_soft_targets
        if self.soft_loss is not None and soft is not None:
            # The soft term's sum over this shard, divided by the global batch: DDP's average over ranks then
            # gives the global batch's mean, as for the label loss above.
            soft_sum = self.soft_loss(out, gather(soft, idx).to(self.device)) if n else out.sum() * 0.0
            w = cfg.teacher_weight
            objective = (1 - w) * objective + w * soft_sum * (self.dist.world_size / max(1, global_n))
            loss = (1 - w) * loss + w * soft_sum / max(1, n)
        self.optimizer.zero_grad(set_to_none=True)
        objective.backward()
        if self.dist.distributed and model is net:
            all_reduce_grads(self.trainable, self.dist.world_size)
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], cfg.grad_clip)
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update_parameters(net)
        st.step += 1
        with torch.no_grad():
            pred = net.probabilities(out.detach()).argmax(1)
        return float(loss.item()) * n, int((pred == y).sum().item()), n

    def scored_model(self) -> torch.nn.Module:
        """The network that validation scores and ``best.pt`` keeps: the weight average when ``ema`` is on."""
        return self.ema.module if self.ema is not None else unwrap(self.model)

    def _normaliser(self, y: torch.Tensor) -> float:
        """What the loss divides its sum by for targets ``y``: their count, or their class weights' sum."""
        weight = getattr(self.loss_fn, "weight", None)
        if weight is None:
            weight = getattr(self.loss_fn, "alpha", None)
        if weight is None:
            return float(y.numel())
        return float(weight.detach().cpu()[y].sum())

    def _finish_epoch(self, val: dict[str, Any], val_seconds: float) -> None:
        cfg, st = self.cfg, self.state
        sums = st.global_sums(self.dist)
        row = {
            "epoch": st.epoch + 1,
            "train_loss": sums.loss / max(1, sums.seen),
            "train_acc": sums.correct / max(1, sums.seen),
            "val_loss": val["loss"],
            "val_acc": val["accuracy"],
            "val_macro_f1": val["macro_f1"],
            "lr": st.lr,
            "seconds": round(sums.seconds + val_seconds, 3),
        }
        improved = st.end_epoch(row, val, cfg.patience, cfg.epochs)
        # Every rank computed the same metrics, but the decision is rank 0's so no rank can go on alone.
        st.stopped_early = broadcast_object(st.stopped_early)
        st.finished = st.stopped_early or st.epoch >= cfg.epochs
        if self.dist.is_main and improved:
            self.checkpoints.save_best(
                {
                    "model": self.scored_model().state_dict(),
                    "epoch": st.epoch,
                    "metrics": val,
                    "classes": self.data.classes,
                }
            )
        self._save_last()
        if self.dist.is_main:
            write_metrics_csv(self.run_dir / "metrics.csv", st.history)
        log.info(
            "epoch %d/%d  train_loss %.4f acc %.3f | val_loss %.4f acc %.3f macro_f1 %.3f%s | lr %.3g | %.1fs",
            st.epoch,
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
        if st.stopped_early:
            log.info(
                "early stopping: no better validation macro-F1 for %d epochs (best: epoch %d)",
                cfg.patience,
                st.best.epoch,
            )
        self.faults.at_epoch_end(st.epoch, self.stop)
        for callback in self.on_epoch_end:
            callback(st.epoch, row)
        if not st.finished:
            reason = self.stopper.after_epoch()
            if reason:
                self._stop_now(reason, saved=True)

    # --- checkpoint ----------------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything a resume needs: config, classes, data hash, model, optimizer and the training state."""
        return {
            "format": CHECKPOINT_FORMAT,
            "config": to_dict(self.cfg),
            "classes": self.data.classes,
            "data_hash": self.data.data_hash,
            "model": unwrap(self.model).state_dict(),
            "optimizer": self.optimizer.state_dict(),
            **({"ema": self.ema.state_dict()} if self.ema is not None else {}),
            **self.state.state_dict(),
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
        if self.ema is not None:
            if "ema" not in state:
                raise CheckpointError(f"{source}: trained without a weight average (ema: 0); resume with ema=0")
            self.ema.load_state_dict(state["ema"])
        self.state.load_state_dict(state, self.dist, self.cfg.patience, self.cfg.epochs, source)

    def _save_last(self) -> Path:
        """Write ``last.pt`` (rank 0). Collective when data-parallel: every rank calls it at the same point,
        contributing its augmentation/RNG state and its share of the epoch's sums."""
        t0 = time.monotonic()
        state = None
        if self.dist.distributed:
            ranks = all_gather_object(self.state.rank_state())
            sums = self.state.global_sums(self.dist)
            if self.dist.is_main:
                state = self.state_dict()
                state.update(rank_states=ranks, sums=vars(sums).copy(), world_size=self.dist.world_size)
        elif self.dist.is_main:
            state = self.state_dict()
        if state is not None:
            self.checkpoints.save_last(state)
        self.stopper.budget.record_save(time.monotonic() - t0)
        return self.checkpoints.last

    def _stop_now(self, reason: str, saved: bool = False) -> None:
        """Checkpoint (unless just done) and raise the stop with how to resume."""
        if not saved:
            self._save_last()
        if self.dist.distributed:
            barrier()  # no rank exits (and so gets its peers killed by the agent) before rank 0 has written last.pt
        st = self.state
        where = (
            f"after epoch {st.epoch}"
            if st.batch_in_epoch == 0
            else f"in epoch {st.epoch + 1} after batch {st.batch_in_epoch}"
        )
        self.stopper.stop(reason, where, self.checkpoints.last, self.run_dir)


def _weight_average(model: torch.nn.Module, decay: float) -> torch.optim.swa_utils.AveragedModel:
    """An exponential moving average of ``model``'s weights and BatchNorm statistics (torch's ``AveragedModel``),
    updated after every optimizer step; its first update copies the weights."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)  # type: ignore[no-untyped-call]
