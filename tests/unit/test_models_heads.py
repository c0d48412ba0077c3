"""Heads and the outputs → probabilities conversion, checked on hand-made logits."""

from __future__ import annotations

import math

import pytest
import torch

from binsight.models import OrdinalHead, SoftmaxHead, outputs_to_probs
from binsight.models.heads import ordinal_to_probs


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def test_ordinal_probs_from_cumulative_logits():
    # P(y>0)=0.9, P(y>1)=0.6, P(y>2)=0.2 → class probs 0.1, 0.3, 0.4, 0.2
    logits = torch.tensor([[_logit(0.9), _logit(0.6), _logit(0.2)]])
    probs = outputs_to_probs(logits, "ordinal")
    torch.testing.assert_close(probs, torch.tensor([[0.1, 0.3, 0.4, 0.2]]))


def test_ordinal_probs_enforce_monotonicity():
    # P(y>1) = 0.7 exceeds P(y>0) = 0.4: the running minimum caps it, so class 1 gets 0, not -0.3.
    cumulative = torch.tensor([[0.4, 0.7, 0.1]])
    probs = ordinal_to_probs(cumulative)
    torch.testing.assert_close(probs, torch.tensor([[0.6, 0.0, 0.3, 0.1]]))
    assert (probs >= 0).all()


def test_ordinal_probs_random_logits_are_distributions():
    torch.manual_seed(0)
    probs = outputs_to_probs(torch.randn(64, 4) * 5, "ordinal")
    assert probs.shape == (64, 5)
    assert (probs >= 0).all()
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(64))


def test_softmax_probs_and_temperature():
    logits = torch.tensor([[2.0, 0.0, -2.0]])
    torch.testing.assert_close(outputs_to_probs(logits, "softmax"), torch.softmax(logits, dim=1))
    hot = outputs_to_probs(logits, "softmax", temperature=4.0)
    torch.testing.assert_close(hot, torch.softmax(logits / 4.0, dim=1))
    assert hot.max() < outputs_to_probs(logits, "softmax").max()  # higher temperature flattens
    cool = outputs_to_probs(torch.tensor([[_logit(0.8)]]), "ordinal", temperature=2.0)
    torch.testing.assert_close(cool, torch.sigmoid(torch.tensor([[-_logit(0.8) / 2, _logit(0.8) / 2]])))


def test_bad_temperature_and_head_name():
    with pytest.raises(ValueError, match="temperature"):
        outputs_to_probs(torch.zeros(1, 3), "softmax", temperature=0.0)
    with pytest.raises(ValueError, match="unknown head"):
        outputs_to_probs(torch.zeros(1, 3), "poisson")


def test_ordinal_head_biases_stay_ordered_while_training():
    torch.manual_seed(0)
    head = OrdinalHead(8, num_classes=5)
    assert head(torch.randn(3, 8)).shape == (3, 4)
    torch.testing.assert_close(head.biases, torch.tensor([1.0, 0.75, 0.5, 0.25]))
    # Push the steps hard in every direction; the parametrisation keeps b_0 > b_1 > b_2 > b_3.
    opt = torch.optim.SGD(head.parameters(), lr=10.0)
    for _ in range(5):
        opt.zero_grad()
        (head(torch.randn(3, 8)) * torch.randn(3, 4)).sum().backward()
        opt.step()
    assert (head.biases[1:] < head.biases[:-1]).all()
    out = head(torch.randn(4, 8))
    assert (out[:, 1:] < out[:, :-1]).all()  # shared weight: cumulative logits decrease with k


def test_ordinal_head_two_classes_and_softmax_head_dropout():
    assert OrdinalHead(4, num_classes=2)(torch.randn(2, 4)).shape == (2, 1)
    with pytest.raises(ValueError):
        OrdinalHead(4, num_classes=1)
    head = SoftmaxHead(4, 3, dropout=0.5)
    head.eval()
    x = torch.randn(2, 4)
    torch.testing.assert_close(head(x), head.fc(x))  # dropout inactive in eval
