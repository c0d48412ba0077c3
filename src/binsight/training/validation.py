"""Validation during training: :class:`Validator` computes the validation loss and metrics of a model.

With several workers each rank scores a contiguous share of the validation set
(:func:`~binsight.training.distributed.shard_bounds`, no padding, no duplicates) and the shares are gathered
in rank order, so every rank gets the metrics over the whole validation set exactly once.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from binsight.precision import autocast
from binsight.training.data import SplitData, gather, sequential_batches
from binsight.training.distributed import Dist, all_gather_object, shard_bounds, unwrap


class Validator:
    """Scores a model on the validation split (images, or cached features for a frozen backbone).

    Args:
        data: the decoded splits (``val`` is scored).
        dist: rank and world size.
        device, amp: where and in which autocast dtype (the eval precision) the forward passes run.
        loss_fn: the training loss (the validation loss is its mean).
        mean, std: the model's normalisation.
        batch_size: the training batch size (validation uses twice it).
        tta: average with the horizontally flipped images.
        channels_last: feed channels-last tensors.
        decision: the run's decision rule. For ``macro_f1`` the metrics are those of the decision the artifact
            will make: per-class offsets are fitted on val (as ``binsight evaluate`` does) and applied first, so
            early stopping and the best checkpoint follow the thresholded macro-F1, not the raw arg-max (an
            ordinal head's arg-max collapses onto the end counts while its thresholded decisions improve).
    """

    def __init__(
        self,
        data: SplitData,
        dist: Dist,
        device: torch.device,
        amp: torch.dtype | None,
        loss_fn: nn.Module,
        mean: list[float],
        std: list[float],
        batch_size: int,
        tta: bool,
        channels_last: bool,
        decision: str = "argmax",
    ) -> None:
        self.data, self.dist, self.device, self.amp, self.loss_fn = data, dist, device, amp, loss_fn
        self.mean, self.std, self.batch_size, self.tta, self.channels_last = mean, std, batch_size, tta, channels_last
        self.decision = decision
        self.features: np.ndarray | None = None
        self.features_flipped: np.ndarray | None = None

    def use_features(self, features: np.ndarray, flipped: np.ndarray | None) -> None:
        """Score the head on these cached backbone features (and their flipped twins for TTA) from now on."""
        self.features, self.features_flipped = features, flipped

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, Any]:
        """Validation loss and metrics (``classification_metrics`` plus ``loss``), with flip TTA if ``tta``.

        For ``decision="macro_f1"`` the metrics also hold the ``fitted_class_bias`` they were computed with.

        Leaves ``model`` in eval mode; the caller puts it back into its training mode.
        """
        from binsight.data.transforms import normalize_uint8
        from binsight.evaluation.decision import apply_class_bias, fit_class_bias
        from binsight.evaluation.metrics import classification_metrics

        net: Any = unwrap(model)  # never the DDP wrapper: ranks run different numbers of validation batches
        model.eval()
        loss_sum, probs = 0.0, []
        targets = self.data.val_targets
        lo, hi = shard_bounds(len(targets), self.dist)
        for idx in sequential_batches(hi - lo, max(1, self.batch_size * 2)):
            idx = idx + lo
            y = torch.from_numpy(targets[idx.numpy()]).to(self.device)
            with autocast(self.device, self.amp):
                if self.features is not None:
                    out = net.forward_head(gather(self.features, idx).to(self.device))
                    flipped = self.features_flipped
                    out_flip = net.forward_head(gather(flipped, idx).to(self.device)) if flipped is not None else None
                else:
                    x = normalize_uint8(gather(self.data.val.images, idx).to(self.device), self.mean, self.std)
                    if self.channels_last:
                        x = x.contiguous(memory_format=torch.channels_last)
                    out = net(x)
                    out_flip = net(x.flip(3)) if self.tta else None
            loss_sum += float(self.loss_fn(out.float(), y).item()) * len(idx)
            p = net.probabilities(out.float())
            if out_flip is not None:
                p = (p + net.probabilities(out_flip.float())) / 2
            probs.append(p.cpu())
        local = torch.cat(probs).numpy().astype(np.float64) if probs else np.zeros((0, self.data.num_classes))
        shares = all_gather_object((local, loss_sum))
        prob = np.concatenate([p for p, _ in shares])
        loss_sum = sum(ls for _, ls in shares)
        bias = fit_class_bias(prob, targets) if self.decision == "macro_f1" else None
        prob = apply_class_bias(prob, bias)
        metrics = classification_metrics(
            targets, prob.argmax(1), self.data.num_classes, self.data.class_labels, probs=prob
        )
        metrics["loss"] = loss_sum / max(1, len(targets))
        if bias is not None:
            metrics["fitted_class_bias"] = bias.tolist()
        return metrics
