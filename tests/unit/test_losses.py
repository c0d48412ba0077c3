"""Losses checked against hand-computed values on tiny examples."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from binsight.errors import BinsightError
from binsight.training.losses import (
    LOSSES,
    FocalLoss,
    OrdinalLoss,
    SoftTargetLoss,
    build_loss,
    class_weights,
    ordinal_targets,
)

LOGITS = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 3.0], [1.0, 1.0, 1.0], [-2.0, 0.0, 2.0]])
TARGETS = torch.tensor([0, 2, 1, 0])


def _manual_ce(logits: torch.Tensor, targets: torch.Tensor) -> float:
    total = 0.0
    for row, t in zip(logits.tolist(), targets.tolist(), strict=True):
        total += -(row[t] - math.log(sum(math.exp(v) for v in row)))
    return total / len(targets)


def test_ce_is_negative_log_softmax_at_target():
    loss = build_loss("ce", 3)(LOGITS, TARGETS)
    assert loss.item() == pytest.approx(_manual_ce(LOGITS, TARGETS), rel=1e-6)


def test_ce_label_smoothing_by_hand():
    eps = 0.3
    loss = build_loss("ce", 3, label_smoothing=eps)(LOGITS, TARGETS)
    log_p = torch.log_softmax(LOGITS, dim=1)
    q = torch.full_like(log_p, eps / 3)
    q[torch.arange(4), TARGETS] += 1 - eps
    assert loss.item() == pytest.approx(-(q * log_p).sum(dim=1).mean().item(), rel=1e-6)


def test_class_weights_inverse_and_effective():
    inverse = class_weights([10, 20, 40])
    expected = torch.tensor([1 / 10, 1 / 20, 1 / 40])
    torch.testing.assert_close(inverse, expected / expected.mean())
    assert inverse.mean().item() == pytest.approx(1.0)
    effective = class_weights([10, 20, 40], method="effective", beta=0.9)
    raw = torch.tensor([(1 - 0.9) / (1 - 0.9**n) for n in (10, 20, 40)])
    torch.testing.assert_close(effective, raw / raw.mean())
    # effective numbers weight the rare class up less than inverse frequency does
    assert effective[0] / effective[2] < inverse[0] / inverse[2]
    assert torch.isfinite(class_weights([0, 5, 5])).all()  # an empty class does not give inf


def test_weighted_ce_with_equal_counts_equals_ce():
    plain = build_loss("ce", 3, label_smoothing=0.1)(LOGITS, TARGETS)
    weighted = build_loss("weighted_ce", 3, class_counts=[7, 7, 7], label_smoothing=0.1)(LOGITS, TARGETS)
    assert weighted.item() == pytest.approx(plain.item(), rel=1e-6)


def test_weighted_ce_by_hand():
    counts = [1, 2, 4]
    w = class_weights(counts)
    loss = build_loss("weighted_ce", 3, class_counts=counts)(LOGITS, TARGETS)
    nll = -torch.log_softmax(LOGITS, dim=1)[torch.arange(4), TARGETS]
    assert loss.item() == pytest.approx((w[TARGETS] * nll).sum().item() / w[TARGETS].sum().item(), rel=1e-6)


def test_focal_gamma_zero_equals_ce_and_weighted_ce():
    assert build_loss("focal", 3, focal_gamma=0.0)(LOGITS, TARGETS).item() == pytest.approx(
        build_loss("ce", 3)(LOGITS, TARGETS).item(), rel=1e-6
    )
    counts = [3, 1, 9]
    focal = build_loss("focal", 3, class_counts=counts, focal_gamma=0.0, label_smoothing=0.2)(LOGITS, TARGETS)
    ce = nn.CrossEntropyLoss(weight=class_weights(counts), label_smoothing=0.2)(LOGITS, TARGETS)
    assert focal.item() == pytest.approx(ce.item(), rel=1e-5)


def test_focal_by_hand_downweights_easy_examples():
    gamma = 2.0
    loss = FocalLoss(gamma)(LOGITS, TARGETS)
    p = torch.softmax(LOGITS, dim=1)[torch.arange(4), TARGETS]
    expected = (-((1 - p) ** gamma) * torch.log(p)).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert loss.item() < build_loss("ce", 3)(LOGITS, TARGETS).item()


def test_ordinal_targets():
    levels = ordinal_targets(torch.tensor([0, 2, 4]), 5)
    torch.testing.assert_close(levels, torch.tensor([[0.0, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1]]))


def test_ordinal_loss_by_hand():
    logits = torch.tensor([[1.5, 0.2, -1.0], [0.3, -0.4, -2.0]])
    targets = torch.tensor([2, 0])  # levels [1,1,0] and [0,0,0]

    def bce(z: float, y: float) -> float:
        s = 1 / (1 + math.exp(-z))
        return -(y * math.log(s) + (1 - y) * math.log(1 - s))

    row0 = bce(1.5, 1) + bce(0.2, 1) + bce(-1.0, 0)
    row1 = bce(0.3, 0) + bce(-0.4, 0) + bce(-2.0, 0)
    loss = build_loss("ordinal", 4)(logits, targets)
    assert loss.item() == pytest.approx((row0 + row1) / 2, rel=1e-6)
    weighted = OrdinalLoss(4, importance=torch.tensor([1.0, 0.0, 2.0]))(logits, targets)
    expected = (bce(1.5, 1) + 2 * bce(-1.0, 0) + bce(0.3, 0) + 2 * bce(-2.0, 0)) / 2
    assert weighted.item() == pytest.approx(expected, rel=1e-6)


def test_ordinal_loss_rejects_softmax_outputs():
    with pytest.raises(BinsightError, match="head=ordinal"):
        build_loss("ordinal", 5)(torch.zeros(2, 5), torch.tensor([0, 1]))


@pytest.mark.parametrize("name", LOSSES)
def test_gradients_flow_and_loss_decreases(name):
    torch.manual_seed(0)
    width = 3 if name == "ordinal" else 4
    outputs = torch.randn(6, width, requires_grad=True)
    targets = torch.tensor([0, 1, 2, 3, 3, 0])
    smoothing = 0.0 if name == "gce" else 0.05  # gce refuses label smoothing
    loss_fn = build_loss(name, 4, class_counts=[5, 3, 2, 1], label_smoothing=smoothing)
    opt = torch.optim.SGD([outputs], lr=0.5)
    first = loss_fn(outputs, targets)
    first.backward()
    assert outputs.grad is not None and outputs.grad.abs().sum() > 0
    for _ in range(20):
        opt.zero_grad()
        loss_fn(outputs, targets).backward()
        opt.step()
    assert loss_fn(outputs, targets).item() < first.item()


def test_build_loss_errors():
    with pytest.raises(BinsightError) as info:
        build_loss("hinge", 5)
    for name in LOSSES:
        assert name in str(info.value)
    with pytest.raises(BinsightError, match="needs class_counts"):
        build_loss("weighted_ce", 5)
    with pytest.raises(BinsightError, match="3 entries but there are 5 classes"):
        build_loss("weighted_ce", 5, class_counts=[1, 2, 3])
    with pytest.raises(BinsightError, match="label_smoothing"):
        build_loss("ce", 5, label_smoothing=1.0)
    with pytest.raises(BinsightError, match="focal_gamma"):
        build_loss("focal", 5, focal_gamma=-1.0)


def test_gce_by_hand_and_its_limits():
    from binsight.training.losses import GeneralizedCELoss

    p = torch.softmax(LOGITS, dim=1)[torch.arange(len(TARGETS)), TARGETS]
    expected = ((1 - p**0.7) / 0.7).mean()
    assert build_loss("gce", 3)(LOGITS, TARGETS).item() == pytest.approx(expected.item(), rel=1e-6)
    # q → 0 approaches cross-entropy; q = 1 is the mean absolute error of the true-class probability.
    ce = torch.nn.functional.cross_entropy(LOGITS, TARGETS).item()
    assert GeneralizedCELoss(q=1e-4)(LOGITS, TARGETS).item() == pytest.approx(ce, rel=1e-3)
    assert GeneralizedCELoss(q=1.0)(LOGITS, TARGETS).item() == pytest.approx((1 - p).mean().item(), rel=1e-6)
    # Class weights: a batch-weighted mean, like weighted cross-entropy.
    counts = [10, 5, 1]
    weighted = build_loss("gce", 3, class_counts=counts)(LOGITS, TARGETS)
    w = class_weights(counts)[TARGETS]
    assert weighted.item() == pytest.approx(((1 - p**0.7) / 0.7 * w).sum().item() / w.sum().item(), rel=1e-6)
    with pytest.raises(BinsightError, match="label_smoothing"):
        build_loss("gce", 3, label_smoothing=0.1)
    with pytest.raises(BinsightError, match="q must be"):
        GeneralizedCELoss(q=0.0)


@pytest.mark.parametrize("head", ["softmax", "ordinal"])
def test_soft_targets_that_are_one_hot_give_the_label_loss_summed(head):
    torch.manual_seed(0)
    y = torch.tensor([0, 2, 1, 3, 3])
    out = torch.randn(5, 4 if head == "softmax" else 3)
    hard = nn.CrossEntropyLoss()(out, y) if head == "softmax" else OrdinalLoss(4)(out, y)
    one_hot = torch.nn.functional.one_hot(y, 4).float()
    assert SoftTargetLoss(head)(out, one_hot).item() == pytest.approx(5 * hard.item(), rel=1e-6)


def test_an_ordinal_soft_target_is_the_teachers_probability_of_each_count_above():
    # One image, K = 3: the teacher says P = (0.2, 0.5, 0.3), so P(count > 1st) = 0.8 and P(count > 2nd) = 0.3.
    out = torch.tensor([[0.4, -1.1]])
    probs = torch.tensor([[0.2, 0.5, 0.3]])
    expected = sum(
        -(
            t * math.log(torch.sigmoid(torch.tensor(z)).item())
            + (1 - t) * math.log(1 - torch.sigmoid(torch.tensor(z)).item())
        )
        for z, t in ((0.4, 0.8), (-1.1, 0.3))
    )
    assert SoftTargetLoss("ordinal")(out, probs).item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(BinsightError, match="no soft-target loss"):
        SoftTargetLoss("regression")
