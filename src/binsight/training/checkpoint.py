"""Checkpoint files that detect their own damage, and the last / previous / best rotation of a run.

File format: a magic line, the sha256 of the payload as hex, a newline, then the payload (``torch.save``
bytes). A truncated or overwritten file fails the checksum and is reported by name instead of being
half-loaded. Writes go to a temp file that is fsynced and renamed, so a crash mid-write leaves the old file.

``weights/last.pt`` is the latest resumable state; before it is replaced, the current one (if it verifies)
becomes ``weights/last.prev.pt``, so one good fallback always exists. ``weights/best.pt`` holds the weights
of the best validation epoch.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from binsight.errors import CheckpointError

log = logging.getLogger(__name__)

MAGIC = b"BINSIGHT-CKPT-1\n"
LAST = "last.pt"
PREV = "last.prev.pt"
BEST = "best.pt"


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Serialise ``state`` (tensors and plain data) to ``path`` atomically, with a checksum."""
    path = Path(path)
    buf = io.BytesIO()
    torch.save(state, buf)
    payload = buf.getvalue()
    _write_atomic(path, MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)
    return path


def _write_atomic(path: Path, data: bytes, keep_previous: Path | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600 files; give them the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if keep_previous is not None:
            os.replace(path, keep_previous)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def is_checkpoint(path: str | Path) -> bool:
    """Whether the file starts like one written by :func:`save_checkpoint` (its damage is checked on loading)."""
    try:
        with open(path, "rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def verify_checkpoint(path: str | Path) -> bytes:
    """Return the payload of a checkpoint file after checking its magic and checksum.

    Raises:
        CheckpointError: the file is missing, not a binsight checkpoint, truncated or corrupt.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"checkpoint {path} cannot be read: {exc.strerror or exc}") from None
    if not data.startswith(MAGIC):
        raise CheckpointError(f"checkpoint {path} is not a binsight checkpoint (bad header); it may be truncated")
    header_end = len(MAGIC) + 65
    digest, payload = data[len(MAGIC) : header_end - 1], data[header_end:]
    if len(data) < header_end or hashlib.sha256(payload).hexdigest().encode() != digest:
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt (checksum mismatch)")
    return payload


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`.

    Raises:
        CheckpointError: the file is missing, truncated or corrupt.
    """
    payload = verify_checkpoint(path)
    try:
        # Not weights_only: the state holds the numpy RNG state. Like any pickle, load only runs you trust.
        state: dict[str, Any] = torch.load(io.BytesIO(payload), map_location=map_location, weights_only=False)
        return state
    except Exception as exc:  # a payload that passes the checksum but not unpickling: written by something else
        raise CheckpointError(f"checkpoint {path} cannot be loaded: {exc}") from None


class CheckpointManager:
    """The ``weights/`` folder of a run: rotating ``last.pt`` / ``last.prev.pt`` and ``best.pt``."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    @property
    def last(self) -> Path:
        return self.folder / LAST

    @property
    def prev(self) -> Path:
        return self.folder / PREV

    @property
    def best(self) -> Path:
        return self.folder / BEST

    def save_last(self, state: dict[str, Any]) -> Path:
        """Write ``state`` as ``last.pt``, keeping the current ``last.pt`` as ``last.prev.pt`` if it verifies."""
        buf = io.BytesIO()
        torch.save(state, buf)
        payload = buf.getvalue()
        data = MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload
        keep = None
        if self.last.exists():
            try:
                verify_checkpoint(self.last)
                keep = self.prev
            except CheckpointError as exc:
                # Never let a damaged file push out the good previous one.
                log.warning("%s; replacing it and keeping %s as the fallback", exc, self.prev)
        _write_atomic(self.last, data, keep_previous=keep)
        return self.last

    def save_best(self, state: dict[str, Any]) -> Path:
        return save_checkpoint(self.best, state)

    def load_latest(self, map_location: str | torch.device = "cpu") -> tuple[dict[str, Any], Path]:
        """Load ``last.pt``, or ``last.prev.pt`` with a warning when ``last.pt`` is damaged.

        Raises:
            CheckpointError: neither file exists or verifies.
        """
        errors = []
        for path in (self.last, self.prev):
            if not path.exists():
                continue
            try:
                state = load_checkpoint(path, map_location)
            except CheckpointError as exc:
                log.warning("%s; trying the previous checkpoint", exc)
                errors.append(str(exc))
                continue
            if path == self.prev:
                log.warning("resuming from the previous checkpoint %s (one epoch or stop point earlier)", path)
            return state, path
        if not errors:
            raise CheckpointError(
                f"no checkpoint in {self.folder}: expected {LAST} (is this a run directory of `binsight train`?)"
            )
        raise CheckpointError("no usable checkpoint: " + "; ".join(errors))


def has_checkpoint(run_dir: str | Path) -> bool:
    """True when the run directory ``run_dir`` has a resumable checkpoint (``last.pt`` or its previous copy)."""
    weights = Path(run_dir) / "weights"
    return (weights / LAST).is_file() or (weights / PREV).is_file()


def holds_run(run_dir: str | Path) -> bool:
    """True when ``run_dir`` already holds a training run (its config or weights), finished or not."""
    return (Path(run_dir) / "config.yaml").exists() or (Path(run_dir) / "weights").exists()
