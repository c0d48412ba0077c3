"""One SynthBins picture: bin, items, straps, then the camera (lighting, blur, noise, JPEG)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageChops

from binsight.config.schemas import SynthConfig
from binsight.data.synth.items import render_sprite
from binsight.data.synth.layout import Unit, coarse_mask, place_units, pose
from binsight.data.synth.metadata import Sku, make_skus, metadata_document
from binsight.data.synth.scene import BinGeometry, bin_colours, draw_bin, draw_lips, draw_straps
from binsight.data.synth.textures import NOISE_SIGMA, TextureBank, texture_bank

# Probability of 0, 1, 2, 3 straps (ABID bins mostly show two or three).
STRAP_P = (0.1, 0.2, 0.35, 0.35)
# Per-kind pose: (usual tilt in degrees, chance of lying on its side).
POSE = {"box": (6.0, 0.15), "bag": (20.0, 0.2), "bottle": (5.0, 0.15), "book": (15.0, 0.25)}


def picture_size(rng: np.random.Generator, cfg: SynthConfig) -> tuple[int, int]:
    """Width uniform in [width_min, width_max]; height from an aspect ratio that favours ABID's landscape shots."""
    w = int(rng.integers(cfg.width_min, cfg.width_max + 1))
    lo, hi = np.log(cfg.aspect_min), np.log(cfg.aspect_max)
    aspect = float(np.exp(lo + (hi - lo) * rng.beta(1.3, 2.2)))
    return w, max(16, round(w * aspect))


def _face_size(rng: np.random.Generator, sku: Sku) -> tuple[float, float]:
    """The two dimensions (inches) of the side of ``sku`` that faces the camera: (width, height)."""
    length, width, height = sku.dims
    if sku.kind == "bottle":
        return width, length
    if sku.kind == "book":
        return (width, length) if rng.random() < 0.6 else (length, width)
    if sku.kind == "bag":
        return (length, width) if rng.random() < 0.5 else (width, length)
    faces = [(length, height), (width, height), (length, width), (height, length)]
    return faces[int(rng.integers(len(faces)))]


def _face_pixels(rng: np.random.Generator, skus: list[Sku], geo: BinGeometry) -> list[tuple[int, int]]:
    """Pixel size of each SKU's face: true-to-size, then scaled so the items fill a plausible share of the bin."""
    if not skus:
        return []
    faces = [_face_size(rng, s) for s in skus]
    px_per_in = geo.w / rng.uniform(14.0, 24.0)
    area = sum(s.quantity * fw * fh for s, (fw, fh) in zip(skus, faces, strict=True)) * px_per_in**2
    fill = area / geo.opening_area
    lo, hi = 0.25 + 0.05 * min(len(skus), 3), rng.uniform(0.45, 0.85)
    scale = 1.0 if lo <= fill <= hi else float(np.sqrt((hi if fill > hi else lo) / fill))
    out = []
    max_w, max_h = 0.85 * geo.w, 0.85 * (geo.lip_y - geo.top)
    for fw, fh in faces:
        pw, ph = fw * px_per_in * scale, fh * px_per_in * scale
        shrink = min(1.0, max_w / pw, max_h / ph)
        out.append((max(8, int(pw * shrink)), max(8, int(ph * shrink))))
    return out


def _units(rng: np.random.Generator, skus: list[Sku], geo: BinGeometry, bank: TextureBank) -> list[Unit]:
    units = []
    for k, (sku, (fw, fh)) in enumerate(zip(skus, _face_pixels(rng, skus, geo), strict=True)):
        sprite = render_sprite(rng, bank, sku.kind, fw, fh)
        tilt, lying = POSE[sku.kind]
        base_angle = 90.0 * (1 if rng.random() < 0.5 else -1) if rng.random() < lying else 0.0
        for _ in range(sku.quantity):
            posed = pose(sprite, base_angle + float(rng.normal(0, tilt)), float(rng.uniform(0.94, 1.06)))
            units.append(Unit(posed, coarse_mask(posed), k))
    return units


def _paste_units(rng: np.random.Generator, img: Image.Image, units: list[Unit]) -> None:
    """Paste the units back to front, each over its own soft shadow (light from the upper left)."""
    dx, dy = int(rng.integers(2, 7)), int(rng.integers(2, 6))
    darkness = int(255 * rng.uniform(0.3, 0.5))
    for u in units:
        sw, sh = u.sprite.size
        # The coarse silhouette, enlarged bilinearly, is already a soft shadow.
        soft = Image.fromarray(u.mask.astype(np.uint8) * darkness, mode="L").resize((sw, sh), Image.BILINEAR)
        img.paste((20, 18, 10), (u.x + dx, u.y + dy, u.x + dx + sw, u.y + dy + sh), soft)
        img.paste(u.sprite, (u.x, u.y), u.sprite)


