"""The decode cache: every image of a manifest decoded and resized once into a uint8 memmap.

Layout under the cache root (``cache_dir``, else ``$BINSIGHT_CACHE_DIR``, else ``~/.cache/binsight/decode``)::

    images/<key>/images.u8     N*H*W*3 bytes, a raw C-order uint8 array (N, H, W, 3)
    images/<key>/labels.npy    (N,) int64 labels as written in the manifest (counts, not class indices)
    images/<key>/meta.json     written last; its presence and fields mark the entry complete
    features/<key>/...         backbone features (see :mod:`binsight.training.features`)
    pretrain/<key>/...         SynthBins starts for ``synth_pretrain`` (see :mod:`binsight.training.synthstart`)

The key is a digest of (manifest hash, input size, resize policy, cache format), so every epoch, run and
tuning trial on the same split and preprocessing shares one entry. An entry is built in a private temp
folder and renamed into place; a crash or a concurrent builder never leaves a half entry that looks
complete, and :func:`open_decode_cache` validates ``meta.json`` against the file sizes before trusting it.

Unreadable images stop the build with a :class:`~binsight.errors.DataError` listing them (they are never
silently skipped: a manifest that lies about its images should be fixed with ``binsight data split``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from binsight.errors import DataError

log = logging.getLogger(__name__)

CACHE_FORMAT = 2  # 2: EXIF orientation applied
IMAGES_FILE = "images.u8"
LABELS_FILE = "labels.npy"
META_FILE = "meta.json"
PRETRAIN_DIR = "pretrain"
PRETRAIN_META = "pretrain.json"


def cache_root(cache_dir: str | Path = "") -> Path:
    """The cache root: ``cache_dir`` if given, else ``$BINSIGHT_CACHE_DIR``, else ``~/.cache/binsight/decode``."""
    if str(cache_dir):
        return Path(cache_dir).expanduser()
    env = os.environ.get("BINSIGHT_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "binsight" / "decode"


def decode_key(data_hash: str, size: int, resize: str) -> str:
    """The cache key of a manifest (by its :func:`~binsight.data.manifest.manifest_hash`) at a preprocessing."""
    text = json.dumps({"format": CACHE_FORMAT, "data": data_hash, "size": int(size), "resize": resize})
    return hashlib.sha256(text.encode()).hexdigest()[:24]


@dataclass
class DecodedImages:
    """An opened decode-cache entry.

    Attributes:
        images: read-only (N, H, W, 3) uint8 memmap (an empty array when N = 0).
        labels: (N,) int64 labels in manifest order.
        key: the cache key.
        folder: the entry's folder.
        built: True when this call decoded the images, False when an existing entry was reused.
        sha256: the rows' image digests in entry order (set by :func:`build_decode_cache`, which knows the rows),
            so per-image caches (:mod:`binsight.training.features`) can share work between manifests.
        resize: the resize policy of the entry ("" when unknown).
    """

    images: np.ndarray
    labels: np.ndarray
    key: str
    folder: Path
    built: bool = False
    sha256: list[str] | None = None
    resize: str = ""

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def size(self) -> int:
        return int(self.images.shape[1]) if self.images.ndim == 4 else 0


def _entry_dir(root: Path, key: str) -> Path:
    return root / "images" / key


def open_decode_cache(folder: Path) -> DecodedImages | None:
    """Open a complete entry, or return None if it is missing, partial or inconsistent."""
    meta_path = folder / META_FILE
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        n, size = int(meta["n"]), int(meta["size"])
        if meta.get("format") != CACHE_FORMAT or not meta.get("complete"):
            return None
        images_path = folder / IMAGES_FILE
        if images_path.stat().st_size != n * size * size * 3:
            return None
        labels = np.load(folder / LABELS_FILE)
        if labels.shape != (n,):
            return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if n == 0:
        images = np.zeros((0, size, size, 3), dtype=np.uint8)
    else:
        images = np.memmap(images_path, dtype=np.uint8, mode="r", shape=(n, size, size, 3))
    return DecodedImages(images=images, labels=labels.astype(np.int64), key=str(meta["key"]), folder=folder)


def _decode_one(path: Path, size: int, resize: str) -> np.ndarray:
    from PIL import Image

    from binsight.data.transforms import to_uint8_array

    # Exactly the eval preset's decode and resize (no JPEG draft mode): training pixels match inference pixels.
    with Image.open(path) as img:
        return to_uint8_array(img, size, resize)


def build_decode_cache(
    rows: Sequence,
    size: int,
    resize: str = "letterbox",
    cache_dir: str | Path = "",
    data_hash: str | None = None,
    workers: int = 0,
    desc: str = "decode",
) -> DecodedImages:
    """Return the decode-cache entry of ``rows``, decoding the images only when no complete entry exists.

    Args:
        rows: manifest rows (objects with ``path``, ``label`` and ``sha256``), in the order the entry keeps.
        size: output side in pixels.
        resize: resize policy (see :mod:`binsight.data.transforms`).
        cache_dir: cache root (see :func:`cache_root`).
        data_hash: the manifest hash of ``rows``; computed when None.
        workers: decoding threads (0 = one per core, at most 8).
        desc: progress-bar label.

    Returns:
        The opened entry; ``built`` says whether this call decoded the images.

    Raises:
        DataError: some images cannot be read (the message lists them); nothing is left in the cache.
    """
    from binsight.data.manifest import manifest_hash

    if data_hash is None:
        data_hash = manifest_hash(rows)
    # The manifest hash ignores order; the entry stores rows in manifest order, so the order is part of the key.
    order = hashlib.sha256("\n".join(f"{r.sha256},{int(r.label)}" for r in rows).encode()).hexdigest()
    key = decode_key(f"{data_hash}:{order}", size, resize)
    root = cache_root(cache_dir)
    final = _entry_dir(root, key)
    existing = open_decode_cache(final)
    if existing is not None:
        log.info("decode cache hit: %d images at %dpx (%s) from %s", len(existing), size, resize, final)
        existing.sha256, existing.resize = [r.sha256 for r in rows], resize
        return existing

    final.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_builds(final.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", suffix=".tmp", dir=final.parent))
    try:
        _fill_entry(tmp, rows, size, resize, key, data_hash, workers, desc)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o777 & ~mask)  # mkdtemp makes 0700 folders; a shared cache_dir needs the usual mode
        try:
            os.rename(tmp, final)
        except OSError:
            # Another builder won the race (or a stale incomplete folder sits there): use theirs if it is
            # complete, else replace the stale one.
            if open_decode_cache(final) is None:
                shutil.rmtree(final, ignore_errors=True)
                os.rename(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    opened = open_decode_cache(final)
    if opened is None:  # pragma: no cover - only if the file system loses our files
        raise DataError(f"decode cache entry {final} is unreadable right after writing it; check the disk")
    opened.built = True
    opened.sha256, opened.resize = [r.sha256 for r in rows], resize
    log.info("decode cache built: %d images at %dpx (%s) in %s", len(opened), size, resize, final)
    return opened


def _remove_stale_builds(folder: Path, max_age: float = 86400.0) -> None:
    """Delete temp folders of builds that died: one untouched for a day belongs to no live build."""
    import time

    now = time.time()
    for tmp in folder.glob(".*.tmp"):
        try:
            if now - tmp.stat().st_mtime > max_age:
                shutil.rmtree(tmp, ignore_errors=True)
        except OSError:
            pass


def _fill_entry(
    folder: Path, rows: Sequence, size: int, resize: str, key: str, data_hash: str, workers: int, desc: str
) -> None:
    from binsight.utils.progress import progress

    n = len(rows)
    labels = np.array([int(r.label) for r in rows], dtype=np.int64)
    images_path = folder / IMAGES_FILE
    failures: list[tuple[Path, str]] = []
    if n:
        out = np.memmap(images_path, dtype=np.uint8, mode="w+", shape=(n, size, size, 3))

        def work(i: int) -> None:
            try:
                out[i] = _decode_one(Path(rows[i].path), size, resize)
            except Exception as exc:  # PIL raises many types for damaged or missing files
                failures.append((Path(rows[i].path), f"{type(exc).__name__}: {exc}"))

        threads = workers or min(8, os.cpu_count() or 1)
        with ThreadPoolExecutor(max_workers=threads) as pool:
            for _ in progress(pool.map(work, range(n)), total=n, desc=desc, unit="img"):
                pass
        if failures:
            del out
            shown = "\n".join(f"  {p}: {why}" for p, why in sorted(failures)[:20])
            more = f"\n  … and {len(failures) - 20} more" if len(failures) > 20 else ""
            raise DataError(
                f"{len(failures)} of {n} images could not be read:\n{shown}{more}\n"
                "fix or remove them and rebuild the split with `binsight data split`"
            )
        out.flush()
        del out
    else:
        images_path.touch()
    np.save(folder / LABELS_FILE, labels)
    meta = {
        "format": CACHE_FORMAT,
        "key": key,
        "data_hash": data_hash,
        "n": n,
        "size": int(size),
        "resize": resize,
        "complete": True,
    }
    # meta.json last: an entry without it is never opened.
    (folder / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


@dataclass
class CacheUsage:
    """One cache entry as ``binsight cache info`` shows it."""

    kind: str  # images | features | pretrain
    path: Path
    bytes: int
    last_used: float  # seconds since the epoch (modification time of the entry)
    detail: str


def cache_usage(cache_dir: str | Path = "") -> list[CacheUsage]:
    """Every decode, feature and pre-training entry under the cache root, largest first."""
    root = cache_root(cache_dir)
    out: list[CacheUsage] = []
    for entry in sorted((root / "images").glob("*")) if (root / "images").is_dir() else []:
        if entry.name.startswith("."):
            continue
        files = [p for p in entry.rglob("*") if p.is_file()]
        detail = "incomplete"
        meta = _read_meta(entry)
        if meta:
            detail = f"{meta.get('n', '?')} images at {meta.get('size', '?')} px ({meta.get('resize', '?')})"
        out.append(
            CacheUsage(
                "images",
                entry,
                sum(p.stat().st_size for p in files),
                max((p.stat().st_mtime for p in files), default=entry.stat().st_mtime),
                detail,
            )
        )
    for entry in sorted((root / "features").glob("*")) if (root / "features").is_dir() else []:
        if entry.is_file() and not entry.name.startswith("."):
            stat = entry.stat()
            out.append(CacheUsage("features", entry, stat.st_size, stat.st_mtime, "backbone features"))
    for entry in sorted((root / PRETRAIN_DIR).glob("*")) if (root / PRETRAIN_DIR).is_dir() else []:
        if not entry.is_dir() or entry.name.startswith("."):
            continue
        files = [p for p in entry.rglob("*") if p.is_file()]
        meta = _read_json(entry / PRETRAIN_META)
        detail = "incomplete (a build stopped; the next run continues it)"
        if meta:
            detail = (
                f"SynthBins start: {meta.get('model', '?')} at {meta.get('img_size', '?')} px, "
                f"{meta.get('epochs', '?')} epochs on {meta.get('images', '?')} images"
            )
        # A run that starts from it touches the folder: that is its last use.
        last = max([entry.stat().st_mtime, *(p.stat().st_mtime for p in files)])
        out.append(CacheUsage("pretrain", entry, sum(p.stat().st_size for p in files), last, detail))
    return sorted(out, key=lambda u: -u.bytes)


def clear_cache(entries: Sequence[CacheUsage]) -> int:
    """Delete ``entries``; returns the bytes freed. A run reading an entry keeps its open memmap valid."""
    freed = 0
    for entry in entries:
        if entry.path.is_dir():
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            entry.path.unlink(missing_ok=True)
        freed += entry.bytes
    return freed


def _read_meta(entry: Path) -> dict | None:
    return _read_json(entry / META_FILE)


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
