"""Item sprites: one RGBA picture per SKU (boxes, soft bags, bottles, books and flat packs).

A sprite is drawn once per SKU and reused for every unit of it, so several units of one product look alike
(they differ only in pose, scale and lighting). Shapes come from ImageDraw; shading is a few vectorized
numpy products over the sprite.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from binsight.data.synth.textures import TextureBank, hsv, product_colour, scale_colour

RGBA = tuple[int, int, int, int]


def _rgba(c: tuple[int, int, int], a: int = 255) -> RGBA:
    return (c[0], c[1], c[2], a)


def _text_lines(draw: ImageDraw.ImageDraw, rng: np.random.Generator, box: tuple[int, int, int, int], colour) -> None:
    """Rows of small blocks that read as printed text at ABID resolution."""
    x0, y0, x1, y1 = box
    line_h = max(1, int(rng.integers(1, 3)))
    gap = line_h + int(rng.integers(2, 4))
    y = y0
    while y + line_h <= y1:
        x = x0
        end = x0 + (x1 - x0) * rng.uniform(0.4, 1.0)
        while x < end:
            word = int(rng.integers(3, 12))
            draw.rectangle((x, y, min(x + word, x1), y + line_h - 1), fill=colour)
            x += word + 2
        y += gap


def _barcode_label(draw: ImageDraw.ImageDraw, rng: np.random.Generator, x: int, y: int, w: int, h: int) -> None:
    """A white sticker with a barcode, the most common print on warehouse items."""
    if w < 8 or h < 6:
        return
    draw.rectangle((x, y, x + w, y + h), fill=(238, 238, 232, 255))
    bx, bx1 = x + 2, x + w - 2
    by0, by1 = y + 2, y + max(3, int(h * 0.65))
    while bx < bx1:
        bw = int(rng.integers(1, 3))
        if rng.random() < 0.6:
            draw.rectangle((bx, by0, min(bx + bw - 1, bx1), by1), fill=(25, 25, 25, 255))
        bx += bw
    if h > 12:
        _text_lines(draw, rng, (x + 2, by1 + 2, x + w - 2, y + h - 1), (60, 60, 60, 255))


def _shade(arr: np.ndarray, factor: np.ndarray) -> None:
    """Multiply the RGB of ``arr`` (uint8 H×W×4, in place) by ``factor`` (broadcastable float32)."""
    rgb = arr[..., :3].astype(np.float32) * factor
    np.clip(rgb, 0, 255, out=rgb)
    arr[..., :3] = rgb.astype(np.uint8)


def _printed_face(
    rng: np.random.Generator, bank: TextureBank, w: int, h: int, base: tuple[int, int, int]
) -> Image.Image:
    """The printed front of a package: base colour, pattern, a colour band, a logo, text and often a label."""
    face = Image.new("RGBA", (w, h), _rgba(base))
    draw = ImageDraw.Draw(face)
    accent = product_colour(rng)
    if rng.random() < 0.6:  # colour band
        y0 = int(rng.uniform(0, 0.7) * h)
        draw.rectangle((0, y0, w, y0 + int(rng.uniform(0.1, 0.35) * h)), fill=_rgba(accent))
    if rng.random() < 0.5:  # logo / product picture
        r = int(min(w, h) * rng.uniform(0.15, 0.35))
        cx, cy = int(rng.uniform(0.25, 0.75) * w), int(rng.uniform(0.25, 0.75) * h)
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=_rgba(product_colour(rng)))
    if rng.random() < 0.7:
        tx0, ty0 = int(0.1 * w), int(rng.uniform(0.05, 0.6) * h)
        ink = (20, 20, 20, 255) if sum(base) > 380 else (235, 235, 235, 255)
        _text_lines(draw, rng, (tx0, ty0, int(0.9 * w), ty0 + int(0.3 * h)), ink)
    if rng.random() < 0.45:
        lw, lh = int(w * rng.uniform(0.25, 0.45)), int(h * rng.uniform(0.12, 0.25))
        _barcode_label(
            draw, rng, int(rng.uniform(0.05, 0.95) * (w - lw)), int(rng.uniform(0.05, 0.95) * (h - lh)), lw, lh
        )
    arr = np.array(face)
    strength = rng.uniform(0.1, 0.45)
    _shade(arr, (1.0 - strength + strength * 1.3 * bank.crop(rng, "print", w, h))[..., None])
    return Image.fromarray(arr)


def render_box(rng: np.random.Generator, bank: TextureBank, w: int, h: int) -> Image.Image:
    """A printed box with its top and one side visible in perspective, edges shaded."""
    base = product_colour(rng)
    oy = int(min(w, h) * rng.uniform(0.05, 0.25))  # visible top depth
    ox = int(min(w, h) * rng.uniform(0.0, 0.25)) * (1 if rng.random() < 0.5 else -1)  # visible side depth
    sw, sh = w + abs(ox), h + oy
    img = Image.new("RGBA", (sw, sh), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    fx = 0 if ox >= 0 else -ox
    top = [(fx, oy), (fx + w, oy), (fx + w + ox, 0), (fx + ox, 0)]
    draw.polygon(top, fill=_rgba(scale_colour(base, rng.uniform(1.1, 1.3))))
    if ox:
        ex = fx + w if ox > 0 else fx
        side = [(ex, oy), (ex + ox, 0), (ex + ox, h), (ex, oy + h)]
        draw.polygon(side, fill=_rgba(scale_colour(base, rng.uniform(0.55, 0.75))))
    img.paste(_printed_face(rng, bank, w, h, base), (fx, oy))
    edge = _rgba(scale_colour(base, 0.45))
    draw.line(top + [top[0]], fill=edge, width=1)
    draw.rectangle((fx, oy, fx + w - 1, oy + h - 1), outline=edge, width=1)
    return img


def _blob_polygon(rng: np.random.Generator, w: int, h: int, squareness: float) -> list[tuple[float, float]]:
    """A soft, slightly irregular superellipse filling a w×h box: the outline of a stuffed bag."""
    t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    p = 2.0 / squareness
    c, s = np.cos(t), np.sin(t)
    r = 1.0 + 0.04 * np.sin(3 * t + rng.uniform(0, 6)) + 0.03 * np.sin(5 * t + rng.uniform(0, 6))
    x = (w / 2 - 1) * (1 + r * np.sign(c) * np.abs(c) ** p * 0.98)
    y = (h / 2 - 1) * (1 + r * np.sign(s) * np.abs(s) ** p * 0.98)
    return list(zip(np.clip(x, 0, w - 1).tolist(), np.clip(y, 0, h - 1).tolist(), strict=True))


def render_bag(rng: np.random.Generator, bank: TextureBank, w: int, h: int) -> Image.Image:
    """A soft poly bag: rounded outline, wrinkles, specular creases, a heat seal; sometimes clear plastic."""
    clear = rng.random() < 0.35
    base = hsv(0, 0, rng.uniform(0.75, 0.92)) if clear else product_colour(rng)
    img = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    draw.polygon(_blob_polygon(rng, w, h, rng.uniform(1.3, 2.2)), fill=_rgba(base))
    if clear:  # the content shows through: a coloured mass inside the plastic
        inner = product_colour(rng)
        m = rng.uniform(0.12, 0.22)
        draw.polygon(
            [(x * (1 - 2 * m) + m * w, y * (1 - 2 * m) + m * h) for x, y in _blob_polygon(rng, w, h, 1.6)],
            fill=_rgba(inner),
        )
        _text_lines(draw, rng, (int(0.2 * w), int(0.3 * h), int(0.8 * w), int(0.5 * h)), (240, 240, 240, 255))
    elif rng.random() < 0.6:
        _text_lines(draw, rng, (int(0.2 * w), int(0.25 * h), int(0.8 * w), int(0.55 * h)), (30, 30, 30, 255))
    if rng.random() < 0.4:
        _barcode_label(draw, rng, int(0.55 * w), int(0.62 * h), int(0.3 * w), int(0.18 * h))
    arr = np.array(img)
    wr = bank.crop(rng, "wrinkle", w, h)
    yy = (np.arange(h, dtype=np.float32) / max(h - 1, 1) - 0.5)[:, None]
    xx = (np.arange(w, dtype=np.float32) / max(w - 1, 1) - 0.5)[None, :]
    volume = 1.05 - 0.9 * (xx * xx + yy * yy)  # the bag bulges: darker towards its rim
    shade = volume * (0.85 + 0.25 * wr)
    seal = max(2, int(h * rng.uniform(0.05, 0.1)))
    shade[:seal] *= 1.15  # the flat heat seal along the top catches the light
    _shade(arr, shade[..., None])
    gloss = np.clip((wr - 0.8) * rng.uniform(300, 700), 0, 110 if clear else 70)[..., None]
    rgb = arr[..., :3].astype(np.float32) + gloss
    arr[..., :3] = np.clip(rgb, 0, 255).astype(np.uint8)
    if clear:
        arr[..., 3] = (arr[..., 3].astype(np.float32) * 0.92).astype(np.uint8)
    return Image.fromarray(arr)


def render_bottle(rng: np.random.Generator, bank: TextureBank, w: int, h: int) -> Image.Image:
    """An upright bottle or jar: cap, neck, shoulder, label band and cylindrical shading with a highlight."""
    body = product_colour(rng)
    cap = product_colour(rng) if rng.random() < 0.7 else hsv(0, 0, 0.95)
    img = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    jar = rng.random() < 0.3  # wide mouth, short neck
    cap_h = int(h * rng.uniform(0.07, 0.14))
    neck_w = int(w * (rng.uniform(0.75, 0.95) if jar else rng.uniform(0.3, 0.5)))
    neck_h = int(h * (0.02 if jar else rng.uniform(0.05, 0.12)))
    nx0 = (w - neck_w) // 2
    shoulder = cap_h + neck_h
    draw.rounded_rectangle((0, shoulder, w - 1, h - 1), radius=max(1, int(w * 0.25)), fill=_rgba(body))
    draw.rectangle((nx0, cap_h, nx0 + neck_w, shoulder + 2), fill=_rgba(body))
    draw.rectangle((nx0 - 1, 0, nx0 + neck_w + 1, cap_h), fill=_rgba(cap))
    ly0 = int(shoulder + (h - shoulder) * rng.uniform(0.2, 0.35))
    ly1 = int(shoulder + (h - shoulder) * rng.uniform(0.7, 0.9))
    label = product_colour(rng)
    draw.rectangle((0, ly0, w - 1, ly1), fill=_rgba(label))
    ink = (20, 20, 20, 255) if sum(label) > 380 else (240, 240, 240, 255)
    _text_lines(draw, rng, (int(0.15 * w), ly0 + 3, int(0.85 * w), ly1 - 3), ink)
    arr = np.array(img)
    x = (np.arange(w, dtype=np.float32) + 0.5) / w
    profile = 0.45 + 0.65 * np.sin(np.pi * x) ** 0.7
    hl = rng.uniform(0.25, 0.4)
    profile += rng.uniform(0.2, 0.6) * np.exp(-(((x - hl) / 0.05) ** 2))
    _shade(arr, profile[None, :, None])
    return Image.fromarray(arr)


def render_book(rng: np.random.Generator, bank: TextureBank, w: int, h: int) -> Image.Image:
    """A book lying face up (cover and page edges), or a flat pack: an envelope or poly mailer with a label."""
    if rng.random() < 0.35:  # flat pack / mailer
        base = hsv(0.09, 0.45, 0.7) if rng.random() < 0.5 else hsv(0, 0, rng.uniform(0.6, 0.95))
        img = Image.new("RGBA", (w, h), _rgba(base))
        draw = ImageDraw.Draw(img)
        lw, lh = int(w * rng.uniform(0.35, 0.55)), int(h * rng.uniform(0.25, 0.4))
        _barcode_label(draw, rng, int((w - lw) * rng.uniform(0.2, 0.8)), int((h - lh) * rng.uniform(0.2, 0.8)), lw, lh)
        draw.rectangle((0, 0, w - 1, h - 1), outline=_rgba(scale_colour(base, 0.7)))
        arr = np.array(img)
        _shade(arr, (0.85 + 0.25 * bank.crop(rng, "wrinkle", w, h))[..., None])
        return Image.fromarray(arr)
    t = max(2, int(min(w, h) * rng.uniform(0.04, 0.12)))  # thickness: visible page block
    img = Image.new("RGBA", (w + t, h + t), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    pages = (236, 230, 212, 255)
    draw.polygon([(w, 0), (w + t, t), (w + t, h + t), (w, h)], fill=pages)
    draw.polygon([(0, h), (w, h), (w + t, h + t), (t, h + t)], fill=pages)
    for k in range(1, t, 2):  # page lines
        draw.line((w + k, k, w + k, h + k), fill=(200, 195, 180, 255))
    cover = product_colour(rng)
    face = Image.new("RGBA", (w, h), _rgba(cover))
    fd = ImageDraw.Draw(face)
    if rng.random() < 0.7:  # cover picture: a pattern in two colours
        ph = max(1, int(h * 0.5))
        t_ = bank.crop(rng, "print", w, ph)[..., None]
        c1, c2 = np.array(product_colour(rng), np.float32), np.array(product_colour(rng), np.float32)
        pic = (c1 * (1 - t_) + c2 * t_).astype(np.uint8)
        face.paste(Image.fromarray(pic, mode="RGB"), (0, int(h * rng.uniform(0.35, 0.5))))
    ink = (20, 20, 20, 255) if sum(cover) > 380 else (240, 240, 240, 255)
    _text_lines(fd, rng, (int(0.1 * w), int(0.08 * h), int(0.9 * w), int(0.3 * h)), ink)
    img.paste(face, (0, 0))
    draw.rectangle((0, 0, w - 1, h - 1), outline=_rgba(scale_colour(cover, 0.5)))
    return img


RENDERERS = {"box": render_box, "bag": render_bag, "bottle": render_bottle, "book": render_book}


def render_sprite(rng: np.random.Generator, bank: TextureBank, kind: str, w: int, h: int) -> Image.Image:
    """The RGBA sprite of one SKU of ``kind`` whose front face is about ``w``×``h`` pixels."""
    return RENDERERS[kind](rng, bank, max(6, int(w)), max(6, int(h)))
