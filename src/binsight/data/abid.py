"""Read a dataset in ABID layout or a labels CSV into records, reporting every file that cannot be used.

Two inputs are accepted wherever a dataset is expected:

- a **dataset root** in ABID layout: ``<root>/bin-images/<id>.jpg`` and ``<root>/metadata/<id>.json``
  (the label is the metadata's ``EXPECTED_QUANTITY``);
- a **labels CSV** with columns ``file,expected_quantity[,...]`` where ``file`` is relative to the CSV's
  folder (like ``abid-sample/labels.csv``). A metadata JSON next to an image (``<same-stem>.json``) is read
  when present. A folder without ``bin-images/`` but with a ``labels.csv`` is read as that CSV.

Nothing is dropped silently: every image or metadata file that is skipped becomes a :class:`Problem`, and
:meth:`Scan.write_report` writes them all to ``problems.csv``. Images are fully decoded (at reduced scale
for JPEG, which still reads every byte of the entropy-coded data) in a thread pool, so a truncated or
corrupt file is caught here rather than in the middle of training.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from binsight.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
PROBLEM_KINDS = (
    "missing_metadata",
    "missing_image",
    "unreadable_metadata",
    "inconsistent_metadata",
    "corrupt_image",
    "bad_label",
)
SOURCE_ABID = "abid"
SOURCE_LABELS_CSV = "labels-csv"

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class Record:
    """One usable, labelled image.

    Attributes:
        id: The image's id (file stem for ABID layout, the CSV's ``file`` value for a labels CSV).
        image_path: Absolute path of the image.
        expected_quantity: The label: the number of items in the bin.
        sku_count: Number of distinct products in the bin from the metadata, ``None`` without metadata.
        items: Products from the metadata: ``asin``, ``name``, ``quantity``, ``dimensions``
            (``length``/``width``/``height`` as ``{"unit", "value"}``) and ``weight``.
        source: Where the label came from: ``"abid"`` or ``"labels-csv"``.
        width: Image width in pixels (``None`` when images were not checked).
        height: Image height in pixels (``None`` when images were not checked).
        sha256: sha256 of the file bytes (``None`` when images were not checked).
    """

    id: str
    image_path: Path
    expected_quantity: int
    sku_count: int | None = None
    items: list[dict[str, Any]] = field(default_factory=list)
    source: str = SOURCE_ABID
    width: int | None = None
    height: int | None = None
    sha256: str | None = None


@dataclass
class Problem:
    """A file that could not be used as it is.

    Attributes:
        path: The file at fault (image, metadata JSON or labels CSV).
        kind: One of :data:`PROBLEM_KINDS`.
        detail: What exactly was wrong.
        skipped: True when the image was left out of the records because of it; False when the record was
            kept (e.g. a labels-CSV row whose optional metadata disagrees: the CSV label wins).
    """

    path: Path
    kind: str
    detail: str
    skipped: bool = True


@dataclass
class Scan:
    """What :func:`read_dataset` found: usable records and the problems of everything else."""

    src: Path
    kind: str
    records: list[Record] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    entries: int = 0

    @property
    def skipped(self) -> list[Problem]:
        """Problems that cost an image its place in the records."""
        return [p for p in self.problems if p.skipped]

    def problem_counts(self) -> dict[str, int]:
        """Number of problems per kind (every kind listed, zeros included)."""
        counts = dict.fromkeys(PROBLEM_KINDS, 0)
        for p in self.problems:
            counts[p.kind] = counts.get(p.kind, 0) + 1
        return counts

    def write_report(self, folder: Path, fmt: str = "csv") -> Path:
        """Write every problem to ``folder/problems.csv`` (or ``problems.json``) and return its path.

        The file is written even when there are no problems, so its absence never means "all fine".
        """
        from binsight.utils.io import atomic_write_json, atomic_write_text

        rows = [
            {"path": str(p.path), "kind": p.kind, "detail": p.detail, "skipped": str(p.skipped).lower()}
            for p in self.problems
        ]
        if fmt == "json":
            return atomic_write_json(Path(folder) / "problems.json", rows)
        if fmt != "csv":
            raise ValueError(f"unknown report format {fmt!r}; expected 'csv' or 'json'")
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=["path", "kind", "detail", "skipped"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return atomic_write_text(Path(folder) / "problems.csv", buf.getvalue())


def default_workers() -> int:
    """Threads for decoding and hashing: PIL and hashlib release the GIL, so a few per core pay off."""
    return min(16, (os.cpu_count() or 1) * 2)


def threaded_map(
    fn: Callable[[T], R], items: list[T], *, workers: int, desc: str, show_progress: bool = True
) -> Iterator[tuple[T, R | Exception]]:
    """Yield ``(item, fn(item))`` in order, computed in a thread pool; an exception is yielded, not raised.

    On interruption (Ctrl-C) the queued work is cancelled instead of being finished first.
    """
    from binsight.utils.progress import progress

    def call(item: T) -> tuple[T, R | Exception]:
        try:
            return item, fn(item)
        except Exception as exc:  # the caller decides what a failure means for its item
            return item, exc

    pool = ThreadPoolExecutor(max_workers=max(1, workers))
    try:
        results = pool.map(call, items)
        if show_progress:
            results = progress(results, total=len(items), desc=desc, unit="img")
        yield from results
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def read_dataset(src: Path, *, check_images: bool = True, show_progress: bool = True, workers: int = 0) -> Scan:
    """Read a dataset root (ABID layout) or a labels CSV into records and problems.

    Args:
        src: Dataset root with ``bin-images/`` and ``metadata/``, a labels CSV, or a folder holding
            ``labels.csv``.
        check_images: Decode every image (and hash its bytes); corrupt ones become problems. Without it,
            images are only checked to exist.
        show_progress: Show a progress bar while images are checked.
        workers: Threads for the image check; 0 picks :func:`default_workers`.

    Returns:
        The :class:`Scan`: records sorted by image path, problems in the order found.

    Raises:
        DataError: ``src`` does not exist or is neither layout, or the labels CSV lacks required columns.
    """
    src = Path(src).expanduser()
    if not src.exists():
        raise DataError(f"dataset {src} does not exist; pass a dataset root (bin-images/ + metadata/) or a labels CSV")
    if src.is_dir() and not (src / "bin-images").is_dir() and (src / "labels.csv").is_file():
        src = src / "labels.csv"
    if src.is_file():
        scan = _read_labels_csv(src)
    elif (src / "bin-images").is_dir():
        scan = _read_abid_root(src)
    else:
        raise DataError(
            f"{src} is not a dataset: expected a folder with bin-images/*.jpg and metadata/*.json (ABID layout), "
            "or a labels CSV with columns file,expected_quantity"
        )
    if check_images:
        _check_images(scan, show_progress=show_progress, workers=workers or default_workers())
    scan.records.sort(key=lambda r: str(r.image_path))
    return scan


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def _read_abid_root(root: Path) -> Scan:
    # ABID layout: the metadata is the only label source, so a record whose metadata is missing, unreadable
    # or inconsistent is skipped (and reported): a doubtful label is worse than one image fewer.
    scan = Scan(src=root.resolve(), kind=SOURCE_ABID)
    images = sorted(p for p in (root / "bin-images").iterdir() if p.is_file() and is_image(p))
    meta_dir = root / "metadata"
    metas = sorted(meta_dir.glob("*.json")) if meta_dir.is_dir() else []
    image_stems = {p.stem for p in images}
    scan.entries = len(images)
    for image in images:
        meta_path = meta_dir / f"{image.stem}.json"
        if not meta_path.is_file():
            scan.problems.append(Problem(image.resolve(), "missing_metadata", f"no metadata file {meta_path}"))
            continue
        meta, problem = parse_metadata(meta_path)
        if problem:
            scan.problems.append(problem)
            continue
        scan.records.append(
            Record(
                id=image.stem,
                image_path=image.resolve(),
                expected_quantity=meta["expected_quantity"],
                sku_count=meta["sku_count"],
                items=meta["items"],
                source=SOURCE_ABID,
            )
        )
    for meta_path in metas:
        if meta_path.stem not in image_stems:
            scan.entries += 1
            scan.problems.append(
                Problem(meta_path.resolve(), "missing_image", f"no image bin-images/{meta_path.stem}.jpg")
            )
    return scan


def _read_labels_csv(path: Path) -> Scan:
    # A labels CSV states the label explicitly, so it wins over optional adjacent metadata: a disagreeing or
    # unreadable metadata file is reported but the record is kept (without items when unreadable).
    scan = Scan(src=path.resolve(), kind=SOURCE_LABELS_CSV)
    base = path.resolve().parent
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            columns = [c.strip() for c in (reader.fieldnames or [])]
            if "file" not in columns or "expected_quantity" not in columns:
                raise DataError(
                    f"labels CSV {path} has columns {columns}; expected at least file,expected_quantity "
                    "(file relative to the CSV's folder)"
                )
            rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
    except UnicodeDecodeError as exc:
        raise DataError(f"labels CSV {path} is not UTF-8 text ({exc}); expected a CSV file") from None
    except csv.Error as exc:
        raise DataError(f"labels CSV {path} is malformed: {exc}") from None
    scan.entries = len(rows)
    for line, row in enumerate(rows, start=2):
        name = row.get("file", "")
        image = (base / name).resolve() if name else base
        label = _parse_count(row.get("expected_quantity", ""))
        if not name:
            scan.problems.append(Problem(path.resolve(), "bad_label", f"line {line}: empty file column"))
            continue
        if label is None:
            detail = f"line {line}: expected_quantity {row.get('expected_quantity', '')!r} is not an integer >= 0"
            scan.problems.append(Problem(image, "bad_label", detail))
            continue
        if not image.is_file():
            scan.problems.append(Problem(image, "missing_image", f"line {line}: file {name} does not exist"))
            continue
        record = Record(id=name, image_path=image, expected_quantity=label, source=SOURCE_LABELS_CSV)
        meta_path = image.with_suffix(".json")
        if meta_path.is_file():
            meta, problem = parse_metadata(meta_path)
            if problem:
                problem.skipped = False
                scan.problems.append(problem)
            else:
                record.sku_count, record.items = meta["sku_count"], meta["items"]
                if meta["expected_quantity"] != label:
                    detail = f"EXPECTED_QUANTITY {meta['expected_quantity']} != CSV label {label}; kept the CSV label"
                    scan.problems.append(Problem(meta_path.resolve(), "inconsistent_metadata", detail, skipped=False))
        scan.records.append(record)
    return scan


def _parse_count(value: Any) -> int | None:
    """An item count from JSON or CSV text: an integer >= 0 (``3`` or ``"3"``), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def parse_metadata(path: Path) -> tuple[dict[str, Any] | None, Problem | None]:
    """Read and check one ABID metadata JSON.

    Returns:
        ``({"expected_quantity", "sku_count", "items"}, None)`` when the file is usable, else
        ``(None, Problem)`` with kind ``unreadable_metadata`` (not JSON, not an object) or
        ``inconsistent_metadata`` (``EXPECTED_QUANTITY`` missing, not an integer, negative, or not the
        sum of the ``BIN_FCSKU_DATA`` quantities).
    """
    where = path.resolve()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, Problem(where, "unreadable_metadata", f"not valid JSON: {exc}")
    if not isinstance(data, dict):
        return None, Problem(where, "unreadable_metadata", f"expected a JSON object, got {type(data).__name__}")
    if "EXPECTED_QUANTITY" not in data:
        return None, Problem(where, "inconsistent_metadata", "EXPECTED_QUANTITY is missing")
    expected = _parse_count(data["EXPECTED_QUANTITY"]) if not isinstance(data["EXPECTED_QUANTITY"], str) else None
    if expected is None:
        detail = f"EXPECTED_QUANTITY {data['EXPECTED_QUANTITY']!r} is not an integer >= 0"
        return None, Problem(where, "inconsistent_metadata", detail)
    skus = data.get("BIN_FCSKU_DATA")
    if skus is None:
        return {"expected_quantity": expected, "sku_count": None, "items": []}, None
    if not isinstance(skus, dict) or not all(isinstance(v, dict) for v in skus.values()):
        return None, Problem(where, "inconsistent_metadata", "BIN_FCSKU_DATA is not a mapping of products")
    items = []
    for asin, sku in skus.items():
        quantity = _parse_count(sku.get("quantity"))
        if quantity is None:
            detail = f"product {asin}: quantity {sku.get('quantity')!r} is not an integer >= 0"
            return None, Problem(where, "inconsistent_metadata", detail)
        items.append(
            {
                "asin": sku.get("asin", asin),
                "name": sku.get("name"),
                "quantity": quantity,
                "dimensions": {k: sku.get(k) for k in ("length", "width", "height")},
                "weight": sku.get("weight"),
            }
        )
    total = sum(item["quantity"] for item in items)
    if total != expected:
        detail = f"BIN_FCSKU_DATA quantities sum to {total} but EXPECTED_QUANTITY is {expected}"
        return None, Problem(where, "inconsistent_metadata", detail)
    return {"expected_quantity": expected, "sku_count": len(items), "items": items}, None


