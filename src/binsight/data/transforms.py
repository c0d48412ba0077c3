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
from PIL import Image, ImageOps

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


@dataclass(frozen=True)
class EvalPreset:
    size: int = 224
    resize: str = "letterbox"
    mean: list[float] = field(default_factory=lambda: list(IMAGENET_MEAN))
    std: list[float] = field(default_factory=lambda: list(IMAGENET_STD))


def resize_image(img: Image.Image, size: int, policy: str = "letterbox") -> Image.Image:
    """Return an RGB ``size``×``size`` image made from ``img`` with the given resize policy.

    EXIF orientation is applied first, so a photo taken sideways is seen upright in training and serving alike.
    """
    if img.getexif().get(ImageOps.ExifTags.Base.Orientation, 1) != 1:
        img = ImageOps.exif_transpose(img)
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
    return np.array(resize_image(img, size, policy), dtype=np.uint8)  # writable: torch.from_numpy needs it


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


# --- training augmentation -------------------------------------------------------------------------------------
#
# Applied on batches of uint8 images from the decode cache, after normalisation, with torch ops only (no PIL),
# so a batch is augmented in one go on the training device. Every random draw comes from one CPU generator in a
# fixed order whatever the batch holds, so a run is reproducible under its seed and resumable mid-epoch.
# Nothing crops: rotations shrink the image just enough to keep its corners inside the frame, and the padding is
# 0 after normalisation, i.e. the mean colour the letterbox pads with.

AUGMENT_LEVELS = ("none", "light", "strong")


@dataclass(frozen=True)
class TrainPreset:
    """Training preprocessing: the eval preset's normalisation plus an augmentation level.

    Attributes:
        augment: ``none`` (normalise only), ``light`` (flips, mild colour jitter, rotation up to 5 degrees) or
            ``strong`` (flips, stronger colour jitter, rotation up to 10 degrees with up to 10% zoom-out, blur,
            small random erasing).
        mean: per-channel mean (from the model's default config).
        std: per-channel standard deviation.
    """

    augment: str = "light"
    mean: list[float] = field(default_factory=lambda: list(IMAGENET_MEAN))
    std: list[float] = field(default_factory=lambda: list(IMAGENET_STD))


_LEVELS = {
    # brightness/contrast/saturation jitter (factor in [1-j, 1+j]), max rotation (degrees), min extra zoom-out,
    # blur probability, erasing probability and max erased area share.
    "light": {"jitter": 0.15, "degrees": 5.0, "zoom_out": 0.0, "blur_p": 0.0, "erase_p": 0.0, "erase_area": 0.0},
    "strong": {"jitter": 0.3, "degrees": 10.0, "zoom_out": 0.1, "blur_p": 0.3, "erase_p": 0.25, "erase_area": 0.04},
}


def train_transform(preset: TrainPreset):
    """A callable ``(uint8 batch NHWC or NCHW, generator) -> float32 NCHW`` normalised, augmented batch.

    The generator must be a CPU ``torch.Generator``; the batch may live on any device.
    """
    if preset.augment not in AUGMENT_LEVELS:
        raise ValueError(f"unknown augment level {preset.augment!r}; expected one of {', '.join(AUGMENT_LEVELS)}")

    def apply(batch, generator):
        x = normalize_uint8(batch, preset.mean, preset.std)
        if preset.augment == "none" or x.shape[0] == 0:
            return x
        return _augment(x, generator, _LEVELS[preset.augment], preset.mean, preset.std)

    return apply


