"""How workers of ``binsight train --nproc N`` hand a deliberate stop to their launcher.

torchrun's elastic agent knows only exit codes: a worker that exits non-zero makes it restart the whole group
(while ``--max-restarts`` allows). A deliberate stop — ``max_runtime`` or a stop signal, after the checkpoint is
saved — is not a failure, and a restart would only resume, find the time budget spent (or the signal gone) and
burn the restarts. So under the launcher a stopping worker records the stop in the file the launcher named in
``BINSIGHT_STOP_FILE`` (local rank 0 writes it, atomically) and exits 0; the agent sees the group succeed, and
the launcher turns the recorded stop into :class:`~binsight.errors.Interrupted` (exit 3) with the resume command,
printed once. Without the variable (single process, an outside torchrun) nothing changes: the worker raises
Interrupted and exits 3.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from binsight.errors import Interrupted

log = logging.getLogger(__name__)

STOP_FILE_ENV = "BINSIGHT_STOP_FILE"


class WorkerStopped(Interrupted):
    """A worker stopped deliberately with its checkpoint saved, and told the launcher (the CLI exits 0)."""


def stop_file(env: dict[str, str] | None = None) -> Path | None:
    """The file a waiting ``binsight train --nproc`` launcher reads a deliberate stop from, or None."""
    value = (os.environ if env is None else env).get(STOP_FILE_ENV)
    return Path(value) if value else None


def hand_stop_to_launcher(message: str, reason: str, rank: int, world_size: int, local_rank: int) -> bool:
    """Record this worker's deliberate stop for the launcher; every rank calls it at the same stop point.

    Args:
        message: what stopped and where, with the checkpoint path (no resume command: the launcher prints it).
        reason: ``max_runtime`` or the signal's name (or "a stop signal on another worker").
        rank, world_size, local_rank: this worker's place in the job.

    Returns:
        True when a launcher waits for the record (the worker should exit 0), False when there is none.
    """
    from binsight.utils.io import atomic_write_json

    path = stop_file()
    if path is None:
        return False
    if local_rank == 0:  # one writer per machine: each machine's launcher has its own file
        record = {
            "message": message,
            "reason": reason,
            "rank": rank,
            "world_size": world_size,
            "attempt": int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0),
        }
        atomic_write_json(path, record)
    log.warning("rank %d/%d: %s", rank, world_size, message)
    return True


def read_stop(path: Path) -> dict[str, Any] | None:
    """The stop recorded in ``path`` by :func:`hand_stop_to_launcher`, or None when the workers recorded none."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("message") else None
