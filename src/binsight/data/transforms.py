"""Preprocessing presets, defined once. The eval preset is stored in the artifact (input size, resize
policy, mean, std) and every predictor rebuilds it from there with :func:`eval_transform`.

Resize policies:
- ``letterbox`` (default): scale the longer side to ``size`` and pad to a square, so the whole bin stays
  visible (a centre crop can cut counted items off).
- ``stretch``: resize to ``size``×``size`` ignoring aspect ratio.
- ``center_crop``: the torchvision ImageNet recipe (resize shorter side to size/0.875, crop the centre).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


@dataclass(frozen=True)
class EvalPreset:
    size: int = 224
    resize: str = "letterbox"
    mean: list[float] = field(default_factory=lambda: list(IMAGENET_MEAN))
    std: list[float] = field(default_factory=lambda: list(IMAGENET_STD))


def resize_image(img: Image.Image, size: int, policy: str = "letterbox") -> Image.Image:
    """Return an RGB ``size``×``size`` image made from ``img`` with the given resize policy."""
    img = img.convert("RGB")
    if policy == "stretch":
        return img.resize((size, size), Image.BILINEAR)
    if policy == "center_crop":
        w, h = img.size
        short = round(size / 0.875)
        scale = short / min(w, h)
        img = img.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BILINEAR)
        w, h = img.size
        left, top = (w - size) // 2, (h - size) // 2
        return img.crop((left, top, left + size, top + size))
    if policy == "letterbox":
        w, h = img.size
        scale = size / max(w, h)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        resized = img.resize((nw, nh), Image.BILINEAR)
        canvas = Image.new("RGB", (size, size), (124, 116, 104))  # the ImageNet mean colour: pads read as ~0
        canvas.paste(resized, ((size - nw) // 2, (size - nh) // 2))
        return canvas
    raise ValueError(f"unknown resize policy {policy!r}; expected letterbox, stretch or center_crop")


def to_uint8_array(img: Image.Image, size: int, policy: str = "letterbox") -> np.ndarray:
    """Decode-cache form: HWC uint8 array of the resized image."""
    return np.asarray(resize_image(img, size, policy), dtype=np.uint8)


def normalize_uint8(batch, mean: list[float], std: list[float]):
    """uint8 tensor NHWC or NCHW (C=3) → float32 NCHW normalized tensor."""
    import torch

    if batch.ndim == 3:
        batch = batch.unsqueeze(0)
    if batch.shape[-1] == 3 and batch.shape[1] != 3:
        batch = batch.permute(0, 3, 1, 2)
    x = batch.float().div_(255.0)
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - m) / s


def eval_transform(preset: EvalPreset):
    """A callable PIL image → float32 CHW tensor implementing the eval preset."""
    import torch

    def apply(img: Image.Image):
        arr = to_uint8_array(img, preset.size, preset.resize)
        return normalize_uint8(torch.from_numpy(arr), preset.mean, preset.std)[0]

    return apply
