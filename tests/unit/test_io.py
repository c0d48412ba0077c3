"""Atomic writes and run-directory numbering."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from binsight.utils.io import atomic_write_bytes, atomic_write_json, next_run_dir, run_dirs


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path: Path):
    target = tmp_path / "sub" / "f.json"
    atomic_write_json(target, {"a": 1})
    atomic_write_json(target, {"a": 2})
    assert target.read_text().strip().endswith("}") and '"a": 2' in target.read_text()
    assert [p.name for p in target.parent.iterdir()] == ["f.json"]


def test_atomic_write_uses_umask_permissions(tmp_path: Path):
    old = os.umask(0o022)
    try:
        path = atomic_write_bytes(tmp_path / "x.bin", b"1")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_failed_write_keeps_old_file(tmp_path: Path):
    from binsight.utils.io import atomic_write_with

    target = tmp_path / "keep.txt"
    target.write_text("old")

    def boom(f):
        f.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write_with(target, boom)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_run_dirs_are_numbered_never_reused(tmp_path: Path):
    a = next_run_dir(tmp_path, "train", "exp")
    b = next_run_dir(tmp_path, "train", "exp")
    c = next_run_dir(tmp_path, "train", "exp")
    assert [a.name, b.name, c.name] == ["exp", "exp-2", "exp-3"]
    (tmp_path / "train" / "exp-7").mkdir()
    assert next_run_dir(tmp_path, "train", "exp").name == "exp-8"
    assert next_run_dir(tmp_path, "train", "other").name == "other"
    # a name that ends in digits stays readable: r18, r18-2 (never r182)
    assert [next_run_dir(tmp_path, "train", "r18").name for _ in range(2)] == ["r18", "r18-2"]
    assert sorted(p.name for p in run_dirs(tmp_path, "train", "exp")) == ["exp", "exp-2", "exp-3", "exp-7", "exp-8"]


def test_extract_tar_takes_plain_members_and_refuses_escapes_and_links(tmp_path: Path):
    import io
    import tarfile

    from binsight.errors import BinsightError
    from binsight.utils.io import extract_tar

    def archive(name: str, *members: tuple[str, bytes | None]) -> Path:
        path = tmp_path / name
        with tarfile.open(path, "w:gz") as tar:
            for member, data in members:
                info = tarfile.TarInfo(member)
                if data is None:
                    info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
                    tar.addfile(info)
                else:
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        return path

    good = archive("good.tar.gz", ("model.json", b"{}"), ("code/inference.py", b"x = 1"))
    assert extract_tar(good, tmp_path / "out") == ["model.json", "code/inference.py"]
    assert (tmp_path / "out" / "code" / "inference.py").read_bytes() == b"x = 1"
    for bad in (archive("up.tar.gz", ("../evil", b"!")), archive("link.tar.gz", ("link", None))):
        with pytest.raises(BinsightError, match="refusing member"):
            extract_tar(bad, tmp_path / "bad")
    assert not (tmp_path / "evil").exists() and not (tmp_path / "bad").exists()
