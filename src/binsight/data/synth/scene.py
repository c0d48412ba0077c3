"""The bin around the items: back wall, side walls in perspective, floor, lips with location labels, straps."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from binsight.data.synth.textures import hsv, scale_colour


@dataclass(frozen=True)
class BinGeometry:
    """Where things are in a w×h picture of one bin seen from the front, slightly from above."""

    w: int
    h: int
    top: int  # bottom edge of the top lip: the opening starts here
    lip_y: int  # top edge of the front lip: the opening ends here
    back: tuple[int, int, int, int]  # back wall x0, y0, x1, y1
    floor_y: int  # where the back wall meets the floor

    @property
    def opening_area(self) -> int:
        return self.w * max(1, self.lip_y - self.top)


@dataclass(frozen=True)
class BinColours:
    fabric: tuple[int, int, int]
    lip: tuple[int, int, int]


@lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # pragma: no cover - Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def bin_colours(rng: np.random.Generator) -> BinColours:
    """Pale yellow fabric like most ABID bins; now and then a grey or white one."""
    if rng.random() < 0.85:
        fabric = hsv(rng.uniform(0.11, 0.15), rng.uniform(0.18, 0.42), rng.uniform(0.68, 0.88))
        lip = hsv(rng.uniform(0.12, 0.15), rng.uniform(0.35, 0.55), rng.uniform(0.82, 0.95))
    else:
        fabric = hsv(rng.uniform(0.1, 0.6), rng.uniform(0.0, 0.06), rng.uniform(0.6, 0.85))
        lip = scale_colour(fabric, 1.12)
    return BinColours(fabric, lip)


def draw_bin(rng: np.random.Generator, w: int, h: int, colours: BinColours) -> tuple[Image.Image, BinGeometry]:
    """Draw the empty bin (walls and floor, shadowed towards the back) and return it with its geometry."""
    top = int(h * rng.uniform(0.0, 0.07))
    lip_y = h - int(h * rng.uniform(0.06, 0.12))
    # The camera sits close to the opening: narrow side walls, a short floor, the back wall fills the frame.
    ml, mr = int(w * rng.uniform(0.02, 0.1)), int(w * rng.uniform(0.02, 0.1))
    floor_y = lip_y - int(h * rng.uniform(0.05, 0.16))
    back = (ml, top + int(h * rng.uniform(0.0, 0.04)), w - mr, floor_y)
    geo = BinGeometry(w, h, top, lip_y, back, floor_y)
    img = Image.new("RGB", (w, h), scale_colour(colours.fabric, rng.uniform(0.7, 0.9)))
    draw = ImageDraw.Draw(img)
    fab = colours.fabric
    bx0, by0, bx1, by1 = back
    draw.rectangle(back, fill=scale_colour(fab, rng.uniform(0.78, 0.92)))
    draw.polygon([(0, top), (bx0, by0), (bx0, by1), (0, lip_y)], fill=scale_colour(fab, rng.uniform(0.86, 1.0)))
    draw.polygon([(w, top), (bx1, by0), (bx1, by1), (w, lip_y)], fill=scale_colour(fab, rng.uniform(0.86, 1.0)))
    draw.polygon([(bx0, by1), (bx1, by1), (w, lip_y), (0, lip_y)], fill=scale_colour(fab, rng.uniform(0.92, 1.06)))
    seam = scale_colour(fab, 0.68)
    for line in ([(bx0, by0), (bx0, by1)], [(bx1, by0), (bx1, by1)], [(bx0, by1), (bx1, by1)]):
        draw.line(line, fill=seam, width=1)
    draw.line([(bx0, by1), (0, lip_y)], fill=seam, width=1)
    draw.line([(bx1, by1), (w, lip_y)], fill=seam, width=1)
    if rng.random() < 0.4:  # a fold or crease in the back fabric
        x = int(rng.uniform(bx0, bx1))
        draw.line([(x, by0), (x + int(rng.uniform(-10, 10)), by1)], fill=scale_colour(fab, 0.82), width=2)
    return img, geo


def draw_lips(rng: np.random.Generator, img: Image.Image, geo: BinGeometry, colours: BinColours) -> None:
    """Draw the front lip (with its location label and QR code) and the top lip over the items."""
    draw = ImageDraw.Draw(img)
    w, h = geo.w, geo.h
    if geo.top > 0:
        draw.rectangle((0, 0, w, geo.top), fill=colours.lip)
        draw.line([(0, geo.top), (w, geo.top)], fill=scale_colour(colours.lip, 0.7), width=1)
        if rng.random() < 0.7:
            _label(rng, img, int(w * rng.uniform(0.3, 0.6)), geo.top - int(geo.h * 0.05), int(geo.h * 0.05))
    draw.rectangle((0, geo.lip_y, w, h), fill=colours.lip)
    draw.line([(0, geo.lip_y), (w, geo.lip_y)], fill=scale_colour(colours.lip, 1.1), width=2)
    draw.line([(0, geo.lip_y + 2), (w, geo.lip_y + 2)], fill=scale_colour(colours.lip, 0.85), width=1)
    lip_h = h - geo.lip_y
    if lip_h >= 8 and rng.random() < 0.9:
        lh = int(lip_h * rng.uniform(0.5, 0.7))
        _label(rng, img, int(w * rng.uniform(0.25, 0.6)), geo.lip_y + (lip_h - lh) // 2 + 1, lh)


def _label(rng: np.random.Generator, img: Image.Image, x: int, y: int, lh: int) -> None:
    """A bin location label: white sticker, dark tag with the bin's name (``1B``…), a QR code."""
    if lh < 6:
        return
    draw = ImageDraw.Draw(img)
    lw = int(lh * rng.uniform(3.2, 4.2))
    draw.rectangle((x, y, x + lw, y + lh), fill=(236, 236, 240))
    tag = (int(rng.integers(20, 70)), int(rng.integers(20, 50)), int(rng.integers(60, 110)))
    tw = int(lw * 0.55)
    draw.rectangle((x + 2, y + 1, x + tw, y + lh - 1), fill=tag)
    name = f"{int(rng.integers(1, 5))}{'ABCDEFGH'[int(rng.integers(8))]}"
    draw.text((x + 4, y + 1), name, fill=(240, 240, 240), font=_font(max(6, lh - 3)))
    qs = lh - 2
    bits = (rng.random((7, 7)) < 0.5).astype(np.uint8) * 255
    qr = Image.fromarray(bits, mode="L").resize((qs, qs), Image.NEAREST)
    img.paste(qr.convert("RGB"), (x + lw - qs - 2, y + 1))


