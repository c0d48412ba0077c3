"""Reusable textures, drawn once per process from the run's seed: print patterns, bag wrinkles, sensor noise.

Items crop and stretch these instead of computing fresh noise per image, which keeps a bin to a few
milliseconds. The bank depends only on the seed, never on which images a process drew
before, so parallel and serial runs produce the same bytes.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

from binsight.data.synth.plan import STREAM_TEXTURES

TILE = 128
N_PRINT = 24
N_WRINKLE = 10
NOISE = 640  # side of the sensor-noise field; bigger pictures wrap around it
NOISE_SIGMA = 12.0  # standard deviation of the stored noise (grey levels around 128); scaled down per picture


@dataclass(frozen=True)
class TextureBank:
    """Grey-level textures in [0, 1] (``TILE``×``TILE`` float32) and an RGB noise field centred on 128."""

    prints: tuple[np.ndarray, ...]
    wrinkles: tuple[np.ndarray, ...]
    noise: Image.Image

    def crop(self, rng: np.random.Generator, kind: str, w: int, h: int) -> np.ndarray:
        """A random crop of a random tile of ``kind`` (``print`` or ``wrinkle``) stretched to ``h``×``w``."""
        tiles = self.prints if kind == "print" else self.wrinkles
        tile = tiles[int(rng.integers(len(tiles)))]
        cw = int(rng.integers(TILE // 3, TILE + 1))
        ch = int(rng.integers(TILE // 3, TILE + 1))
        x0 = int(rng.integers(0, TILE - cw + 1))
        y0 = int(rng.integers(0, TILE - ch + 1))
        img = Image.fromarray(tile[y0 : y0 + ch, x0 : x0 + cw], mode="F")
        return np.asarray(img.resize((max(w, 1), max(h, 1)), Image.BILINEAR))

    def noise_patch(self, rng: np.random.Generator, w: int, h: int) -> Image.Image:
        """An RGB window (w×h) of the noise field at a random offset; tiled for pictures bigger than the field."""
        size = self.noise.width
        if w > size or h > size:
            field = Image.new("RGB", (w + size, h + size))
            for y in range(0, h + size, size):
                for x in range(0, w + size, size):
                    field.paste(self.noise, (x, y))
        else:
            field = self.noise
        oy, ox = int(rng.integers(0, size - min(h, size) + 1)), int(rng.integers(0, size - min(w, size) + 1))
        return field.crop((ox, oy, ox + w, oy + h))


def _smooth_noise(rng: np.random.Generator, cells: int, size: int = TILE) -> np.ndarray:
    """Value noise: a ``cells``×``cells`` random grid upsampled bicubically, scaled to [0, 1]."""
    small = rng.random((cells, cells), dtype=np.float32)
    big = np.asarray(Image.fromarray(small, mode="F").resize((size, size), Image.BICUBIC))
    lo, hi = float(big.min()), float(big.max())
    return ((big - lo) / (hi - lo + 1e-6)).astype(np.float32)


def _print_tile(rng: np.random.Generator, i: int) -> np.ndarray:
    """Patterns printed on packaging: blobs, stripes, checks, fine grain."""
    yy, xx = np.mgrid[0:TILE, 0:TILE].astype(np.float32) / TILE
    style = i % 4
    if style == 0:
        tile = _smooth_noise(rng, int(rng.integers(3, 9)))
    elif style == 1:
        angle = rng.uniform(0, np.pi)
        freq = rng.uniform(3, 12)
        tile = 0.5 + 0.5 * np.sign(np.sin(2 * np.pi * freq * (xx * np.cos(angle) + yy * np.sin(angle))))
        tile = 0.6 * tile + 0.4 * _smooth_noise(rng, 5)
    elif style == 2:
        f = rng.uniform(3, 8)
        tile = 0.5 + 0.5 * np.sign(np.sin(2 * np.pi * f * xx) * np.sin(2 * np.pi * f * yy))
        tile = 0.7 * tile + 0.3 * _smooth_noise(rng, 4)
    else:
        tile = 0.5 * _smooth_noise(rng, 16) + 0.5 * _smooth_noise(rng, 4)
    return tile.astype(np.float32)


def _wrinkle_tile(rng: np.random.Generator) -> np.ndarray:
    """Ridged noise, stretched along one axis: creases of a soft plastic bag."""
    a = _smooth_noise(rng, int(rng.integers(5, 12)))
    b = _smooth_noise(rng, int(rng.integers(10, 20)))
    ridges = 1.0 - np.abs(2.0 * (0.65 * a + 0.35 * b) - 1.0)
    return (ridges**2.5).astype(np.float32)


@lru_cache(maxsize=4)
def texture_bank(seed: int) -> TextureBank:
    """The texture bank of a run; cached per process (building it takes tens of milliseconds)."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(STREAM_TEXTURES,)))
    prints = tuple(_print_tile(rng, i) for i in range(N_PRINT))
    wrinkles = tuple(_wrinkle_tile(rng) for _ in range(N_WRINKLE))
    # Sensor noise: mostly shared by the three channels (luma), a little per channel (chroma).
    luma = rng.standard_normal((NOISE, NOISE, 1), dtype=np.float32)
    chroma = rng.standard_normal((NOISE, NOISE, 3), dtype=np.float32)
    noise = np.clip(128 + NOISE_SIGMA * (0.85 * luma + 0.35 * chroma), 0, 255).astype(np.uint8)
    return TextureBank(prints, wrinkles, Image.fromarray(noise, mode="RGB"))


def hsv(h: float, s: float, v: float) -> tuple[int, int, int]:
    """An RGB tuple (0–255) from HSV in [0, 1]."""
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))
    return int(r * 255), int(g * 255), int(b * 255)


def product_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    """A packaging colour: vivid brand colours, pastels, and plenty of white, black and kraft brown."""
    u = rng.random()
    if u < 0.15:
        return hsv(0, 0, rng.uniform(0.85, 0.97))  # white
    if u < 0.25:
        return hsv(0, 0, rng.uniform(0.08, 0.25))  # black
    if u < 0.35:
        return hsv(rng.uniform(0.07, 0.1), rng.uniform(0.35, 0.55), rng.uniform(0.55, 0.75))  # kraft
    return hsv(rng.random(), rng.uniform(0.25, 0.95), rng.uniform(0.3, 0.95))


def scale_colour(c: tuple[int, int, int], f: float) -> tuple[int, int, int]:
    """``c`` made brighter (f > 1) or darker (f < 1)."""
    return tuple(min(255, max(0, int(v * f))) for v in c)  # type: ignore[return-value]
