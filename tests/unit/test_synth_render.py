"""SynthBins pictures and metadata: exact counts, ABID schema, sizes, determinism, visibility of items."""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pytest
from PIL import Image

from binsight.config.loader import ConfigError, from_dict
from binsight.config.schemas import SynthConfig
from binsight.data.synth import image_rng, render_bin, render_sample
from binsight.data.synth.layout import CELL, Unit, place_units, visible_fractions
from binsight.data.synth.metadata import make_skus, normalized_name, split_quantity
from binsight.data.synth.scene import BinGeometry

SMALL = SynthConfig(width_min=72, width_max=96, jpeg_quality_min=60, jpeg_quality_max=90)
ASIN = re.compile(r"^B0[0-9A-Z]{8}$")
SKU_KEYS = ["asin", "height", "length", "name", "normalizedName", "quantity", "weight", "width"]


@pytest.mark.parametrize("count", [0, 1, 2, 3, 5, 8, 11])
def test_render_bin_holds_exactly_count_items_with_abid_metadata(count):
    for index in range(3):
        img, meta = render_bin(image_rng(0, index), count, SMALL, image_fname="00042.jpg")
        assert img.mode == "RGB"
        assert SMALL.width_min <= img.width <= SMALL.width_max
        assert SMALL.aspect_min - 0.02 <= img.height / img.width <= SMALL.aspect_max + 0.02
        assert list(meta) == ["BIN_FCSKU_DATA", "EXPECTED_QUANTITY", "image_fname"]
        assert meta["EXPECTED_QUANTITY"] == count and meta["image_fname"] == "00042.jpg"
        skus = meta["BIN_FCSKU_DATA"]
        assert sum(s["quantity"] for s in skus.values()) == count
        assert len(skus) <= 3 and (len(skus) >= 1) == (count > 0)
        for asin, sku in skus.items():
            assert ASIN.match(asin) and sku["asin"] == asin
            assert list(sku) == SKU_KEYS and sku["quantity"] >= 1
            for dim in ("height", "length", "width"):
                assert sku[dim]["unit"] == "IN" and sku[dim]["value"] > 0
            assert sku["weight"]["unit"] == "pounds" and sku["weight"]["value"] > 0


def test_render_sample_is_deterministic_and_differs_between_images():
    a = render_sample(SMALL, 5, 3, 5)
    assert a == render_sample(SMALL, 5, 3, 5)
    assert a[0] != render_sample(SMALL, 6, 3, 5)[0]
    jpg, meta = a
    assert Image.open(io.BytesIO(jpg)).format == "JPEG"
    assert json.loads(meta)["image_fname"] == "00006.jpg"


def test_items_change_the_picture():
    """The same bin with and without items must differ where the items are (they are really drawn)."""
    empty, _ = render_bin(image_rng(1, 0), 0, SMALL)
    full, _ = render_bin(image_rng(1, 0), 4, SMALL)
    assert empty.size == full.size  # size is drawn before the items
    diff = np.abs(np.asarray(empty, np.int16) - np.asarray(full, np.int16)).max(axis=2)
    assert (diff > 40).mean() > 0.05


def test_split_quantity_makes_one_to_three_positive_parts():
    rng = np.random.default_rng(0)
    seen = set()
    for count in [1, 2, 3, 5, 9]:
        for _ in range(30):
            parts = split_quantity(rng, count)
            assert sum(parts) == count and all(q >= 1 for q in parts) and 1 <= len(parts) <= min(3, count)
            seen.add(len(parts))
    assert seen == {1, 2, 3}
    assert split_quantity(rng, 0) == []
    for _ in range(20):
        skus = make_skus(rng, 5)
        assert len({s.asin for s in skus}) == len(skus) and sum(s.quantity for s in skus) == 5


def test_normalized_name_moves_pack_size_to_the_front():
    assert normalized_name("Fleet Saline Enema, 7.8 Ounce (Pack of 3)") == "(Pack of 3) Fleet Saline Enema, 7.8 Ounce"
    assert normalized_name("I Spy: A Book of Picture Riddles") == "I Spy: A Book of Picture Riddles"


def _unit(x: int, y: int, w: int, h: int, sku: int = 0) -> Unit:
    sprite = Image.new("RGBA", (w, h), (255, 0, 0, 255))
    return Unit(sprite, np.ones((-(-h // CELL), -(-w // CELL)), bool), sku, x, y)


GEO = BinGeometry(w=120, h=120, top=0, lip_y=120, back=(10, 0, 110, 90), floor_y=90)


def test_visible_fractions_counts_what_front_items_hide():
    back = _unit(0, 0, 60, 60)  # bottom 60: further back
    front = _unit(30, 30, 60, 60)  # bottom 90: in front, covers a quarter of `back`
    vis = visible_fractions([back, front], GEO)
    assert vis[1] == pytest.approx(1.0)
    assert vis[0] == pytest.approx(0.75)
    hidden = _unit(0, 0, 30, 30)
    cover = _unit(0, 0, 60, 60)
    cover.y = 1  # same box, lower bottom edge: stands in front
    assert visible_fractions([hidden, cover], GEO)[0] == 0.0


def test_place_units_keeps_every_item_mostly_visible():
    rng = np.random.default_rng(0)
    units = [_unit(0, 0, 36, 36, sku=i % 2) for i in range(5)]
    placed = place_units(rng, units, GEO, 0.5, grouped={0})
    assert len(placed) == 5
    assert visible_fractions(placed, GEO).min() >= 0.5
    assert [u.bottom for u in placed] == sorted(u.bottom for u in placed)


def test_config_validation_names_the_key():
    with pytest.raises(ConfigError, match="min_visible"):
        from_dict(SynthConfig, {"min_visible": 1.5})
    with pytest.raises(ConfigError, match="width_min"):
        from_dict(SynthConfig, {"width_min": 600, "width_max": 500})
    with pytest.raises(ConfigError, match="straps_max"):
        from_dict(SynthConfig, {"straps_max": 4})
