"""Where a study lives, and how crashed workers are noticed.

Two kinds of storage:

* **journal** (default): Optuna's append-only journal file (``JournalStorage(JournalFileBackend(path))``),
  ``journal.log`` in the tuning run directory. Safe for many worker processes on one machine (or on a
  shared file system); SQLite would lock under parallel writers.
* **rdb**: an SQLAlchemy URL (``postgresql+psycopg2://user@host:5432/db``, ``mysql://…``) opened as
  ``RDBStorage`` with a heartbeat, so workers on several machines share one study.

A worker that dies (SIGKILL, power loss, OOM killer) leaves its trial RUNNING. The RDB storage records a
heartbeat per running trial and fails the trials whose heartbeat is older than the grace period
(Optuna's ``fail_stale_trials``). The journal storage has no heartbeat of its own, so each running trial
here keeps a small heartbeat file (``heartbeats/<trial id>.json`` beside the journal) that a thread touches
every ``heartbeat`` seconds; a trial whose file is older than the grace period, or whose process is gone on
this host, is failed the same way. Either way the failed trial is re-queued once more (up to ``max_retry``
times) with the same parameters, and the retry resumes from the dead trial's checkpoint.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from binsight.utils.io import file_lock

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

# Optuna's retry callback: (study, failed trial) -> None.
RetryCallback = Callable[["optuna.Study", "FrozenTrial"], None]

log = logging.getLogger(__name__)

JOURNAL_FILE = "journal.log"
HOST = socket.gethostname()


@dataclass
class StorageHandle:
    """An opened study storage.

    Attributes:
        storage: the Optuna storage object.
        kind: ``journal`` or ``rdb``.
        url: what was given (journal: the file path); may hold a password.
        display: ``url`` with any password masked, for logs and files.
        journal: the journal file (journal storage only).
        rdb: the ``RDBStorage`` (rdb storage only).
        grace: seconds without a heartbeat before a running trial counts as dead.
    """

    storage: Any
    kind: str
    url: str
    display: str
    journal: Path | None
    rdb: Any
    grace: int

    @property
    def heartbeat_dir(self) -> Path | None:
        return None if self.journal is None else self.journal.parent / "heartbeats"


def mask_url(url: str) -> str:
    """``url`` with the password replaced by ``***`` (``postgresql://u:***@host/db``)."""
    if "://" not in url:
        return url
    try:
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
        return parsed.render_as_string(hide_password=True) if parsed.password else url
    except Exception:  # not an SQLAlchemy URL: show it as given
        return url


def has_password(url: str) -> bool:
    return mask_url(url) != url


def retry_callback(max_retry: int) -> RetryCallback | None:
    """Optuna's retry callback (re-queue a failed trial with its parameters), or None when ``max_retry`` is 0."""
    if max_retry <= 0:
        return None
    import optuna.storages as storages

    cls = getattr(storages, "RetryHeartbeatStaleTrialCallback", None) or storages.RetryFailedTrialCallback
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # experimental-API notices
        return cls(max_retry=max_retry)


def open_storage(spec: str, run_dir: Path, heartbeat: int, grace: int, max_retry: int) -> StorageHandle:
    """Open the storage ``spec`` names: "" (journal in ``run_dir``), a journal file path, or an RDB URL.

    Raises:
        BinsightError: the URL's database driver is missing or the server cannot be reached.
    """
    from binsight.errors import BinsightError

    grace = grace or 2 * heartbeat
    if "://" not in spec:
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        path = Path(spec) if spec else Path(run_dir) / JOURNAL_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        journal = JournalStorage(JournalFileBackend(str(path)))
        return StorageHandle(journal, "journal", str(path), str(path), path, None, grace)

    import inspect

    from optuna.storages import RDBStorage

    if spec.startswith("sqlite"):
        log.warning("SQLite locks under parallel writers: prefer the default journal storage or PostgreSQL")
    callback_arg = (
        "heartbeat_stale_trial_callback"
        if "heartbeat_stale_trial_callback" in inspect.signature(RDBStorage).parameters
        else "failed_trial_callback"
    )
    callbacks: dict[str, Any] = {callback_arg: retry_callback(max_retry)}
    try:
        for attempt in range(3):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # heartbeat_interval is an experimental argument
                    storage = RDBStorage(
                        spec,
                        engine_kwargs={"pool_pre_ping": True} if not spec.startswith("sqlite") else None,
                        heartbeat_interval=heartbeat,
                        grace_period=grace,
                        **callbacks,
                    )
                break
            except ModuleNotFoundError:
                raise
            except Exception:
                # Workers starting together on an empty database race to create Optuna's tables; the
                # loser sees a duplicate-object error, and the tables exist when it tries again.
                if attempt == 2:
                    raise
                time.sleep(0.5 + attempt)
    except ModuleNotFoundError as exc:
        raise BinsightError(
            f"the storage {mask_url(spec)} needs the Python module {exc.name}: "
            "install the tuning extra with `pip install 'binsight[tune]'`"
        ) from None
    except Exception as exc:  # sqlalchemy.exc.OperationalError and friends
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BinsightError(
            f"cannot open the study storage {mask_url(spec)}: {first}. "
            "Check that the database server runs, the database exists and the URL is right "
            "(e.g. postgresql+psycopg2://user:password@host:5432/dbname)"
        ) from None
    return StorageHandle(storage, "rdb", spec, mask_url(spec), None, storage, grace)


# --- heartbeats for the journal storage --------------------------------------------------------------------


class FileHeartbeat:
    """Keep ``folder/<trial_id>.json`` fresh (every ``interval`` s) while a trial runs; remove it afterwards."""

    def __init__(self, folder: Path, trial_id: int, interval: float) -> None:
        self.path = Path(folder) / f"{trial_id}.json"
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{trial_id}", daemon=True)

    def __enter__(self) -> FileHeartbeat:
        from binsight.utils.io import atomic_write_json

        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.path, {"host": HOST, "pid": os.getpid(), "started": time.time()})
        self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            with contextlib.suppress(OSError):
                os.utime(self.path)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        with contextlib.suppress(OSError):
            self.path.unlink()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _is_stale(trial: FrozenTrial, folder: Path, grace: float, now: float) -> bool:
    path = folder / f"{trial._trial_id}.json"
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        age = now - path.stat().st_mtime
    except (OSError, ValueError):
        # No heartbeat yet (or unreadable): the worker dies before its first beat, or is about to write it.
        started = trial.datetime_start.timestamp() if trial.datetime_start else now
        return now - started > grace
    if info.get("host") == HOST and not _pid_alive(int(info.get("pid", -1))):
        return True  # its process is gone: no need to wait for the grace period
    return age > grace


