"""The model registry (timm-style ``@register_model``), the ``BinCounter`` network and ``create_model``.

Every registered builder returns a :class:`BackboneSpec`: a randomly initialised backbone that maps images
(N, 3, H, W) to pooled features (N, D), its feature dimension, and its ``default_cfg`` (mean, std,
input size) — the single source of preprocessing constants for that architecture.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from binsight.errors import BinsightError
from binsight.models.heads import HEAD_TYPES, build_head, outputs_to_probs

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Modules whose import registers the built-in architectures; imported on first use, not at package import.
_BUILTIN_MODULES = ("binsight.models.backbones", "binsight.models.lite")


@dataclass
class BackboneSpec:
    """What a registered builder returns.

    Attributes:
        module: Backbone mapping (N, 3, H, W) images to (N, feature_dim) pooled features.
        feature_dim: Size of the feature vector.
        default_cfg: ``mean``, ``std`` (per-channel, on [0, 1] pixels) and ``input_size`` (square side, px).
        load_imagenet: Loads ImageNet weights into ``module`` (raises ``BinsightError`` when unavailable).
        convert_state_dict: Maps a foreign state dict (e.g. the original release's key names) onto
            ``module``'s key names; used when loading a weights file that is not a binsight one.
    """

    module: nn.Module
    feature_dim: int
    default_cfg: dict[str, Any]
    load_imagenet: Callable[[nn.Module], None] | None = None
    convert_state_dict: Callable[[dict[str, Tensor]], dict[str, Tensor]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, Callable[[], BackboneSpec]] = {}


def register_model(name: str) -> Callable[[Callable[[], BackboneSpec]], Callable[[], BackboneSpec]]:
    """Decorator registering a backbone builder under ``name``.

    Example::

        @register_model("my_net")
        def my_net() -> BackboneSpec: ...
    """

    def decorator(fn: Callable[[], BackboneSpec]) -> Callable[[], BackboneSpec]:
        if name in _REGISTRY and _REGISTRY[name] is not fn:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = fn
        return fn

    return decorator


def _load_builtins() -> None:
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)


def list_models() -> list[str]:
    """Names of all registered architectures, sorted."""
    _load_builtins()
    return sorted(_REGISTRY)


def build_backbone(name: str) -> BackboneSpec:
    """Build the randomly initialised backbone registered as ``name``."""
    _load_builtins()
    if name not in _REGISTRY:
        raise BinsightError(f"unknown model {name!r}: expected one of {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]()


class BinCounter(nn.Module):
    """Backbone + head: images → outputs (softmax logits (N, K) or ordinal cumulative logits (N, K-1)).

    Attributes:
        backbone: (N, 3, H, W) → (N, feature_dim) pooled features.
        head: features → outputs.
        feature_dim, num_classes, head_type, arch: as named.
        default_cfg: ``mean``, ``std``, ``input_size`` of the architecture.
    """

    def __init__(self, spec: BackboneSpec, arch: str, num_classes: int, head: str = "softmax", dropout: float = 0.0):
        super().__init__()
        self.backbone = spec.module
        self.head = build_head(head, spec.feature_dim, num_classes, dropout)
        self.feature_dim = spec.feature_dim
        self.num_classes = num_classes
        self.head_type = head
        self.arch = arch
        self.default_cfg = dict(spec.default_cfg)
        self._spec = spec

    @property
    def num_outputs(self) -> int:
        """Width of ``forward``'s output: K for softmax, K-1 for ordinal."""
        return self.num_classes if self.head_type == "softmax" else self.num_classes - 1

    def features(self, x: Tensor) -> Tensor:
        """Pooled backbone features (N, feature_dim)."""
        return self.backbone(x)

    def forward_head(self, feats: Tensor) -> Tensor:
        """Head outputs from features."""
        return self.head(feats)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.backbone(x))

    def probabilities(self, outputs: Tensor, temperature: float = 1.0) -> Tensor:
        """(N, K) class probabilities from this model's outputs (rows sum to 1)."""
        return outputs_to_probs(outputs, self.head_type, temperature)


def create_model(
    name: str, num_classes: int, weights: str = "none", head: str = "softmax", dropout: float = 0.0
) -> BinCounter:
    """Build a :class:`BinCounter` by registry name.

    Args:
        name: Registered architecture (see :func:`list_models`).
        num_classes: Number of classes K (counts 1..5 → K=5).
        weights: ``none`` (random init from the caller's torch seed), ``imagenet`` (pretrained backbone),
            or a path to a ``.safetensors`` / ``.pt`` / ``.pth`` state dict or binsight checkpoint.
        head: ``softmax`` or ``ordinal``.
        dropout: Dropout before the head's Linear layer.

    Raises:
        BinsightError: Unknown name/head, or weights that cannot be loaded (the message says why and what to do).
    """
    if head not in HEAD_TYPES:
        raise BinsightError(f"unknown head {head!r}: expected one of {', '.join(HEAD_TYPES)}")
    if num_classes < 2:
        raise BinsightError(f"num_classes must be >= 2, got {num_classes}")
    spec = build_backbone(name)
    model = BinCounter(spec, name, num_classes, head, dropout)
    if weights and weights != "none":
        from binsight.models.weights import load_pretrained

        load_pretrained(model, weights)
    return model