def render_bin(
    rng: np.random.Generator, count: int, cfg: SynthConfig, image_fname: str = "00001.jpg"
) -> tuple[Image.Image, dict]:
    """Draw one bin holding exactly ``count`` items.

    Args:
        rng: the image's own generator (see ``plan.image_rng``); all randomness of the picture comes from it.
        count: number of items (units) in the bin, 0 for an empty bin.
        cfg: the generator config (sizes, straps, visibility, seed of the shared texture bank).
        image_fname: the file name recorded in the metadata.

    Returns:
        The RGB picture and its ABID metadata document.
    """
    bank = texture_bank(cfg.seed)
    out_w, out_h = picture_size(rng, cfg)
    # Draw a little smaller and enlarge at the end: the softness of a warehouse camera, at a lower cost.
    s = rng.uniform(0.6, 0.85)
    w, h = max(16, round(out_w * s)), max(16, round(out_h * s))
    colours = bin_colours(rng)
    img, geo = draw_bin(rng, w, h, colours)
    skus = make_skus(rng, count)
    units = _units(rng, skus, geo, bank)
    grouped = {k for k in range(len(skus)) if rng.random() < 0.6}
    units = place_units(rng, units, geo, cfg.min_visible, grouped)
    _paste_units(rng, img, units)
    draw_lips(rng, img, geo, colours)
    p = np.asarray(STRAP_P[: cfg.straps_max + 1])
    draw_straps(rng, img, geo, int(rng.choice(len(p), p=p / p.sum())))
    img = img.resize((out_w, out_h), Image.BILINEAR)
    img = _camera(rng, img, bank)
    return img, metadata_document(skus, image_fname)


def _camera(rng: np.random.Generator, img: Image.Image, bank: TextureBank) -> Image.Image:
    """Uneven lighting and vignetting, a warm colour cast, washed-out colours, lowered contrast, sensor noise.

    All full-picture steps are single Pillow operations (lookup tables, multiply, blend, add): a few
    milliseconds for an ABID-sized picture.
    """
    w, h = img.size
    # Lighting: a smooth random field times a vignette, computed coarse and enlarged.
    gw, gh = 12, 9
    light = np.asarray(
        Image.fromarray(rng.uniform(0.72, 1.12, size=(3, 3)).astype(np.float32), mode="F").resize(
            (gw, gh), Image.BICUBIC
        )
    )
    ys = np.linspace(-1, 1, gh, dtype=np.float32)[:, None]
    xs = np.linspace(-1, 1, gw, dtype=np.float32)[None, :]
    gain = light * (1.0 - rng.uniform(0.05, 0.25) * 0.5 * (xs * xs + ys * ys))
    gain[: gh // 3] *= rng.uniform(0.8, 1.0)  # the top of a bin sits in the shelf's shadow
    gmax = float(gain.max())
    gain_img = Image.fromarray(np.clip(gain / gmax * 255, 0, 255).astype(np.uint8), mode="L").resize(
        (w, h), Image.BICUBIC
    )
    # Per-channel tone curve: contrast around a pivot, colour cast, and the brightest gain folded in.
    contrast = rng.uniform(0.7, 0.95)
    pivot = rng.uniform(100, 140)
    cast = (rng.uniform(1.0, 1.08), rng.uniform(0.97, 1.02), rng.uniform(0.82, 0.96))
    v = np.arange(256, dtype=np.float32)
    lut = np.concatenate([np.clip(((v - pivot) * contrast + pivot) * k * gmax, 0, 255) for k in cast])
    img = img.point(lut.astype(np.uint8).tolist())
    img = ImageChops.multiply(img, Image.merge("RGB", (gain_img, gain_img, gain_img)))
    img = Image.blend(img.convert("L").convert("RGB"), img, rng.uniform(0.55, 0.9))  # washed-out colours
    sigma = rng.uniform(1.0, 3.5) / NOISE_SIGMA
    noise_lut = np.clip(128 + (np.arange(256) - 128) * sigma, 0, 255).astype(np.uint8).tolist()
    noise = bank.noise_patch(rng, w, h).point(noise_lut * 3)
    return ImageChops.add(img, noise, scale=1.0, offset=-128)


def encode_jpeg(rng: np.random.Generator, img: Image.Image, cfg: SynthConfig) -> bytes:
    """JPEG bytes at a quality drawn from ``[jpeg_quality_min, jpeg_quality_max]``."""
    quality = int(rng.integers(cfg.jpeg_quality_min, cfg.jpeg_quality_max + 1))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
