"""Read the list of ABID image ids to download, and map an id to its two S3 object keys.

Three list formats are accepted:

* the Udacity ``file_list.json``: ``{"1": ["metadata/00001.json", ...], "2": [...]}`` (keys are class labels,
  entries name metadata JSONs or bin-image JPGs),
* a JSON list of ids or paths: ``["00001", 523, "bin-images/00007.jpg"]``,
* plain text, one id or path per line (blank lines and ``#`` comments ignored).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

from binsight.errors import DataError

_DIGITS = re.compile(r"^\d+$")
_EXTENSIONS = (".jpg", ".jpeg", ".json")
FORMATS_HINT = (
    'expected a Udacity file_list.json ({"1": ["metadata/00001.json", ...]}), a JSON list of ids, '
    "or a text file with one id per line (e.g. 00001 or 523)"
)


def normalize_id(raw: str | int) -> str:
    """Turn ``523``, ``"00523"``, ``"metadata/00523.json"`` or ``"bin-images/00523.jpg"`` into ``"00523"``.

    ABID keys are zero-padded to five digits (``00001.jpg``) and unpadded above that (``100000.jpg``).

    Raises:
        ValueError: when the entry does not name a numeric image id.
    """
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        raise ValueError(f"expected an id string or number, got {type(raw).__name__}")
    name = str(raw).strip().replace("\\", "/").rsplit("/", 1)[-1]
    lower = name.lower()
    for ext in _EXTENSIONS:
        if lower.endswith(ext):
            name = name[: -len(ext)]
            break
    if not _DIGITS.match(name):
        raise ValueError(f"{str(raw)!r} does not name a numeric image id like 00001 or 523")
    return f"{int(name):05d}"


def object_keys(image_id: str) -> tuple[str, str]:
    """The image and metadata keys of ``image_id`` in the bucket (and paths under the dataset root)."""
    return f"bin-images/{image_id}.jpg", f"metadata/{image_id}.json"


def read_id_list(path: str | Path) -> list[str]:
    """Read a file list (any of the three formats) and return normalized, de-duplicated ids in order.

    Raises:
        DataError: when the file is missing, unreadable, malformed, names a non-numeric id, or names none.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"file list {path} does not exist: {FORMATS_HINT}") from None
    except IsADirectoryError:
        raise DataError(f"file list {path} is a folder, not a file: {FORMATS_HINT}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read file list {path} ({exc}): {FORMATS_HINT}") from None

    if text.lstrip().startswith(("{", "[")) or path.suffix.lower() == ".json":
        entries = _json_entries(text, path)
    else:
        entries = _text_entries(text)

    ids: dict[str, None] = {}
    for where, raw in entries:
        try:
            ids.setdefault(normalize_id(raw), None)
        except ValueError as exc:
            raise DataError(f"file list {path}, {where}: {exc}; {FORMATS_HINT}") from None
    if not ids:
        raise DataError(f"file list {path} names no image ids: {FORMATS_HINT}")
    return list(ids)


def _text_entries(text: str) -> Iterable[tuple[str, str]]:
    for lineno, line in enumerate(text.splitlines(), start=1):
        entry = line.split("#", 1)[0].strip()
        if entry:
            yield f"line {lineno}", entry


def _json_entries(text: str, path: Path) -> list[tuple[str, object]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"file list {path} is not valid JSON ({exc}): {FORMATS_HINT}") from None
    if isinstance(data, list):
        return [(f"entry {i}", item) for i, item in enumerate(data)]
    if isinstance(data, dict):
        entries: list[tuple[str, object]] = []
        for label, items in data.items():
            if not isinstance(items, list):
                raise DataError(
                    f"file list {path}: the value of {label!r} is a {type(items).__name__}, expected a list of "
                    f"paths; {FORMATS_HINT}"
                )
            entries.extend((f"entry {label!r}[{i}]", item) for i, item in enumerate(items))
        return entries
    raise DataError(f"file list {path} holds a JSON {type(data).__name__}: {FORMATS_HINT}")
