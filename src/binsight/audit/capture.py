"""Capture from serving (the local twin of SageMaker Data Capture): ``binsight serve --capture DIR``.

For a sampled share of successful invocations (``--capture-rate``), each image is written once under
``DIR/photos/<sha256[:2]>/<sha256>.<ext>`` (content-addressed: a photo sent twice is stored once) and one JSON line
per image is appended to ``DIR/captures.jsonl`` with the request metadata and the response. Folders are created
0700 and files 0600: captured photos and records are business data. A capture failure is logged and never fails
the request. ``binsight audit --from-capture DIR`` reads the lines back (:func:`read_capture`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("binsight.capture")

CAPTURE_FILE = "captures.jsonl"


def _private_dir(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


class CaptureWriter:
    """Append sampled requests to a capture folder (thread-safe).

    Args:
        folder: The capture folder.
        rate: Share of requests captured, in (0, 1].
        rng: Source of the sampling draws (seeded in tests).
    """

    def __init__(self, folder: str | Path, rate: float = 1.0, rng: random.Random | None = None) -> None:
        if not 0 < rate <= 1:
            raise ValueError(f"capture rate {rate} must be in (0, 1]")
        self.folder = _private_dir(Path(folder))
        self.photos = _private_dir(self.folder / "photos")
        self.rate = float(rate)
        self.rng = rng or random.Random()
        self._lock = threading.Lock()
        fd = os.open(self.folder / CAPTURE_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._file = os.fdopen(fd, "a", encoding="utf-8")

    @classmethod
    def from_config(cls, config: Any) -> CaptureWriter | None:
        """The writer a ``ServeConfig`` asks for (``capture_dir``, ``capture_rate``), or None when capture is off."""
        folder = getattr(config, "capture_dir", "")
        return cls(folder, getattr(config, "capture_rate", 1.0)) if folder else None

    def _photo(self, data: bytes) -> tuple[str, str]:
        sha = hashlib.sha256(data).hexdigest()
        ext = "png" if data[:8] == b"\x89PNG\r\n\x1a\n" else "jpg"
        rel = f"photos/{sha[:2]}/{sha}.{ext}"
        path = self.folder / rel
        if not path.is_file():
            _private_dir(path.parent)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        return rel, sha

    def record(
        self,
        images: list[bytes],
        expected: list[int | None],
        predictions: list[dict[str, Any]],
        meta: dict[str, Any],
    ) -> int:
        """Capture one request (if sampled); returns the number of lines written. Never raises."""
        try:
            if self.rng.random() >= self.rate:
                return 0
            lines = []
            for i, (data, exp, pred) in enumerate(
                zip(images, expected or [None] * len(images), predictions, strict=False)
            ):
                rel, sha = self._photo(data)
                request_id = meta.get("request_id") or "request"
                lines.append(
                    json.dumps(
                        {
                            "id": f"{request_id}-{i}" if len(images) > 1 else request_id,
                            "ts": round(time.time(), 3),
                            **meta,
                            "expected_quantity": exp,
                            "photo": rel,
                            "sha256": sha,
                            "bytes": len(data),
                            "response": pred,
                        }
                    )
                )
            with self._lock:
                self._file.write("".join(line + "\n" for line in lines))
                self._file.flush()
            return len(lines)
        except Exception:  # capture is a side channel: the request has its answer already
            log.exception("capture to %s failed", self.folder)
            return 0

    def record_request(self, request: Any, parsed: Any, predictions: list[dict[str, Any]]) -> int:
        """:meth:`record` for a served request (a Starlette ``Request`` and its parsed invocation)."""
        meta = {
            "request_id": getattr(request.state, "request_id", None),
            "path": request.url.path,
            "content_type": request.headers.get("content-type"),
            "custom_attributes": request.headers.get("x-amzn-sagemaker-custom-attributes"),
            "client": request.client.host if request.client else None,
        }
        return self.record(parsed.images, parsed.expected, predictions, meta)

    def close(self) -> None:
        with self._lock:
            self._file.close()


def read_capture(folder: str | Path) -> list[dict[str, Any]]:
    """The captured lines of ``folder`` (a line cut by a crash is skipped), each with ``photo_path`` resolved.

    Raises:
        DataError: no capture file in ``folder``.
    """
    from binsight.errors import DataError

    folder = Path(folder)
    path = folder / CAPTURE_FILE
    if not path.is_file():
        raise DataError(f"{path} does not exist: capture requests with `binsight serve --capture {folder}`")
    entries, seen = [], set()
    with path.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                entry = json.loads(line)
                photo = (folder / entry["photo"]).resolve()
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
            if not photo.is_relative_to(folder.resolve()) or entry.get("id") in seen:
                continue
            seen.add(entry.get("id"))
            entries.append({**entry, "photo_path": str(photo)})
    return entries