def draw_straps(rng: np.random.Generator, img: Image.Image, geo: BinGeometry, n: int) -> None:
    """Draw ``n`` elastic straps across the opening: bands of thin, translucent, slightly sagging threads."""
    if n <= 0:
        return
    w, h = geo.w, geo.h
    span = geo.lip_y + 0.04 * h - (geo.top + 0.1 * h)
    slots = (np.arange(n) + rng.uniform(0.2, 0.8, size=n)) / n  # one strap per slot: spread out, never stacked
    mask = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(mask)
    xs = np.linspace(0, w, 6)
    u = xs / w
    for s in slots:
        yc = geo.top + 0.1 * h + s * span
        band = h * rng.uniform(0.07, 0.18)
        tilt = h * rng.uniform(-0.03, 0.03)
        sag = h * rng.uniform(-0.01, 0.04)
        base_y = yc + tilt * (u - 0.5) + sag * (1 - (2 * u - 1) ** 2)
        threads = max(6, int(band / rng.uniform(1.3, 2.4)))  # evenly spaced threads, a little jitter
        offsets = np.linspace(-band / 2, band / 2, threads) + rng.normal(0, 0.3, size=threads)
        opacity = rng.uniform(0.75, 1.0)
        for off in offsets:
            wobble = rng.normal(0, 0.35, size=xs.shape)
            pts = list(zip(xs.tolist(), (base_y + off + wobble).tolist(), strict=True))
            draw.line(pts, fill=int(rng.integers(120, 240) * opacity), width=1)
    # Elastic thread: light grey with a faint warm or cool tint per bin.
    tint = rng.uniform(-8, 8)
    colour = (int(218 + tint), int(214 + rng.uniform(-4, 4)), int(212 - tint))
    img.paste(colour, (0, 0, w, h), mask)
