"""``generate``: ABID layout on disk, byte-identical reruns, parallel == serial, refusing to clobber."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from binsight.config.schemas import SynthConfig
from binsight.data.synth import generate
from binsight.errors import DataError

SMALL = dict(width_min=64, width_max=80, jpeg_quality_min=60, jpeg_quality_max=90)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_metadata_and_manifest(tmp_path):
    cfg = SynthConfig(n=12, seed=3, counts=[0, 1, 2, 6], workers=1, **SMALL)
    summary = generate(tmp_path / "ds", cfg, show_progress=False)
    root = tmp_path / "ds"
    ids = [f"{i:05d}" for i in range(1, 13)]
    assert sorted(p.name for p in (root / "bin-images").iterdir()) == [f"{i}.jpg" for i in ids]
    assert sorted(p.name for p in (root / "metadata").iterdir()) == [f"{i}.json" for i in ids]
    seen: dict[int, int] = {}
    for i in ids:
        meta = json.loads((root / "metadata" / f"{i}.json").read_text())
        assert meta["image_fname"] == f"{i}.jpg"
        q = meta["EXPECTED_QUANTITY"]
        assert sum(s["quantity"] for s in meta["BIN_FCSKU_DATA"].values()) == q
        seen[q] = seen.get(q, 0) + 1
    manifest = json.loads((root / "synth.json").read_text())
    assert manifest["generator"] == "SynthBins" and manifest["seed"] == 3 and manifest["n"] == 12
    assert {int(c): k for c, k in manifest["class_counts"].items()} == seen == summary["class_counts"]
    assert sum(seen.values()) == 12 and set(seen) == {0, 1, 2, 6}
    assert manifest["config"]["counts"] == [0, 1, 2, 6] and "workers" not in manifest["config"]
    assert summary["n"] == 12 and summary["images_per_s"] > 0


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    generate(tmp_path / "a", SynthConfig(n=8, seed=1, workers=1, **SMALL), show_progress=False)
    generate(tmp_path / "b", SynthConfig(n=8, seed=1, workers=1, **SMALL), show_progress=False)
    generate(tmp_path / "c", SynthConfig(n=8, seed=2, workers=1, **SMALL), show_progress=False)
    a, b, c = _files(tmp_path / "a"), _files(tmp_path / "b"), _files(tmp_path / "c")
    assert a == b
    assert a.keys() == c.keys()
    assert all(a[k] != c[k] for k in a if k.startswith("bin-images/"))


def test_parallel_output_equals_serial_output(tmp_path):
    # 40 images = 3 chunks, so the pool really spreads them over both workers.
    generate(tmp_path / "serial", SynthConfig(n=40, seed=5, workers=1, **SMALL), show_progress=False)
    summary = generate(tmp_path / "par", SynthConfig(n=40, seed=5, workers=2, **SMALL), show_progress=False)
    assert summary["workers"] == 2
    assert _files(tmp_path / "serial") == _files(tmp_path / "par")


def test_refuses_non_empty_out_and_overwrite_replaces_the_old_dataset(tmp_path):
    out = tmp_path / "ds"
    generate(out, SynthConfig(n=10, workers=1, **SMALL), show_progress=False)
    (out / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="not empty"):
        generate(out, SynthConfig(n=3, workers=1, **SMALL), show_progress=False)
    assert len(list((out / "bin-images").iterdir())) == 10  # nothing lost
    generate(out, SynthConfig(n=3, workers=1, **SMALL), show_progress=False, overwrite=True)
    assert sorted(p.name for p in (out / "bin-images").iterdir()) == ["00001.jpg", "00002.jpg", "00003.jpg"]
    assert len(list((out / "metadata").iterdir())) == 3
    assert (out / "notes.txt").read_text() == "mine"  # only the dataset is replaced
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="is a file"):
        generate(tmp_path / "file", SynthConfig(n=1, workers=1, **SMALL), show_progress=False)


def test_zero_images_writes_an_empty_dataset(tmp_path):
    summary = generate(tmp_path / "z", SynthConfig(n=0, workers=1, **SMALL), show_progress=False)
    assert summary["n"] == 0 and sum(summary["class_counts"].values()) == 0
    assert list((tmp_path / "z" / "bin-images").iterdir()) == []
    assert (tmp_path / "z" / "synth.json").is_file()