def inspect_image(path: Path) -> tuple[int, int, str]:
    """Decode ``path`` fully (JPEG at reduced scale) and return ``(width, height, sha256 of the bytes)``.

    Raises:
        OSError, ValueError, SyntaxError...: whatever PIL raises for a corrupt or truncated file.
    """
    from PIL import Image

    data = Path(path).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    with Image.open(io.BytesIO(data)) as im:
        width, height = im.size
        # draft() makes the JPEG decoder scale by 1/8 in the DCT: ~10x faster, yet it still consumes the
        # whole entropy-coded stream, so truncation is detected as with a full decode.
        im.draft("RGB", (max(1, width // 8), max(1, height // 8)))
        im.load()
    return width, height, digest


def _check_images(scan: Scan, *, show_progress: bool, workers: int) -> None:
    kept = []
    results = threaded_map(
        lambda r: inspect_image(r.image_path),
        scan.records,
        workers=workers,
        desc="check images",
        show_progress=show_progress,
    )
    for record, result in results:
        if isinstance(result, Exception):
            detail = f"cannot decode: {type(result).__name__}: {result}"
            scan.problems.append(Problem(record.image_path, "corrupt_image", detail))
            continue
        record.width, record.height, record.sha256 = result
        kept.append(record)
    scan.records = kept
