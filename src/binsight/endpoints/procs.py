"""Process and port helpers for endpoint supervisors, built on ``/proc`` (Linux) and ``os.kill``.

A supervisor runs in its own session, so its process group id is its pid and every model server it starts
is in that group. Stopping an endpoint therefore means stopping that group — even when the supervisor
itself is gone and only an orphaned server is left. Every kill checks the target's command line first, so a
recycled pid is never signalled. Children get a minimal environment (:func:`child_env`), and model servers
a parent-death signal (:func:`die_with_parent`), so a killed supervisor leaves no server behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

SUPERVISOR_MODULE = "binsight.endpoints.supervisor"
# The only variables a supervisor or model server inherits: locale, paths, thread counts, binsight's own
# settings. Anything else in the creating shell (BINSIGHT_TEST_HOOKS, credentials, proxies) stays behind.
CHILD_ENV_KEEP = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "PYTHONPATH",
                  "OMP_NUM_THREADS", "MKL_NUM_THREADS", "BINSIGHT_HOME", "BINSIGHT_CACHE_DIR")  # fmt: skip
_PR_SET_PDEATHSIG = 1


def child_env(**extra: str) -> dict[str, str]:
    """A minimal environment for an endpoint's processes: :data:`CHILD_ENV_KEEP` from ours, plus ``extra``."""
    env = {k: os.environ[k] for k in CHILD_ENV_KEEP if k in os.environ}
    env.update(PYTHONUNBUFFERED="1", BINSIGHT_NO_PROGRESS="1", **extra)
    return env


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None]:
    """A ``preexec_fn`` asking Linux to send ``sig`` to the child when its parent dies (``PR_SET_PDEATHSIG``).

    The ctypes function is looked up here, in the parent, so the child between fork and exec only calls it.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    prctl = libc.prctl

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)

    return preexec


def open_private_log(path: Path) -> BinaryIO:
    """Open ``path`` for appending, created 0600 (logs can hold request details)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    return os.fdopen(fd, "ab")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid pgrp ..." — comm may hold spaces and parentheses, so split after the last ')'.
    return text[text.rfind(")") + 2 :].split()


def pid_alive(pid: int | None) -> bool:
    """True when ``pid`` is a running process (a zombie, already dead but not yet reaped, counts as gone)."""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    fields = _stat_fields(pid)
    if fields is None:
        return True  # no /proc (not Linux): os.kill said it exists
    return fields[0] not in ("Z", "X")


def cmdline(pid: int) -> list[str]:
    """The argv of ``pid`` ([] when it is gone or unreadable)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def is_binsight_process(pid: int) -> bool:
    return pid_alive(pid) and any("binsight" in part for part in cmdline(pid))


def is_supervisor(pid: int | None, name: str | None = None) -> bool:
    """True when ``pid`` is a live endpoint supervisor (for endpoint ``name`` when given)."""
    if not pid or not pid_alive(pid):
        return False
    argv = cmdline(pid)
    if SUPERVISOR_MODULE not in argv:
        return False
    return name is None or (bool(argv) and argv[-1] == name)


def group_members(pgid: int) -> list[int]:
    """Live binsight processes in process group ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if (
            fields
            and len(fields) > 2
            and fields[2] == str(pgid)
            and fields[0] not in ("Z", "X")
            and any("binsight" in part for part in cmdline(int(entry.name)))
        ):
            members.append(int(entry.name))
    return members


def find_supervisors(home: Path) -> dict[int, str]:
    """Every live supervisor process using the registry in ``home``: {pid: endpoint name}."""
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        argv = cmdline(int(entry.name))
        if SUPERVISOR_MODULE in argv and "--home" in argv:
            i = argv.index("--home")
            if i + 1 < len(argv) and Path(argv[i + 1]) == home and pid_alive(int(entry.name)):
                found[int(entry.name)] = argv[-1]
    return found


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def stop_group(pgid: int, timeout: float = 20.0) -> bool:
    """Stop a supervisor's process group; see ``stop_groups``."""
    return stop_groups([pgid], timeout)


def stop_groups(pgids: list[int], timeout: float = 20.0) -> bool:
    """Stop supervisors' process groups, all at once: SIGTERM to each leader (or to every member once its
    leader is gone), wait up to ``timeout`` seconds, then SIGKILL what is left.

    Returns:
        True when something had to be killed with SIGKILL.
    """

    def members() -> dict[int, list[int]]:
        return {pgid: pids for pgid in pgids if (pids := group_members(pgid))}

    left = members()
    signalled: set[int] = set()
    deadline = time.monotonic() + timeout
    while left and time.monotonic() < deadline:
        for pgid, pids in left.items():
            # The leader (supervisor) stops its own children; members left without a leader get SIGTERM directly.
            for pid in [pgid] if pgid in pids else pids:
                if pid not in signalled:
                    _signal(pid, signal.SIGTERM)
                    signalled.add(pid)
        time.sleep(0.1)
        left = members()
    killed = [pid for pids in left.values() for pid in pids]
    for pid in killed:
        _signal(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while members() and time.monotonic() < deadline:
        time.sleep(0.05)
    return bool(killed)


def port_free(host: str, port: int) -> bool:
    """True when nothing listens on ``host:port`` and it can be bound."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def wait_port_free(host: str, port: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_free(host, port):
            return True
        time.sleep(0.1)
    return port_free(host, port)


def signal_process(pid: int | None, sig_name: str) -> bool:
    """Send ``SIGHUP``/``SIGTERM``… to a live supervisor; returns False when there is none to signal."""
    if pid is None or not is_supervisor(pid):
        return False
    _signal(pid, getattr(signal, sig_name))
    return True
