"""ABID-style product metadata: ASINs, product names, dimensions, weights and the per-image JSON document."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

KINDS = ("box", "bag", "bottle", "book")
KIND_P = (0.4, 0.25, 0.15, 0.2)

_ASIN_CHARS = np.array(list("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"))

_BRANDS = [
    "Amazon Basics", "Hamilton Beach", "Spring Valley", "Kingway", "Nature's Way", "Coleman", "Anker", "Rubbermaid",
    "Sterilite", "Crayola", "Hasbro", "Melissa & Doug", "Oral-B", "Neutrogena", "Scotch", "Sharpie", "Burt's Bees",
    "NOW Foods", "Glad", "Ziploc", "Lodge", "OXO", "Pyrex", "Energizer", "Duracell", "Fellowes", "Avery", "Hanes",
    "Carhartt", "Fruit of the Loom", "Bose", "Logitech", "JBL", "Nerf", "LEGO", "Mattel", "Dove", "Olay",
]  # fmt: skip
_NOUNS = {
    "box": [
        "Wireless Mouse", "Toner Cartridge", "Board Game", "Bluetooth Speaker", "LED Desk Lamp", "Phone Case",
        "USB-C Charger", "Building Set", "Puzzle, 1000 Pieces", "Electric Toothbrush Heads", "Coffee Filters",
        "Tea Assortment", "Screwdriver Set", "Kitchen Scale", "HDMI Cable, 6 ft", "Face Cream",
    ],
    "bag": [
        "Crew Socks", "Cotton T-Shirt", "Fleece Throw Blanket", "Organic Neem Leaf Powder - 1 Lb.", "Trail Mix",
        "Yoga Mat Strap", "Microfiber Cleaning Cloths", "Zipper Storage Bags", "Dog Treats", "Beanie Hat",
        "Rice Flour", "Work Gloves", "Baby Bibs", "Cable Ties, 100 Count",
    ],
    "bottle": [
        "Fish Oil Softgels, 120 Count", "Shampoo, 12 fl oz", "Hand Sanitizer, 8 oz", "Vitamin D3 Gummies",
        "Saline Nasal Spray", "Olive Oil, 16.9 oz", "Body Lotion", "Dish Soap", "Multivitamin Tablets",
        "Fenugreek 610 mg, 100 Capsules", "Coconut Water", "Glass Cleaner",
    ],
    "book": [
        "A Book of Picture Riddles", "Collected Stories", "The Art of Cooking", "Field Guide to Birds",
        "Paperback Notebook, College Ruled", "Sketchbook, 9 x 12 in", "A Novel", "Coloring Book for Adults",
        "Spiral Planner 2017", "Manila Envelopes", "Poly Mailers, 10 x 13", "Greeting Card Set",
    ],
}  # fmt: skip
_COLOURS = ["Black", "White", "Blue", "Red", "Grey", "Green", "Pink", "Clear", "Assorted"]

# Physical size ranges in inches: (longest side, middle side, thinnest side) as fractions/ranges per kind.
_DIM_RANGES = {
    "box": ((3.0, 14.0), (2.0, 10.0), (1.0, 6.0)),
    "bag": ((5.0, 16.0), (4.0, 12.0), (0.5, 4.0)),
    "bottle": ((4.0, 11.0), (1.5, 4.0), (1.5, 4.0)),
    "book": ((6.0, 12.5), (4.5, 9.5), (0.2, 1.6)),
}
_DENSITY = {"box": 0.018, "bag": 0.012, "bottle": 0.035, "book": 0.025}  # pounds per cubic inch, rough


@dataclass
class Sku:
    """One product in a bin: what it is, how many units, its physical size (inches) and its weight (pounds)."""

    asin: str
    kind: str
    name: str
    quantity: int
    dims: tuple[float, float, float]  # length, width, height in inches
    weight: float


def make_asin(rng: np.random.Generator) -> str:
    """A 10-character ASIN in the ``B0`` + 8 alphanumerics form of current Amazon ASINs."""
    return "B0" + "".join(rng.choice(_ASIN_CHARS, size=8))


def make_name(rng: np.random.Generator, kind: str) -> str:
    """A plausible product title; some carry ``(Pack of N)`` like many ABID titles."""
    brand = _BRANDS[rng.integers(len(_BRANDS))]
    noun = _NOUNS[kind][rng.integers(len(_NOUNS[kind]))]
    name = f"{brand} {noun}"
    if rng.random() < 0.3:
        name += f", {_COLOURS[rng.integers(len(_COLOURS))]}"
    if rng.random() < 0.25:
        name += f" (Pack of {int(rng.choice([2, 3, 4, 6, 12]))})"
    return name


def normalized_name(name: str) -> str:
    """ABID's ``normalizedName``: a trailing ``(Pack of N)`` moves to the front; otherwise the name as is."""
    if name.endswith(")") and "(Pack of " in name:
        head, pack = name.rsplit(" (Pack of ", 1)
        return f"(Pack of {pack} {head}"
    return name


def split_quantity(rng: np.random.Generator, count: int) -> list[int]:
    """Split ``count`` units into 1–3 SKUs with positive quantities (several units of one SKU, as in ABID)."""
    if count == 0:
        return []
    k = int(rng.integers(1, min(3, count) + 1))
    # A random composition of `count` into k positive parts: choose k-1 distinct cut points.
    cuts = np.sort(rng.choice(np.arange(1, count), size=k - 1, replace=False)) if k > 1 else np.zeros(0, int)
    edges = np.concatenate([[0], cuts, [count]])
    return [int(q) for q in np.diff(edges)]


def make_skus(rng: np.random.Generator, count: int) -> list[Sku]:
    """Draw the SKUs of a bin holding ``count`` units in total."""
    skus: list[Sku] = []
    asins: set[str] = set()
    for quantity in split_quantity(rng, count):
        kind = KINDS[int(rng.choice(len(KINDS), p=KIND_P))]
        asin = make_asin(rng)
        while asin in asins:  # pragma: no cover - 36**8 ids; a clash is astronomically rare
            asin = make_asin(rng)
        asins.add(asin)
        dims = tuple(round(float(rng.uniform(lo, hi)), 2) for lo, hi in _DIM_RANGES[kind])
        if kind == "bottle":
            dims = (dims[0], dims[1], dims[1])  # round bottles: width == height
        weight = round(float(np.prod(dims) * _DENSITY[kind] * rng.uniform(0.6, 1.4)), 3)
        skus.append(Sku(asin, kind, make_name(rng, kind), quantity, dims, max(weight, 0.05)))  # type: ignore[arg-type]
    return skus


def metadata_document(skus: list[Sku], image_fname: str) -> dict:
    """The metadata JSON of one image, keys in the order of the public ``aft-vbi-pds`` files."""
    data = {}
    for sku in sorted(skus, key=lambda s: s.asin):
        length, width, height = sku.dims
        data[sku.asin] = {
            "asin": sku.asin,
            "height": {"unit": "IN", "value": height},
            "length": {"unit": "IN", "value": length},
            "name": sku.name,
            "normalizedName": normalized_name(sku.name),
            "quantity": sku.quantity,
            "weight": {"unit": "pounds", "value": sku.weight},
            "width": {"unit": "IN", "value": width},
        }
    return {
        "BIN_FCSKU_DATA": data,
        "EXPECTED_QUANTITY": sum(s.quantity for s in skus),
        "image_fname": image_fname,
    }


def metadata_bytes(doc: dict) -> bytes:
    """Serialized metadata, indented by 4 like the public bucket's files."""
    return (json.dumps(doc, indent=4) + "\n").encode("utf-8")