def fail_stale_trials(study: optuna.Study, handle: StorageHandle, retry: RetryCallback | None) -> list[int]:
    """Fail RUNNING trials whose worker is gone and re-queue them with ``retry``; returns their numbers.

    The RDB storage does this itself before each trial (heartbeat + grace period); this covers the journal
    storage through the heartbeat files, and is a no-op for RDB.
    """
    import optuna
    from optuna.trial import TrialState

    if handle.kind != "journal":
        if handle.rdb is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                optuna.storages.fail_stale_trials(study)
        return []
    folder = handle.heartbeat_dir
    assert folder is not None  # a journal storage has one
    now = time.time()
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not _is_stale(trial, folder, handle.grace, now):
            continue
        try:
            study._storage.set_trial_system_attr(trial._trial_id, "binsight_stale", True)
            changed = study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker got there first
        if not changed:
            continue
        with contextlib.suppress(OSError):
            (folder / f"{trial._trial_id}.json").unlink()
        log.warning("trial %d: its worker stopped sending heartbeats; marked FAIL", trial.number)
        failed.append(trial.number)
        if retry is not None:
            retry(study, study._storage.get_trial(trial._trial_id))
    return failed


def retried_numbers(trials: Sequence[FrozenTrial]) -> set[int]:
    """Numbers of the trials some later trial retries (from the retries' ``retry_history``)."""
    out: set[int] = set()
    for t in trials:
        out.update(int(n) for n in t.system_attrs.get("retry_history", []))
    return out


def retry_interrupted(study: optuna.Study, retry: RetryCallback | None) -> list[int]:
    """Re-queue FAIL trials stopped by a signal or time limit (they saved a checkpoint) that no trial retries yet."""
    from optuna.trial import TrialState

    if retry is None:
        return []
    trials = study.get_trials(deepcopy=False)
    done = retried_numbers(trials)
    out = []
    for t in trials:
        stopped = t.user_attrs.get("interrupted") or t.system_attrs.get("binsight_stale")
        if t.state == TrialState.FAIL and stopped and t.number not in done:
            retry(study, t)
            out.append(t.number)
    return out


# --- a lock around "count the trials, then ask for one" ---------------------------------------------------


@contextlib.contextmanager
def ask_lock(handle: StorageHandle, lock_dir: Path, study_name: str) -> Iterator[None]:
    """Serialise budget checks between workers: a PostgreSQL advisory lock, else a file lock.

    A file lock covers the workers of one machine (and of a journal on a shared file system); other RDB
    servers get the file lock only, so machines may overshoot the trial budget by a trial or two.
    """
    if handle.rdb is not None and handle.rdb.engine.dialect.name == "postgresql":
        from sqlalchemy import text

        key = int.from_bytes(hashlib.sha256(f"binsight-tune:{study_name}".encode()).digest()[:8], "big", signed=True)
        with handle.rdb.engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()
        return
    base = handle.journal.parent if handle.journal is not None else Path(lock_dir)
    digest = hashlib.sha256(study_name.encode()).hexdigest()[:12]
    with file_lock(base / f".ask-{digest}.lock"):
        yield
