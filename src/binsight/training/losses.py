"""Training losses: ``ce``, ``weighted_ce``, ``focal``, ``gce`` (softmax head) and ``ordinal`` (CORAL, ordinal head).

Every loss is a module called as ``loss(outputs, targets)`` with ``targets`` class indices 0..K-1 and the mean
over the batch as result.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from binsight.errors import BinsightError

LOSSES = ("ce", "weighted_ce", "focal", "gce", "ordinal")
GCE_Q = 0.7  # Zhang & Sabuncu's default: between CE (q → 0) and MAE (q = 1)
WEIGHTINGS = ("inverse", "effective")


def class_weights(class_counts: Sequence[int], method: str = "inverse", beta: float = 0.999) -> Tensor:
    """Per-class weights from training-set counts, normalised to mean 1.

    Args:
        class_counts: Number of training samples per class (index = class).
        method: ``inverse`` (1 / count) or ``effective`` (the effective number of samples, Cui et al. 2019:
            (1 - beta) / (1 - beta^count)), which weights rare classes up less aggressively.
        beta: Effective-number hyperparameter in [0, 1).

    Returns:
        Float tensor of shape (K,). Classes with no samples are treated as having one, so weights stay finite.
    """
    counts = torch.as_tensor(list(class_counts), dtype=torch.float64).clamp_min(1.0)
    if counts.numel() == 0:
        raise BinsightError("class_counts is empty")
    if method == "inverse":
        weights = 1.0 / counts
    elif method == "effective":
        if not 0.0 <= beta < 1.0:
            raise BinsightError(f"beta must be in [0, 1), got {beta}")
        weights = (1.0 - beta) / (1.0 - torch.pow(beta, counts))
    else:
        raise BinsightError(f"unknown class weighting {method!r}: expected one of {', '.join(WEIGHTINGS)}")
    return (weights / weights.mean()).float()


class FocalLoss(nn.Module):
    """Focal loss (Lin et al. 2017) for softmax logits: ``-sum_c q_c * alpha_c * (1 - p_c)^gamma * log p_c``.

    ``q`` is the (optionally label-smoothed) one-hot target. The batch mean is weighted like PyTorch's
    weighted cross-entropy (divided by the sum of the targets' alphas), so with ``gamma=0`` this equals
    ``nn.CrossEntropyLoss(weight=alpha, label_smoothing=...)`` exactly.

    Args:
        gamma: Focusing parameter (>= 0); 0 gives cross-entropy.
        alpha: Optional per-class weights (K,).
        label_smoothing: Mass spread uniformly over all classes.
    """

    def __init__(self, gamma: float = 2.0, alpha: Tensor | None = None, label_smoothing: float = 0.0) -> None:
        super().__init__()
        if gamma < 0:
            raise BinsightError(f"focal_gamma must be >= 0, got {gamma}")
        self.gamma = gamma
        self.label_smoothing = label_smoothing
        self.register_buffer("alpha", alpha.float() if alpha is not None else None)

    def forward(self, outputs: Tensor, targets: Tensor) -> Tensor:
        log_p = F.log_softmax(outputs.float(), dim=1)
        num_classes = outputs.shape[1]
        q = F.one_hot(targets, num_classes).float()
        if self.label_smoothing > 0:
            q = q * (1.0 - self.label_smoothing) + self.label_smoothing / num_classes
        modulating = (1.0 - log_p.exp()).clamp_min(0.0).pow(self.gamma) if self.gamma > 0 else 1.0
        per_class = -q * modulating * log_p
        if self.alpha is None:
            return per_class.sum(dim=1).mean()
        alpha = cast(Tensor, self.alpha).to(outputs.device)
        return (per_class * alpha).sum() / alpha[targets].sum()


class GeneralizedCELoss(nn.Module):
    """Generalized cross-entropy (Zhang & Sabuncu 2018): ``(1 - p_y^q) / q``, robust to noisy labels.

    As ``q → 0`` it becomes cross-entropy; at ``q = 1`` it is the mean absolute error of the probabilities, which
    ignores confidently contradicted (likely mislabelled) samples. ABID's counts are the warehouse system's, not
    a visual count, so some labels are wrong. The batch mean is weighted like :class:`FocalLoss`.

    Args:
        q: In (0, 1].
        alpha: Optional per-class weights (K,).
    """

    def __init__(self, q: float = GCE_Q, alpha: Tensor | None = None) -> None:
        super().__init__()
        if not 0 < q <= 1:
            raise BinsightError(f"the generalized cross-entropy q must be in (0, 1], got {q}")
        self.q = q
        self.register_buffer("alpha", alpha.float() if alpha is not None else None)

    def forward(self, outputs: Tensor, targets: Tensor) -> Tensor:
        p_true = F.softmax(outputs.float(), dim=1).gather(1, targets[:, None]).squeeze(1)
        per_sample = (1.0 - p_true.clamp_min(1e-12).pow(self.q)) / self.q
        alpha = self.alpha
        if not isinstance(alpha, Tensor):
            return per_sample.mean()
        w = alpha.to(outputs.device)[targets]
        return (per_sample * w).sum() / w.sum()


def ordinal_targets(targets: Tensor, num_classes: int) -> Tensor:
    """(N,) class indices → (N, K-1) binary levels, ``levels[:, k] = 1`` iff ``y > k``."""
    thresholds = torch.arange(num_classes - 1, device=targets.device)
    return (targets.unsqueeze(1) > thresholds).float()


class OrdinalLoss(nn.Module):
    """CORAL loss: binary cross-entropy of each cumulative logit against ``y > k``, summed over k, batch mean.

    Args:
        num_classes: K; outputs must have K-1 columns.
        importance: Optional per-threshold weights (K-1,) (CORAL's task importance).
        label_smoothing: Binary targets become ``t * (1 - s) + s / 2``.
    """

    def __init__(self, num_classes: int, importance: Tensor | None = None, label_smoothing: float = 0.0) -> None:
        super().__init__()
        if num_classes < 2:
            raise BinsightError(f"the ordinal loss needs at least 2 classes, got {num_classes}")
        if importance is not None and importance.shape != (num_classes - 1,):
            raise BinsightError(f"importance must have {num_classes - 1} entries, got {tuple(importance.shape)}")
        self.num_classes = num_classes
        self.label_smoothing = label_smoothing
        self.register_buffer("importance", importance.float() if importance is not None else None)

    def forward(self, outputs: Tensor, targets: Tensor) -> Tensor:
        if outputs.ndim != 2 or outputs.shape[1] != self.num_classes - 1:
            raise BinsightError(
                f"the ordinal loss expects (N, {self.num_classes - 1}) cumulative logits from an ordinal head, "
                f"got shape {tuple(outputs.shape)} (use head=ordinal with loss=ordinal)"
            )
        levels = ordinal_targets(targets, self.num_classes)
        if self.label_smoothing > 0:
            levels = levels * (1.0 - self.label_smoothing) + self.label_smoothing / 2
        bce = F.binary_cross_entropy_with_logits(outputs.float(), levels, reduction="none")
        if self.importance is not None:
            bce = bce * cast(Tensor, self.importance).to(outputs.device)
        return bce.sum(dim=1).mean()


class SoftTargetLoss(nn.Module):
    """Distillation loss against a teacher's class probabilities ``(N, K)``, summed over the batch.

    For the ordinal head each cumulative logit is fitted to the teacher's ``P(count > k)`` with binary
    cross-entropy (CORAL's loss with soft levels); for the softmax head it is the cross-entropy
    ``-sum_k p_k log q_k``. One-hot probabilities give the unweighted hard-label losses (times N), and the sum
    lets data-parallel workers divide by the global batch.
    """

    def __init__(self, head: str) -> None:
        super().__init__()
        if head not in ("softmax", "ordinal"):
            raise BinsightError(f"no soft-target loss for head {head!r}")
        self.head = head

    def forward(self, outputs: Tensor, probs: Tensor) -> Tensor:
        if self.head == "ordinal":
            above = (1.0 - probs.cumsum(dim=1))[:, :-1].clamp(0.0, 1.0)  # P(count > k), k = 0..K-2
            bce = F.binary_cross_entropy_with_logits(outputs.float(), above, reduction="none")
            return bce.sum()
        return -(probs * F.log_softmax(outputs.float(), dim=1)).sum()


def build_loss(
    name: str,
    num_classes: int,
    class_counts: Sequence[int] | None = None,
    label_smoothing: float = 0.0,
    focal_gamma: float = 2.0,
    weighting: str = "inverse",
) -> nn.Module:
    """Create a loss module by name.

    Args:
        name: ``ce``, ``weighted_ce``, ``focal``, ``gce`` or ``ordinal``.
        num_classes: K.
        class_counts: Training samples per class. Required by ``weighted_ce``; ``focal`` and ``gce`` use them
            as class weights when given; ``ce`` and ``ordinal`` ignore them.
        label_smoothing: In [0, 1).
        focal_gamma: Focal loss focusing parameter.
        weighting: How counts become class weights: ``inverse`` or ``effective`` (see :func:`class_weights`).

    Returns:
        A module called as ``loss(outputs, targets)``.

    Raises:
        BinsightError: Unknown name, missing or mismatched class counts, values out of range.
    """
    if not 0.0 <= label_smoothing < 1.0:
        raise BinsightError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    if class_counts is not None and len(class_counts) != num_classes:
        raise BinsightError(f"class_counts has {len(class_counts)} entries but there are {num_classes} classes")
    weights = class_weights(class_counts, weighting) if class_counts is not None else None
    if name == "ce":
        return nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    if name == "weighted_ce":
        if weights is None:
            raise BinsightError("loss weighted_ce needs class_counts (the number of training samples per class)")
        return nn.CrossEntropyLoss(weight=weights, label_smoothing=label_smoothing)
    if name == "focal":
        return FocalLoss(focal_gamma, weights, label_smoothing)
    if name == "gce":
        if label_smoothing > 0:
            raise BinsightError("loss gce does not take label_smoothing (it is already robust to noisy labels)")
        return GeneralizedCELoss(GCE_Q, weights)
    if name == "ordinal":
        return OrdinalLoss(num_classes, label_smoothing=label_smoothing)
    raise BinsightError(f"unknown loss {name!r}: expected one of {', '.join(LOSSES)}")
