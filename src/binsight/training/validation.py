"""Validation of the :class:`~binsight.training.trainer.Trainer` (a mixin it inherits).

:meth:`ValidationMixin.evaluate` computes the validation loss and metrics, each rank on its contiguous share
(:func:`~binsight.training.distributed.shard_bounds`), gathered so every rank sees the metrics over the whole
validation set; :meth:`~ValidationMixin._validation_estimate` is what the ``max_runtime`` check expects it to cost.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from binsight.precision import autocast
from binsight.training.data import gather, sequential_batches
from binsight.training.distributed import all_gather_object, shard_bounds, unwrap


class ValidationMixin:
    """Validation for :class:`~binsight.training.trainer.Trainer`.

    Uses the trainer's attributes: ``cfg``, ``data``, ``dist``, ``model``, ``device``, ``eval_amp``, ``loss_fn``,
    ``mean``, ``std``, ``channels_last``, ``use_features``, ``budget``, the feature caches ``_val_feats`` /
    ``_val_feats_flip`` and its ``_set_train_mode()``.
    """

    @torch.no_grad()
    def evaluate(self) -> dict[str, Any]:
        """Validation loss and metrics (``classification_metrics`` plus ``loss``), with flip TTA if ``tta``."""
        from binsight.data.transforms import normalize_uint8
        from binsight.evaluation.metrics import classification_metrics

        net = unwrap(self.model)  # never the DDP wrapper: ranks run different numbers of validation batches
        self.model.eval()
        loss_sum, probs = 0.0, []
        targets = self.data.val_targets
        # Each rank validates a contiguous share (no padding, no duplicates); the shares are gathered in rank
        # order, so every rank computes the metrics over the whole validation set exactly once.
        lo, hi = shard_bounds(len(targets), self.dist)
        for idx in sequential_batches(hi - lo, max(1, self.cfg.batch_size * 2)):
            idx = idx + lo
            y = torch.from_numpy(targets[idx.numpy()]).to(self.device)
            with autocast(self.device, self.eval_amp):
                if self.use_features:
                    out = net.forward_head(gather(self._val_feats, idx).to(self.device))
                    out_flip = (
                        net.forward_head(gather(self._val_feats_flip, idx).to(self.device)) if self.cfg.tta else None
                    )
                else:
                    x = normalize_uint8(gather(self.data.val.images, idx).to(self.device), self.mean, self.std)
                    if self.channels_last:
                        x = x.contiguous(memory_format=torch.channels_last)
                    out = net(x)
                    out_flip = net(x.flip(3)) if self.cfg.tta else None
            loss_sum += float(self.loss_fn(out.float(), y).item()) * len(idx)
            p = net.probabilities(out.float())
            if out_flip is not None:
                p = (p + net.probabilities(out_flip.float())) / 2
            probs.append(p.cpu())
        self._set_train_mode()
        local = torch.cat(probs).numpy().astype(np.float64) if probs else np.zeros((0, self.data.num_classes))
        shares = all_gather_object((local, loss_sum))
        prob = np.concatenate([p for p, _ in shares])
        loss_sum = sum(ls for _, ls in shares)
        metrics = classification_metrics(
            targets, prob.argmax(1), self.data.num_classes, self.data.class_labels, probs=prob
        )
        metrics["loss"] = loss_sum / max(1, len(targets))
        return metrics

    def _validation_estimate(self) -> float:
        if self.budget.val_seconds is not None:
            return self.budget.val_seconds
        # Before the first validation: a forward pass costs about a third of a training step per image.
        per_image = self.budget.batch_seconds / max(1, self.cfg.batch_size)
        return per_image * len(self.data.val) / 3