def _augment(x, g, p: dict, mean: list[float], std: list[float]):
    import math

    import torch
    import torch.nn.functional as F

    n, dev = x.shape[0], x.device

    def uniform(lo: float, hi: float, *shape: int):
        return (torch.rand(*shape, generator=g) * (hi - lo) + lo).to(dev)

    # Draw everything first, in a fixed order, so the stream does not depend on which branch runs.
    hflip = torch.rand(n, generator=g) < 0.5
    vflip = torch.rand(n, generator=g) < 0.5
    jit = p["jitter"]
    bright, contrast, sat = (uniform(1 - jit, 1 + jit, n, 1, 1, 1) for _ in range(3))
    angle = uniform(-p["degrees"], p["degrees"], n) * (math.pi / 180)
    zoom = uniform(1 - p["zoom_out"], 1.0, n)
    blur_on = (torch.rand(n, generator=g) < p["blur_p"]).to(dev)
    blur_mix = uniform(0.3, 1.0, n, 1, 1, 1)
    erase_on = (torch.rand(n, generator=g) < p["erase_p"]).to(dev)
    erase_area = torch.rand(n, generator=g) * p["erase_area"]
    erase_aspect = torch.exp(torch.rand(n, generator=g) * 2 * math.log(2) - math.log(2))  # in [1/2, 2]
    erase_pos = torch.rand(n, 2, generator=g)

    # Flips (bins are photographed from above: both axes are fair).
    x = torch.where(hflip.to(dev).view(n, 1, 1, 1), x.flip(3), x)
    x = torch.where(vflip.to(dev).view(n, 1, 1, 1), x.flip(2), x)

    # Colour jitter on the [0, 1] image, then back to normalised.
    m = torch.tensor(mean, device=dev, dtype=x.dtype).view(1, 3, 1, 1)
    s = torch.tensor(std, device=dev, dtype=x.dtype).view(1, 3, 1, 1)
    img = x * s + m
    img = img * bright
    grey = (0.299 * img[:, 0:1] + 0.587 * img[:, 1:2] + 0.114 * img[:, 2:3]).mean(dim=(2, 3), keepdim=True)
    img = (img - grey) * contrast + grey
    lum = 0.299 * img[:, 0:1] + 0.587 * img[:, 1:2] + 0.114 * img[:, 2:3]
    img = ((img - lum) * sat + lum).clamp(0, 1)
    x = (img - m) / s

    # Rotation about the centre, shrunk by 1/(|cos|+|sin|) so the rotated square keeps its corners in frame.
    if p["degrees"] > 0:
        cos, sin = torch.cos(angle), torch.sin(angle)
        scale = (cos.abs() + sin.abs()) / zoom  # sampling grid scale > 1 means the image shrinks
        theta = torch.stack(
            [torch.stack([cos * scale, -sin * scale, torch.zeros_like(cos)], 1),
             torch.stack([sin * scale, cos * scale, torch.zeros_like(cos)], 1)],
            1,
        )  # fmt: skip
        grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    # Blur: a 3x3 Gaussian, blended per image so its strength varies.
    if p["blur_p"] > 0:
        k1 = torch.tensor([0.25, 0.5, 0.25], device=dev, dtype=x.dtype)
        kernel = (k1[:, None] * k1[None, :]).expand(3, 1, 3, 3)
        blurred = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel, groups=3)
        mix = blur_mix * blur_on.view(n, 1, 1, 1).to(x.dtype)
        x = x * (1 - mix) + blurred * mix

    # Random erasing of a small patch (at most a few % of the image, so it rarely hides a whole item).
    if p["erase_p"] > 0:
        h, w = x.shape[2], x.shape[3]
        eh = (erase_area * h * w * erase_aspect).sqrt().clamp(max=h).round()
        ew = (erase_area * h * w / erase_aspect).sqrt().clamp(max=w).round()
        top = (erase_pos[:, 0] * (h - eh + 1)).floor()
        left = (erase_pos[:, 1] * (w - ew + 1)).floor()
        rows = torch.arange(h).view(1, h, 1)
        cols = torch.arange(w).view(1, 1, w)
        box = (
            (rows >= top.view(n, 1, 1))
            & (rows < (top + eh).view(n, 1, 1))
            & (cols >= left.view(n, 1, 1))
            & (cols < (left + ew).view(n, 1, 1))
        )
        mask = box.to(dev) & erase_on.view(n, 1, 1)
        x = x.masked_fill(mask.unsqueeze(1), 0.0)
    return x
