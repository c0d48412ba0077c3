"""Builders of tiny datasets with known defects, shared by the reader, split, stats and CLI tests."""

from __future__ import annotations

import csv
import io
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image


def jpeg_bytes(seed: int, size: tuple[int, int] = (48, 40)) -> bytes:
    """A small JPEG whose content (and so its bytes) is unique to ``seed``."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def metadata(quantity: int, skus: list[int] | None = None) -> dict:
    """ABID metadata for a bin of ``quantity`` items split over products with quantities ``skus``."""
    skus = skus if skus is not None else ([quantity - 1, 1] if quantity >= 2 else [quantity])
    data = {}
    for i, q in enumerate(skus):
        asin = f"B00TEST{i:03d}"
        data[asin] = {
            "asin": asin,
            "name": f"product {i}",
            "normalizedName": f"product {i}",
            "quantity": q,
            "height": {"unit": "IN", "value": 1.5},
            "length": {"unit": "IN", "value": 2.0},
            "width": {"unit": "IN", "value": 3.0},
            "weight": {"unit": "pounds", "value": 0.25},
        }
    return {"BIN_FCSKU_DATA": data, "EXPECTED_QUANTITY": quantity}


@dataclass
class Expected:
    """What a reader should find in a built dataset."""

    root: Path
    labels: dict[str, int] = field(default_factory=dict)  # usable id -> label
    problems: dict[str, str] = field(default_factory=dict)  # file name -> problem kind
    duplicates: list[list[str]] = field(default_factory=list)  # ids with identical bytes and label
    conflict: list[str] = field(default_factory=list)  # ids with identical bytes, different labels
    entries: int = 0


# Clean images per class (label 0 is outside the default classes 1-5).
CLASS_SIZES = {0: 2, 1: 7, 2: 5, 3: 3, 4: 4, 5: 4}


def make_abid_dataset(root: Path, class_sizes: dict[int, int] | None = None, defects: bool = True) -> Expected:
    """Write a dataset in ABID layout under ``root``.

    With ``defects``, it also holds a truncated JPEG, a non-image ``.jpg``, an image without metadata, a
    malformed JSON, a bin whose product quantities do not sum to EXPECTED_QUANTITY, a metadata file
    without EXPECTED_QUANTITY, a metadata file without image, a pair of exact duplicates (same label) and
    a pair of identical images with different labels.
    """
    images, metas = root / "bin-images", root / "metadata"
    images.mkdir(parents=True)
    metas.mkdir()
    exp = Expected(root=root)
    seed = 0

    def add(image_id: str, data: bytes | None, meta: dict | str | None) -> None:
        if data is not None:
            (images / f"{image_id}.jpg").write_bytes(data)
            exp.entries += 1
        if isinstance(meta, dict):
            (metas / f"{image_id}.json").write_text(json.dumps(meta))
        elif isinstance(meta, str):
            (metas / f"{image_id}.json").write_text(meta)

    for label, n in sorted((class_sizes or CLASS_SIZES).items()):
        for _ in range(n):
            seed += 1
            image_id = f"{label}{seed:04d}"
            add(image_id, jpeg_bytes(seed), metadata(label))
            exp.labels[image_id] = label
    if not defects:
        return exp

    dup = jpeg_bytes(1000)
    add("dup_a", dup, metadata(2))
    add("dup_b", dup, metadata(2))
    exp.labels.update(dup_a=2, dup_b=2)
    exp.duplicates.append(["dup_a", "dup_b"])
    same = jpeg_bytes(1001)
    add("conflict_a", same, metadata(4))
    add("conflict_b", same, metadata(5))
    exp.labels.update(conflict_a=4, conflict_b=5)
    exp.conflict = ["conflict_a", "conflict_b"]

    good = jpeg_bytes(1002)
    add("truncated", good[: len(good) // 2], metadata(3))
    add("not_a_jpeg", b"this is not an image at all", metadata(1))
    add("no_meta", jpeg_bytes(1003), None)
    add("bad_json", jpeg_bytes(1004), '{"EXPECTED_QUANTITY": 3, ')
    add("bad_sum", jpeg_bytes(1005), metadata(3, skus=[1, 1]))
    add("no_quantity", jpeg_bytes(1006), {"BIN_FCSKU_DATA": {}})
    add("orphan", None, metadata(2))
    exp.entries += 1  # the orphan metadata file is an entry of its own
    exp.problems.update(
        {
            "truncated.jpg": "corrupt_image",
            "not_a_jpeg.jpg": "corrupt_image",
            "no_meta.jpg": "missing_metadata",
            "bad_json.json": "unreadable_metadata",
            "bad_sum.json": "inconsistent_metadata",
            "no_quantity.json": "inconsistent_metadata",
            "orphan.json": "missing_image",
        }
    )
    return exp


def make_labels_csv(root: Path, expected: Expected | None = None) -> Path:
    """Write ``root/labels.csv`` over the images of an ABID dataset at ``root`` (labels from ``expected``),
    with metadata copied next to two images, plus rows with a bad label, a negative label and a missing file."""
    exp = expected or make_abid_dataset(root)
    rows = [(f"bin-images/{image_id}.jpg", str(label)) for image_id, label in sorted(exp.labels.items())]
    # Adjacent metadata: one that agrees, one that disagrees with the CSV label.
    first = sorted(exp.labels)[0]
    shutil.copy(root / "metadata" / f"{first}.json", root / "bin-images" / f"{first}.json")
    other = sorted(exp.labels)[1]
    (root / "bin-images" / f"{other}.json").write_text(json.dumps(metadata(exp.labels[other] + 1)))
    rows += [
        ("bin-images/truncated.jpg", "3"),
        ("bin-images/no_meta.jpg", "many"),
        ("bin-images/bad_sum.jpg", "-1"),
        ("bin-images/does_not_exist.jpg", "2"),
    ]
    path = root / "labels.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "expected_quantity", "note"])
        writer.writerows([(name, label, "x") for name, label in rows])
    return path


def test_builder_writes_the_described_dataset(tmp_path):
    exp = make_abid_dataset(tmp_path / "ds")
    images = sorted(p.stem for p in (tmp_path / "ds" / "bin-images").glob("*.jpg"))
    assert len(images) + 1 == exp.entries
    assert set(exp.labels) <= set(images)
    assert (tmp_path / "ds" / "bin-images" / "dup_a.jpg").read_bytes() == (
        tmp_path / "ds" / "bin-images" / "dup_b.jpg"
    ).read_bytes()
