"""Why a model server stopped, in words: :func:`failure_reason` (the telling line of its log) and
:func:`exit_description` (its exit code or signal). The endpoint supervisor puts them in ``failure_reason``.
"""

from __future__ import annotations

import contextlib
import re
import signal
from pathlib import Path

_LOG_PREFIX = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d[,.]\d+ (?=[A-Z]+ )")
# Level ERROR/CRITICAL, the CLI's "binsight: error:" or a traceback's last line; then any *Error/*Exception.
_STRONG_ERROR = re.compile(r"^(ERROR|CRITICAL) |binsight: (config )?error|^[\w.]*(Error|Exception): ")
_WEAK_ERROR = re.compile(r"(Error|Exception)\b")


def failure_reason(log_path: Path, offset: int, limit: int = 500) -> str:
    """The most telling line a model server wrote since ``offset`` in its log (its last error line)."""
    try:
        with open(log_path, "rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
    except OSError:
        return "no server log"
    # JSON lines are the access log ("error": null on every request): never a reason.
    lines = [_LOG_PREFIX.sub("", line.strip()) for line in text.splitlines() if line.strip()[:1] not in ("", "{")]
    for pattern in (_STRONG_ERROR, _WEAK_ERROR):
        for line in reversed(lines):
            if pattern.search(line):
                return line[:limit]
    return lines[-1][:limit] if lines else "the server wrote nothing"


def exit_description(code: int | None) -> str:
    """``exit code 1`` or ``killed by SIGKILL``."""
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"
