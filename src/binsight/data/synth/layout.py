"""Where each unit goes: positions with overlap between items but no item hidden beyond ``min_visible``.

Visibility is checked on a coarse grid (one cell per ``CELL`` pixels): items are painted back to front
(an item lower in the picture stands nearer the camera) and the front lip last; the cells an item still
owns, over the cells of its silhouette, is its visible fraction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from binsight.data.synth.scene import BinGeometry

CELL = 6
TRIES = 24
SHRINKS = 4


@dataclass
class Unit:
    """One unit of one SKU: its posed sprite, its coarse silhouette, and (once placed) its position."""

    sprite: Image.Image  # RGBA, posed (rotated, scaled)
    mask: np.ndarray  # bool, coarse silhouette, shape (ceil(h/CELL), ceil(w/CELL))
    sku: int
    x: int = 0
    y: int = 0

    @property
    def bottom(self) -> int:
        return self.y + self.sprite.height


def pose(sprite: Image.Image, angle: float, scale: float) -> Image.Image:
    """The sprite scaled by ``scale`` and rotated by ``angle`` degrees, in one resampling (canvas grown to fit)."""
    if abs(angle) <= 0.5 and abs(scale - 1.0) <= 1e-3:
        return sprite
    w, h = sprite.size
    a = np.deg2rad(angle)
    c, s = np.cos(a) * scale, np.sin(a) * scale
    # Corners of the scaled, rotated sprite (y down, counter-clockwise like Image.rotate) give the new size.
    xs = np.array([0, w, w, 0]) * c + np.array([0, 0, h, h]) * s
    ys = -np.array([0, w, w, 0]) * s + np.array([0, 0, h, h]) * c
    nw, nh = max(4, int(np.ceil(xs.max() - xs.min()))), max(4, int(np.ceil(ys.max() - ys.min())))
    # Inverse map: output pixel (u, v) -> input (x, y), through the centres of both canvases.
    det = c * c + s * s
    ia, ib, id_ = c / det, -s / det, c / det
    ic = s / det
    cx, cy = nw / 2, nh / 2
    data = (ia, ib, w / 2 - ia * cx - ib * cy, ic, id_, h / 2 - ic * cx - id_ * cy)
    return sprite.transform((nw, nh), Image.AFFINE, data, resample=Image.BILINEAR)


def coarse_mask(sprite: Image.Image) -> np.ndarray:
    """The silhouette of a sprite on the coarse grid."""
    gw, gh = -(-sprite.width // CELL), -(-sprite.height // CELL)
    alpha = sprite.getchannel("A").resize((gw, gh), Image.BILINEAR)
    mask = np.asarray(alpha) > 100
    if not mask.any():  # pragma: no cover - a sprite is never empty; keep at least one cell
        mask[gh // 2, gw // 2] = True
    return mask


def visible_fractions(units: list[Unit], geo: BinGeometry) -> np.ndarray:
    """Fraction of each unit's silhouette left uncovered by units in front of it, the lip and the frame."""
    gh, gw = -(-geo.h // CELL), -(-geo.w // CELL)
    grid = np.full((gh, gw), -1, dtype=np.int32)
    order = sorted(range(len(units)), key=lambda i: (units[i].bottom, i))
    for i in order:
        u = units[i]
        gx, gy = u.x // CELL, u.y // CELL
        mh, mw = u.mask.shape
        x0, y0, x1, y1 = max(gx, 0), max(gy, 0), min(gx + mw, gw), min(gy + mh, gh)
        if x0 >= x1 or y0 >= y1:
            continue
        sub = u.mask[y0 - gy : y1 - gy, x0 - gx : x1 - gx]
        region = grid[y0:y1, x0:x1]
        region[sub] = i
    grid[(geo.lip_y + CELL // 2) // CELL :, :] = -1  # the front lip hides what is behind it
    owned = np.bincount(grid[grid >= 0].ravel(), minlength=len(units))[: len(units)]
    areas = np.array([u.mask.sum() for u in units], dtype=np.float64)
    return owned / np.maximum(areas, 1)


def _candidate(rng: np.random.Generator, unit: Unit, geo: BinGeometry, near: Unit | None) -> tuple[int, int]:
    """A position for ``unit``: next to ``near`` (a unit of the same SKU) or anywhere in the opening."""
    pw, ph = unit.sprite.size
    bx0, _, bx1, _ = geo.back
    if near is not None:
        step = near.sprite.width * rng.uniform(0.65, 1.05) * (1 if rng.random() < 0.5 else -1)
        x = near.x + step + rng.normal(0, 0.03 * geo.w)
        bottom = near.bottom + rng.normal(0, 0.03 * geo.h)
    else:
        x = rng.uniform(bx0 * 0.5 - 0.1 * pw, geo.w - (geo.w - bx1) * 0.5 - 0.9 * pw)
        if rng.random() < 0.65:  # standing on the floor, often partly behind the front lip
            bottom = rng.uniform(geo.floor_y + 0.3 * (geo.lip_y - geo.floor_y), geo.lip_y + 0.12 * ph)
        else:  # leaning on the back wall or lying on other items
            bottom = rng.uniform(min(geo.top + 0.95 * ph, geo.lip_y), geo.lip_y)
    return int(x), int(bottom - ph)


def place_units(
    rng: np.random.Generator, units: list[Unit], geo: BinGeometry, min_visible: float, grouped: set[int]
) -> list[Unit]:
    """Place every unit in turn; each keeps at least ``min_visible`` of itself in view when possible.

    A unit that finds no good spot in ``TRIES`` draws is shrunk and tried again; after ``SHRINKS`` rounds it
    takes the best spot seen. Every unit is always placed, so the picture holds exactly ``len(units)`` items.

    Returns:
        The units in drawing order (back to front).
    """
    placed: list[Unit] = []
    for unit in units:
        near = next((p for p in reversed(placed) if p.sku == unit.sku), None) if unit.sku in grouped else None
        best: tuple[float, int, int, Image.Image, np.ndarray] | None = None
        for shrink in range(SHRINKS + 1):
            for _ in range(TRIES):
                unit.x, unit.y = _candidate(rng, unit, geo, near if rng.random() < 0.8 else None)
                score = float(visible_fractions(placed + [unit], geo).min())
                if best is None or score > best[0]:
                    best = (score, unit.x, unit.y, unit.sprite, unit.mask)
                if score >= min_visible:
                    break
            else:
                if shrink < SHRINKS:
                    unit.sprite = pose(unit.sprite, 0.0, 0.85)
                    unit.mask = coarse_mask(unit.sprite)
                continue
            break
        else:
            assert best is not None
            _, unit.x, unit.y, unit.sprite, unit.mask = best
        placed.append(unit)
    return sorted(placed, key=lambda u: u.bottom)
