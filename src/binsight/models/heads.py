"""Classification heads on top of pooled backbone features, and the outputs → probabilities conversion.

Two heads share one contract: ``head(features (N, D)) -> outputs``.

* ``softmax``: (N, K) logits, one per class.
* ``ordinal``: (N, K-1) cumulative logits, ``outputs[:, k]`` is the logit of P(y > k) (CORAL, Cao et al. 2020).
  One shared weight vector and K-1 ordered biases, so the cumulative probabilities are rank-consistent.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

HEAD_TYPES = ("softmax", "ordinal")
# Smallest gap between consecutive ordinal biases, so they stay strictly ordered even where softplus underflows.
MIN_BIAS_STEP = 1e-3


class SoftmaxHead(nn.Module):
    """Dropout (optional) + Linear: features → K class logits.

    Args:
        in_features: Feature dimension D.
        num_classes: Number of classes K.
        dropout: Dropout probability before the Linear layer (0 disables it).
    """

    def __init__(self, in_features: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(in_features, num_classes)
        self.num_outputs = num_classes

    def forward(self, features: Tensor) -> Tensor:
        return self.fc(self.dropout(features))


class OrdinalHead(nn.Module):
    """CORAL head: a shared Linear to one unit plus K-1 ordered biases → K-1 cumulative logits.

    The biases are parametrised as ``b_0`` followed by strictly negative steps (``-softplus - MIN_BIAS_STEP``), so
    ``b_0 > b_1 > ... > b_{K-2}`` always holds and P(y > k) never increases with k.

    Args:
        in_features: Feature dimension D.
        num_classes: Number of ordered classes K (>= 2).
        dropout: Dropout probability before the Linear layer (0 disables it).
    """

    def __init__(self, in_features: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"an ordinal head needs at least 2 classes, got {num_classes}")
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(in_features, 1, bias=False)
        # Start like coral-pytorch: biases (K-1)/(K-1), ..., 1/(K-1), i.e. equal steps of 1/(K-1).
        step = 1.0 / (num_classes - 1)
        self.bias_first = nn.Parameter(torch.tensor(1.0))
        inv_softplus = math.log(math.expm1(step - MIN_BIAS_STEP))
        self.bias_steps = nn.Parameter(torch.full((num_classes - 2,), inv_softplus))
        self.num_outputs = num_classes - 1

    @property
    def biases(self) -> Tensor:
        """The K-1 ordered biases (strictly decreasing)."""
        steps = F.softplus(self.bias_steps) + MIN_BIAS_STEP
        return torch.cat([self.bias_first.reshape(1), self.bias_first - torch.cumsum(steps, dim=0)])

    def forward(self, features: Tensor) -> Tensor:
        return self.fc(self.dropout(features)) + self.biases


def build_head(head: str, in_features: int, num_classes: int, dropout: float = 0.0) -> nn.Module:
    """Create a head by name (``softmax`` or ``ordinal``)."""
    if head == "softmax":
        return SoftmaxHead(in_features, num_classes, dropout)
    if head == "ordinal":
        return OrdinalHead(in_features, num_classes, dropout)
    raise ValueError(f"unknown head {head!r}: expected one of {', '.join(HEAD_TYPES)}")


def ordinal_to_probs(cumulative: Tensor) -> Tensor:
    """Turn cumulative probabilities P(y > k), shape (N, K-1), into class probabilities (N, K).

    Monotonicity is enforced with a running minimum (an unconstrained model could produce
    P(y > 1) > P(y > 0)), so every class probability is non-negative; rows are renormalised to sum to 1.
    """
    cumulative = torch.cummin(cumulative.clamp(0.0, 1.0), dim=1).values
    ones = torch.ones_like(cumulative[:, :1])
    zeros = torch.zeros_like(cumulative[:, :1])
    upper = torch.cat([ones, cumulative], dim=1)  # P(y > k-1) = P(y >= k)
    lower = torch.cat([cumulative, zeros], dim=1)  # P(y > k)
    probs = (upper - lower).clamp_min(0.0)
    return probs / probs.sum(dim=1, keepdim=True).clamp_min(1e-12)


def outputs_to_probs(outputs: Tensor, head: str, temperature: float = 1.0) -> Tensor:
    """Convert head outputs into (N, K) class probabilities whose rows sum to 1.

    Args:
        outputs: (N, K) logits for ``softmax``, (N, K-1) cumulative logits for ``ordinal``.
        head: ``softmax`` or ``ordinal``.
        temperature: Logits are divided by it before the softmax / sigmoid (calibration); must be > 0.

    Returns:
        (N, K) float tensor of class probabilities.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    logits = outputs.float() / temperature
    if head == "softmax":
        return torch.softmax(logits, dim=1)
    if head == "ordinal":
        return ordinal_to_probs(torch.sigmoid(logits))
    raise ValueError(f"unknown head {head!r}: expected one of {', '.join(HEAD_TYPES)}")
