"""The decode cache: built once, reused, keyed by size and resize policy, atomic, and loud about bad images."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from binsight.data import cache
from binsight.data.cache import build_decode_cache, cache_root, open_decode_cache
from binsight.data.manifest import ManifestRow
from binsight.errors import DataError


def _rows(folder: Path, n: int = 5) -> list[ManifestRow]:
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        path = folder / f"{i}.png"
        Image.new("RGB", (40 + i, 30), (10 * i, 200 - 10 * i, 50)).save(path)
        rows.append(ManifestRow(path, i % 3 + 1, hashlib.sha256(path.read_bytes()).hexdigest(), "t"))
    return rows


@pytest.fixture
def counted_decodes(monkeypatch):
    calls = []
    real = cache._decode_one

    def counting(path, size, resize):
        calls.append(path)
        return real(path, size, resize)

    monkeypatch.setattr(cache, "_decode_one", counting)
    return calls


def test_built_once_then_reused(tmp_path, counted_decodes):
    rows = _rows(tmp_path / "img")
    first = build_decode_cache(rows, 16, "letterbox", tmp_path / "cache")
    assert first.built and len(counted_decodes) == 5
    second = build_decode_cache(rows, 16, "letterbox", tmp_path / "cache")
    assert not second.built and len(counted_decodes) == 5, "a complete entry must not be decoded again"
    assert second.folder == first.folder
    assert second.images.shape == (5, 16, 16, 3) and second.images.dtype == np.uint8
    assert second.labels.tolist() == [1, 2, 3, 1, 2]
    # The cached pixels are exactly the eval preprocessing of each image.
    from binsight.data.transforms import to_uint8_array

    with Image.open(rows[3].path) as img:
        np.testing.assert_array_equal(second.images[3], to_uint8_array(img, 16, "letterbox"))


def test_key_changes_with_size_and_policy(tmp_path, counted_decodes):
    rows = _rows(tmp_path / "img")
    a = build_decode_cache(rows, 16, "letterbox", tmp_path / "cache")
    b = build_decode_cache(rows, 24, "letterbox", tmp_path / "cache")
    c = build_decode_cache(rows, 16, "stretch", tmp_path / "cache")
    assert len({a.key, b.key, c.key}) == 3
    assert b.built and c.built and b.images.shape[1] == 24
    assert len(counted_decodes) == 15


def test_same_images_elsewhere_share_the_entry(tmp_path, counted_decodes):
    rows = _rows(tmp_path / "a")
    build_decode_cache(rows, 16, "letterbox", tmp_path / "cache")
    copies = [ManifestRow(tmp_path / "b" / r.path.name, r.label, r.sha256, r.source) for r in rows]
    (tmp_path / "b").mkdir()
    for r, c in zip(rows, copies, strict=True):
        c.path.write_bytes(r.path.read_bytes())
    assert not build_decode_cache(copies, 16, "letterbox", tmp_path / "cache").built


def test_incomplete_entry_is_rebuilt(tmp_path, counted_decodes):
    rows = _rows(tmp_path / "img")
    entry = build_decode_cache(rows, 16, "letterbox", tmp_path / "cache")
    meta = json.loads((entry.folder / "meta.json").read_text())
    # A crash of an older writer: images truncated while meta claims completeness.
    with open(entry.folder / "images.u8", "r+b") as f:
        f.truncate(100)
    assert open_decode_cache(entry.folder) is None
    rebuilt = build_decode_cache(rows, 16, "letterbox", tmp_path / "cache")
    assert rebuilt.built and len(counted_decodes) == 10
    assert json.loads((rebuilt.folder / "meta.json").read_text())["n"] == meta["n"]


def test_unreadable_images_are_listed_and_nothing_is_cached(tmp_path):
    rows = _rows(tmp_path / "img")
    (tmp_path / "img" / "1.png").write_bytes(b"not an image")
    missing = ManifestRow(tmp_path / "img" / "gone.png", 1, "0" * 64, "t")
    with pytest.raises(DataError) as err:
        build_decode_cache([*rows, missing], 16, "letterbox", tmp_path / "cache")
    message = str(err.value)
    assert "2 of 6 images could not be read" in message
    assert "1.png" in message and "gone.png" in message
    leftovers = list((tmp_path / "cache" / "images").iterdir())
    assert leftovers == [], f"a failed build left {leftovers}"


def test_concurrent_builders_agree(tmp_path):
    rows = _rows(tmp_path / "img", n=8)
    results, errors = [], []

    def build():
        try:
            results.append(build_decode_cache(rows, 16, "letterbox", tmp_path / "cache", workers=1))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=build) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len({r.folder for r in results}) == 1
    entries = [p.name for p in (tmp_path / "cache" / "images").iterdir()]
    assert entries == [results[0].key], f"temp folders left behind: {entries}"
    for r in results:
        np.testing.assert_array_equal(np.asarray(r.images), np.asarray(results[0].images))


def test_cache_root_resolution(tmp_path, monkeypatch):
    monkeypatch.setenv("BINSIGHT_CACHE_DIR", str(tmp_path / "env"))
    assert cache_root("") == tmp_path / "env"
    assert cache_root(tmp_path / "explicit") == tmp_path / "explicit"
    monkeypatch.delenv("BINSIGHT_CACHE_DIR")
    assert cache_root("") == Path.home() / ".cache" / "binsight" / "decode"


def test_stale_temp_folders_of_killed_builds_are_removed(tmp_path):
    import os
    import time

    rows = _rows(tmp_path / "img")
    images = tmp_path / "cache" / "images"
    old, fresh = images / ".abc.1.tmp", images / ".abc.2.tmp"
    for folder in (old, fresh):
        folder.mkdir(parents=True)
    two_days_ago = time.time() - 2 * 86400
    os.utime(old, (two_days_ago, two_days_ago))
    build_decode_cache(rows, 16, "letterbox", tmp_path / "cache")
    assert not old.exists(), "a day-old temp folder is a killed build"
    assert fresh.exists(), "a recent temp folder may be a live concurrent build"
