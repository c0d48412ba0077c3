"""The contract between a training launcher and its worker processes, in one place.

torchrun's elastic agent passes a worker nothing but its environment and exit code, so that is the channel:

- the agent (or any torchrun) sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and ``TORCHELASTIC_RESTART_COUNT``;
- a binsight launcher (``binsight train --nproc N``) adds :class:`LauncherEnv`: torch threads per worker, the
  job's start time (``max_runtime`` spans worker restarts) and the file a deliberate stop is recorded in.

A worker reads all of it once, at start, into a :class:`WorkerEnv`; nothing else reads these variables.

A deliberate stop (``max_runtime`` or a stop signal, after the checkpoint is saved) is not a failure: a
non-zero exit would make the agent restart the whole group, which would only resume, find the budget spent (or
the signal gone) and burn the restarts. So under a binsight launcher a stopping worker writes a
:class:`StopRecord` to the launcher's stop file (local rank 0, atomically), raises :class:`WorkerStopped` and
exits 0; the launcher turns the record into :class:`~binsight.errors.Interrupted` (exit 3) with the resume
command, printed once. Without a binsight launcher (single process, an outside torchrun) the worker raises
Interrupted and exits 3 (:data:`INTERRUPTED_EXIT`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from binsight.errors import Interrupted
from binsight.training.distributed import Dist, dist_from_env

log = logging.getLogger(__name__)

STOP_FILE_ENV = "BINSIGHT_STOP_FILE"
THREADS_ENV = "BINSIGHT_WORKER_THREADS"
JOB_START_ENV = "BINSIGHT_JOB_START"
RESTART_COUNT_ENV = "TORCHELASTIC_RESTART_COUNT"
INTERRUPTED_EXIT = Interrupted.exit_code  # a worker that stopped with a checkpoint and no launcher to tell


class WorkerStopped(Interrupted):
    """A worker stopped deliberately with its checkpoint saved, and told the launcher (the CLI exits 0)."""


@dataclass(frozen=True)
class LauncherEnv:
    """What a binsight launcher tells every worker it starts.

    Attributes:
        threads: torch threads of each worker (the machine's cores shared among its workers).
        job_start: ``time.time()`` when the launch began: ``max_runtime`` counts from it, across restarts.
        stop_file: where a worker records a deliberate stop for the launcher.
    """

    threads: int
    job_start: float
    stop_file: Path

    def to_env(self) -> dict[str, str]:
        """The environment variables that carry this to the workers."""
        return {
            "OMP_NUM_THREADS": str(self.threads),
            THREADS_ENV: str(self.threads),
            JOB_START_ENV: repr(self.job_start),
            STOP_FILE_ENV: str(self.stop_file),
        }

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> LauncherEnv | None:
        """The launcher's settings, or None when no binsight launcher started this process."""
        stop_file = env.get(STOP_FILE_ENV)
        if not stop_file:
            return None
        return cls(threads=int(env.get(THREADS_ENV) or 0), job_start=job_start(env), stop_file=Path(stop_file))


def job_start(env: Mapping[str, str]) -> float:
    """When the job began (``time.time()``): the one an outer launcher recorded, else now. A launcher started
    inside a job (a restarted container, a launcher's own worker) keeps that job's ``max_runtime`` clock."""
    return float(env.get(JOB_START_ENV) or time.time())


@dataclass(frozen=True)
class WorkerEnv:
    """This process's place in a training job, read once from the environment (:meth:`from_env`).

    Attributes:
        dist: rank, world size and local rank (a single process when no launcher set them).
        torchrun: a torchrun-style launcher started this process (``RANK`` and ``WORLD_SIZE`` are set).
        restart_count: how often the agent has restarted the worker group.
        launcher: the binsight launcher's settings, None under an outside torchrun or in a single process.
    """

    dist: Dist = field(default_factory=Dist)
    torchrun: bool = False
    restart_count: int = 0
    launcher: LauncherEnv | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WorkerEnv:
        """Read the worker environment (default: ``os.environ``).

        Raises:
            BinsightError: ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` are not valid integers.
        """
        env = os.environ if env is None else env
        return cls(
            dist=dist_from_env(env),
            torchrun="RANK" in env and "WORLD_SIZE" in env,
            restart_count=int(env.get(RESTART_COUNT_ENV, "0") or 0),
            launcher=LauncherEnv.from_env(env),
        )

    @property
    def reports_result(self) -> bool:
        """True for the process that tells the user the result: rank 0, unless a binsight launcher will."""
        return self.dist.is_main and self.launcher is None

    def start_time(self, default: float) -> float:
        """``time.monotonic()`` origin of ``max_runtime``: the launch's start under a binsight launcher."""
        if self.launcher is None:
            return default
        return time.monotonic() - max(0.0, time.time() - self.launcher.job_start)


@dataclass(frozen=True)
class StopRecord:
    """A deliberate stop, as a worker records it for its launcher (JSON in the launcher's stop file)."""

    message: str
    reason: str
    rank: int
    world_size: int
    attempt: int

    @classmethod
    def read(cls, path: Path) -> StopRecord | None:
        """The record in ``path``, or None when the workers recorded none (or it is unreadable)."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(**data) if isinstance(data, dict) and data.get("message") else None
        except (OSError, ValueError, TypeError):
            return None


def hand_stop_to_launcher(message: str, reason: str, worker: WorkerEnv) -> bool:
    """Record this worker's deliberate stop for its launcher; every rank calls it at the same stop point.

    Args:
        message: what stopped and where, with the checkpoint path (no resume command: the launcher prints it).
        reason: ``max_runtime`` or the signal's name (or "a stop signal on another worker").
        worker: this worker's environment.

    Returns:
        True when a launcher waits for the record (the worker should exit 0), False when there is none.
    """
    from binsight.utils.io import atomic_write_json

    if worker.launcher is None:
        return False
    d = worker.dist
    if d.local_rank == 0:  # one writer per machine: each machine's launcher has its own file
        record = StopRecord(message, reason, d.rank, d.world_size, worker.restart_count)
        atomic_write_json(worker.launcher.stop_file, asdict(record))
    log.warning("rank %d/%d: %s", d.rank, d.world_size, message)
    return True
