"""Backbones: torchvision classifiers with their classifier layer replaced by ``Identity``, and ``tiny_cnn``.

Each torchvision model is used whole (stem, stages, global pooling), so the backbone output is the pooled,
flattened feature vector the original classifier would have seen.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from torch import nn

from binsight.models.registry import IMAGENET_MEAN, IMAGENET_STD, BackboneSpec, register_model


def _imagenet_cfg(input_size: int = 224) -> dict[str, object]:
    return {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "input_size": input_size}


def _load_torchvision_imagenet(arch: str, module: nn.Module) -> None:
    from binsight.models.weights import load_torchvision_imagenet

    load_torchvision_imagenet(arch, module)


def _torchvision_loader(arch: str) -> Callable[[nn.Module], None]:
    # A partial of a module-level function (not a closure) keeps models picklable (torch.save(model), spawn).
    return functools.partial(_load_torchvision_imagenet, arch)


@register_model("tiny_cnn")
def tiny_cnn() -> BackboneSpec:
    """Three strided conv-BN-ReLU blocks and global pooling (~19k parameters): tests and the fast demo."""

    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

    module = nn.Sequential(*block(3, 16), *block(16, 32), *block(32, 48), nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
    return BackboneSpec(module, 48, _imagenet_cfg(64))


def _resnet(arch: str) -> BackboneSpec:
    import torchvision.models as tvm

    model = getattr(tvm, arch)(weights=None)
    dim = model.fc.in_features
    model.fc = nn.Identity()
    return BackboneSpec(model, dim, _imagenet_cfg(), load_imagenet=_torchvision_loader(arch))


@register_model("resnet18")
def resnet18() -> BackboneSpec:
    """torchvision ResNet-18 (512 features)."""
    return _resnet("resnet18")


@register_model("resnet34")
def resnet34() -> BackboneSpec:
    """torchvision ResNet-34 (512 features)."""
    return _resnet("resnet34")


@register_model("resnet50")
def resnet50() -> BackboneSpec:
    """torchvision ResNet-50 (2048 features)."""
    return _resnet("resnet50")


@register_model("efficientnet_b0")
def efficientnet_b0() -> BackboneSpec:
    """torchvision EfficientNet-B0 (1280 features); its classifier (dropout + Linear) is dropped."""
    import torchvision.models as tvm

    model = tvm.efficientnet_b0(weights=None)
    dim = model.classifier[-1].in_features
    model.classifier = nn.Identity()
    return BackboneSpec(model, dim, _imagenet_cfg(), load_imagenet=_torchvision_loader("efficientnet_b0"))


@register_model("mobilenet_v3_large")
def mobilenet_v3_large() -> BackboneSpec:
    """torchvision MobileNetV3-Large (1280 features).

    Only the final Linear is replaced: the 960→1280 Linear + Hardswish (+ dropout) before it belong to the
    pretrained network and are kept, as timm does.
    """
    import torchvision.models as tvm

    model = tvm.mobilenet_v3_large(weights=None)
    dim = model.classifier[-1].in_features
    model.classifier[-1] = nn.Identity()
    return BackboneSpec(model, dim, _imagenet_cfg(), load_imagenet=_torchvision_loader("mobilenet_v3_large"))


@register_model("convnext_tiny")
def convnext_tiny() -> BackboneSpec:
    """torchvision ConvNeXt-Tiny (768 features); its pretrained LayerNorm before the Linear is kept."""
    import torchvision.models as tvm

    model = tvm.convnext_tiny(weights=None)
    dim = model.classifier[-1].in_features
    model.classifier[-1] = nn.Identity()
    return BackboneSpec(model, dim, _imagenet_cfg(), load_imagenet=_torchvision_loader("convnext_tiny"))
