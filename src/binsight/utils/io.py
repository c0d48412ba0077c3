"""Atomic file writes, an exclusive file lock, and run-directory numbering."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temp file in the same folder and a rename.

    A reader never sees a half-written file, and an interrupted write leaves the old file in place.
    """
    return atomic_write_with(path, lambda f: f.write(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def atomic_write_with(path: str | Path, writer: Callable[[Any], Any]) -> Path:
    """Call ``writer(fileobj)`` on a temp file beside ``path``, fsync it, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600 files; give them the usual permissions
        with os.fdopen(fd, "wb") as f:
            writer(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


@contextlib.contextmanager
def file_lock(path: str | Path, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing) for the block: one holder among the
    processes of this machine (and of a shared file system that supports it); released if the holder dies.
    ``on_wait`` is called once when another holder makes this one wait."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _numbered(name: str) -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(name)}(?:-(\d+))?$")


def run_dirs(root: str | Path, kind: str, name: str) -> list[Path]:
    """The existing ``root/kind/name`` and ``name-N`` folders."""
    base = Path(root) / kind
    if not base.is_dir():
        return []
    pattern = _numbered(name)
    return [p for p in base.iterdir() if p.is_dir() and pattern.match(p.name)]


def next_run_dir(root: str | Path, kind: str, name: str) -> Path:
    """Create and return ``root/kind/name``, or ``name-2``, ``name-3`` … if taken. Never reuses a folder."""
    base = Path(root) / kind
    base.mkdir(parents=True, exist_ok=True)
    pattern = _numbered(name)
    taken = [int(m.group(1) or 1) for p in base.iterdir() if (m := pattern.match(p.name))]
    n = max(taken, default=0) + 1
    while True:
        candidate = base / (name if n == 1 else f"{name}-{n}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            n += 1


def write_tar_gz(out: str | Path, members: list[tuple[Path, str]], texts: dict[str, str] | None = None) -> Path:
    """Write a ``.tar.gz`` of ``members`` (file, name in the archive) and ``texts`` (name → content), atomically.

    Owner fields are fixed (root), so the archive depends only on the files' contents and times.
    """
    import io
    import tarfile

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")

    def normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        return info

    try:
        with tarfile.open(tmp, "w:gz") as tar:
            for path, name in members:
                tar.add(path, arcname=name, filter=normalise)
            for name, text in (texts or {}).items():
                data = text.encode()
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def extract_tar(archive: str | Path, folder: str | Path) -> list[str]:
    """Extract ``archive`` into ``folder``, refusing members that would land outside it or are not plain files
    and folders (links, devices). Returns the member names.

    Python's ``filter="data"`` does this from 3.11.4 on; the check here also holds on older 3.11 releases.
    """
    import tarfile

    from binsight.errors import BinsightError

    folder = Path(folder)
    root = folder.resolve()
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
        for member in members:
            target = (root / member.name).resolve()
            if not (member.isfile() or member.isdir()) or (target != root and root not in target.parents):
                raise BinsightError(f"{archive}: refusing member {member.name!r} (outside the folder, or not a file)")
        folder.mkdir(parents=True, exist_ok=True)
        for member in members:
            member.mode = (member.mode | 0o600) & 0o755  # no set-id bits, always readable by the owner
            if hasattr(tarfile, "data_filter"):  # 3.11.4+: say the members were checked (no deprecation warning)
                tar.extract(member, folder, set_attrs=False, filter="fully_trusted")
            else:
                tar.extract(member, folder, set_attrs=False)
    return [m.name for m in members]
