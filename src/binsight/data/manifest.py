"""Split manifests: ``train.csv``, ``val.csv``, ``test.csv`` with columns ``path,label,sha256,source``.

Paths are stored relative to the manifest's folder when the image lies under it (so a split folder that
carries its images can be moved), else absolute. :func:`read_manifest` always returns absolute paths.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from binsight.errors import DataError

COLUMNS = ["path", "label", "sha256", "source"]
SPLITS = ("train", "val", "test")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class ManifestRow:
    """One image of a split.

    Attributes:
        path: Absolute image path.
        label: The item count.
        sha256: sha256 of the image bytes (the training decode cache and leak checks key on it).
        source: Where the label came from (``abid``, ``labels-csv``, …).
    """

    path: Path
    label: int
    sha256: str
    source: str = ""


def write_manifest(path: Path, rows: Iterable[ManifestRow]) -> Path:
    """Write ``rows`` to the CSV at ``path`` atomically and return ``path``."""
    from binsight.utils.io import atomic_write_text

    path = Path(path)
    folder = path.resolve().parent
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        image = Path(row.path).resolve()
        stored = image.relative_to(folder).as_posix() if image.is_relative_to(folder) else str(image)
        writer.writerow([stored, int(row.label), row.sha256, row.source])
    return atomic_write_text(path, buf.getvalue())


def read_manifest(path: Path) -> list[ManifestRow]:
    """Read a manifest CSV; relative paths are resolved against the manifest's folder.

    Raises:
        DataError: the file is missing, has other columns, or a row has an empty path, a label that is not
            an integer >= 0, or a sha256 that is not 64 hex digits. The message names the line.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"manifest {path} does not exist; create split manifests with `binsight data split`")
    folder = path.resolve().parent
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"manifest {path} cannot be read as UTF-8 text: {exc}") from None
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None or [h.strip() for h in header] != COLUMNS:
        raise DataError(
            f"manifest {path} has header {header}; expected {','.join(COLUMNS)} "
            "(write manifests with `binsight data split`)"
        )
    rows = []
    for line, fields in enumerate(reader, start=2):
        if not fields or all(not f.strip() for f in fields):
            continue
        if len(fields) != len(COLUMNS):
            raise DataError(f"manifest {path} line {line}: expected {len(COLUMNS)} fields, got {len(fields)}")
        raw_path, raw_label, sha, source = (f.strip() for f in fields)
        if not raw_path:
            raise DataError(f"manifest {path} line {line}: empty path")
        if not raw_label.isdigit():
            raise DataError(f"manifest {path} line {line}: label {raw_label!r} is not an integer >= 0")
        if not _SHA256.match(sha):
            raise DataError(f"manifest {path} line {line}: sha256 {sha!r} is not 64 lowercase hex digits")
        image = Path(raw_path)
        rows.append(ManifestRow(image if image.is_absolute() else folder / image, int(raw_label), sha, source))
    return rows


def manifest_hash(rows: Iterable[ManifestRow]) -> str:
    """A stable hex digest of the (sha256, label) pairs of ``rows``.

    It ignores paths and row order, so the same images with the same labels give the same key wherever
    they live; the training decode cache and the artifact's training data hash use it.
    """
    digest = hashlib.sha256()
    for sha, label in sorted((r.sha256, int(r.label)) for r in rows):
        digest.update(f"{sha},{label}\n".encode())
    return digest.hexdigest()


def load_split(split_dir: Path) -> dict[str, list[ManifestRow]]:
    """Read ``train.csv``, ``val.csv`` and ``test.csv`` of a split folder.

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}``.

    Raises:
        DataError: the folder or one of the manifests is missing or malformed.
    """
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        raise DataError(f"split folder {split_dir} does not exist; create it with `binsight data split --out DIR`")
    missing = [f"{name}.csv" for name in SPLITS if not (split_dir / f"{name}.csv").is_file()]
    if missing:
        raise DataError(
            f"split folder {split_dir} lacks {', '.join(missing)}; expected train.csv, val.csv and test.csv "
            "written by `binsight data split`"
        )
    return {name: read_manifest(split_dir / f"{name}.csv") for name in SPLITS}


def is_split_dir(path: Path) -> bool:
    """True when ``path`` is a folder holding a ``train.csv`` manifest."""
    path = Path(path)
    return path.is_dir() and (path / "train.csv").is_file()
