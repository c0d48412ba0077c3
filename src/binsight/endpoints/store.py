"""The endpoint registry: SQLite tables mirroring SageMaker's model, endpoint config and endpoint objects.

Location: ``$BINSIGHT_HOME/endpoints.db`` (default ``~/.local/state/binsight/endpoints.db``). Several CLI
processes and supervisors share it, so it runs in WAL mode with a busy timeout, and every change is one
``BEGIN IMMEDIATE`` transaction (writers queue instead of failing or seeing half-written rows). The state
folder is created 0700 and the database 0600 (SQLite gives its WAL files the database's mode).

Example::

    reg = EndpointRegistry()
    reg.create_endpoint("demo", artifact="/runs/train/exp/artifact", backend="torch", port=8080)
    reg.get_endpoint("demo")["status"]   # 'Creating'
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from binsight.errors import BinsightError
from binsight.utils.sqlite import immediate_transaction

# Control-plane statuses, as SageMaker names them.
CREATING, IN_SERVICE, UPDATING, FAILED, DELETING = "Creating", "InService", "Updating", "Failed", "Deleting"
STATUSES = (CREATING, IN_SERVICE, UPDATING, FAILED, DELETING)
# Data-plane health of the current model server, kept apart from the status (see docs/endpoints.md).
HEALTHS = ("starting", "healthy", "unhealthy", "restarting", "stopped")

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS models (
    name TEXT PRIMARY KEY,
    artifact TEXT NOT NULL,
    artifact_name TEXT NOT NULL DEFAULT '',
    artifact_version TEXT NOT NULL DEFAULT '',
    endpoint TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS endpoint_configs (
    name TEXT PRIMARY KEY,
    model_name TEXT NOT NULL REFERENCES models(name),
    backend TEXT NOT NULL,
    options TEXT NOT NULL DEFAULT '{}',
    port INTEGER NOT NULL,
    endpoint TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS endpoints (
    name TEXT PRIMARY KEY,
    config_name TEXT NOT NULL REFERENCES endpoint_configs(name),
    pending_config TEXT,
    status TEXT NOT NULL,
    health TEXT NOT NULL DEFAULT 'starting',
    host TEXT NOT NULL,
    port INTEGER NOT NULL,
    url TEXT NOT NULL,
    supervisor_pid INTEGER,
    server_pid INTEGER,
    backend_port INTEGER,
    restarts INTEGER NOT NULL DEFAULT 0,
    failure_reason TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
"""
_ENDPOINT_FIELDS = {
    "config_name",
    "pending_config",
    "status",
    "health",
    "supervisor_pid",
    "server_pid",
    "backend_port",
    "restarts",
    "failure_reason",
}


def binsight_home() -> Path:
    """The state folder: ``$BINSIGHT_HOME`` or ``~/.local/state/binsight``."""
    home = os.environ.get("BINSIGHT_HOME")
    return Path(home).expanduser().resolve() if home else Path.home() / ".local" / "state" / "binsight"


def endpoint_dir(name: str, home: Path | None = None) -> Path:
    """Where an endpoint's logs live: ``$BINSIGHT_HOME/endpoints/NAME``."""
    return (home or binsight_home()) / "endpoints" / name


def private_dir(path: Path) -> Path:
    """Make ``path`` a folder only its owner can enter (0700), creating missing parents 0700 too; returns it."""
    if not path.parent.exists():
        private_dir(path.parent)
    path.mkdir(mode=0o700, exist_ok=True)
    path.chmod(0o700)
    return path


class EndpointRegistry:
    """Models, endpoint configs and endpoints in one SQLite file; safe for concurrent processes."""

    def __init__(self, home: str | Path | None = None) -> None:
        self.home = Path(home).resolve() if home else binsight_home()
        self.path = self.home / "endpoints.db"
        try:
            private_dir(self.home)
            # Never open+close an fd of a live database here: closing any fd drops the process's POSIX locks on it.
            if not self.path.exists():
                self.path.touch(mode=0o600)  # SQLite keeps an existing file's mode (and gives it to -wal/-shm)
            self.path.chmod(0o600)
            with self._connect() as conn:
                conn.execute("PRAGMA journal_mode=WAL")
                if conn.execute("PRAGMA user_version").fetchone()[0] == 0:
                    conn.executescript(_SCHEMA)
                    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except (sqlite3.Error, OSError) as exc:
            raise BinsightError(
                f"cannot open the endpoint registry {self.path}: {exc} (set BINSIGHT_HOME to a writable folder)"
            ) from None

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so a writer takes the lock up front.
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        """One write transaction: committed on success, rolled back on any exception."""
        return immediate_transaction(self._connect)

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        conn = self._connect()
        try:
            return [dict(row) for row in conn.execute(sql, params).fetchall()]
        finally:
            conn.close()

    # -- models and configs -------------------------------------------------------------------------

    @staticmethod
    def _insert_model_and_config(
        conn: sqlite3.Connection,
        endpoint: str,
        artifact: str,
        backend: str,
        port: int,
        options: dict[str, Any],
        model_meta: dict[str, str],
    ) -> str:
        now = time.time()
        # Unique object names like SageMaker's "<endpoint>-<suffix>" so an update never collides.
        suffix = f"{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:6]}"
        model_name, config_name = f"{endpoint}-model-{suffix}", f"{endpoint}-config-{suffix}"
        conn.execute(
            "INSERT INTO models (name, artifact, artifact_name, artifact_version, endpoint, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (model_name, artifact, model_meta.get("name", ""), model_meta.get("version", ""), endpoint, now),
        )
        conn.execute(
            "INSERT INTO endpoint_configs (name, model_name, backend, options, port, endpoint, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (config_name, model_name, backend, json.dumps(options, sort_keys=True), port, endpoint, now),
        )
        return config_name

    def create_endpoint(
        self,
        name: str,
        artifact: str,
        backend: str,
        port: int,
        host: str = "127.0.0.1",
        options: dict[str, Any] | None = None,
        model_meta: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Register model + endpoint config + endpoint (status Creating) in one transaction.

        Raises:
            BinsightError: the name or the port is already taken by another endpoint.
        """
        with self.transaction() as conn:
            row = conn.execute("SELECT status FROM endpoints WHERE name = ?", (name,)).fetchone()
            if row:
                raise BinsightError(
                    f"endpoint {name!r} already exists (status {row['status']}): "
                    f"use `binsight endpoint update {name} --model …` or delete it first"
                )
            row = conn.execute("SELECT name FROM endpoints WHERE port = ?", (port,)).fetchone()
            if row:
                raise BinsightError(f"port {port} is already used by endpoint {row['name']!r}; pick another --port")
            config = self._insert_model_and_config(conn, name, artifact, backend, port, options or {}, model_meta or {})
            now = time.time()
            conn.execute(
                "INSERT INTO endpoints (name, config_name, status, health, host, port, url, created_at, updated_at) "
                "VALUES (?, ?, ?, 'starting', ?, ?, ?, ?, ?)",
                (name, config, CREATING, host, port, f"http://{host}:{port}", now, now),
            )
        row = self.get_endpoint(name)
        assert row is not None  # written in the transaction above
        return row

    def begin_update(
        self, name: str, artifact: str, backend: str, options: dict[str, Any], model_meta: dict[str, str]
    ) -> str:
        """Register the new model + config and mark the endpoint Updating; returns the new config name.

        Raises:
            BinsightError: no such endpoint, or it is not InService (SageMaker refuses the same).
        """
        with self.transaction() as conn:
            row = conn.execute("SELECT status, port FROM endpoints WHERE name = ?", (name,)).fetchone()
            if not row:
                raise BinsightError(f"no endpoint named {name!r} (see `binsight endpoint list`)")
            if row["status"] != IN_SERVICE:
                raise BinsightError(
                    f"endpoint {name!r} is {row['status']}; only an InService endpoint can be updated "
                    "(wait for it, or delete and re-create it)"
                )
            config = self._insert_model_and_config(conn, name, artifact, backend, row["port"], options, model_meta)
            conn.execute(
                "UPDATE endpoints SET status = ?, pending_config = ?, failure_reason = NULL, updated_at = ? "
                "WHERE name = ?",
                (UPDATING, config, time.time(), name),
            )
        return config

    def drop_config(self, conn: sqlite3.Connection, config_name: str) -> None:
        """Delete an endpoint config and its model (inside the caller's transaction)."""
        row = conn.execute("SELECT model_name FROM endpoint_configs WHERE name = ?", (config_name,)).fetchone()
        conn.execute("DELETE FROM endpoint_configs WHERE name = ?", (config_name,))
        if row:
            used = conn.execute(
                "SELECT 1 FROM endpoint_configs WHERE model_name = ? LIMIT 1", (row["model_name"],)
            ).fetchone()
            if not used:
                conn.execute("DELETE FROM models WHERE name = ?", (row["model_name"],))

    def finish_update(self, name: str, new_config: str | None, error: str | None = None) -> None:
        """Commit (``new_config`` becomes current, the old config and model go) or roll back an update."""
        with self.transaction() as conn:
            row = conn.execute("SELECT config_name, pending_config FROM endpoints WHERE name = ?", (name,)).fetchone()
            if not row:
                return
            now = time.time()
            if error is None and new_config:
                conn.execute(
                    "UPDATE endpoints SET config_name = ?, pending_config = NULL, status = ?, failure_reason = NULL, "
                    "updated_at = ? WHERE name = ?",
                    (new_config, IN_SERVICE, now, name),
                )
                self.drop_config(conn, row["config_name"])
            else:
                conn.execute(
                    "UPDATE endpoints SET pending_config = NULL, status = ?, failure_reason = ?, updated_at = ? "
                    "WHERE name = ?",
                    (IN_SERVICE, f"update failed: {error}", now, name),
                )
                if row["pending_config"]:
                    self.drop_config(conn, row["pending_config"])

    # -- endpoints ----------------------------------------------------------------------------------

    def set_endpoint(self, name: str, **fields: Any) -> bool:
        """Update some columns of an endpoint; returns False when the row is gone (deleted meanwhile)."""
        unknown = set(fields) - _ENDPOINT_FIELDS
        if unknown:
            raise ValueError(f"unknown endpoint fields: {sorted(unknown)}")
        if "status" in fields and fields["status"] not in STATUSES:
            raise ValueError(f"bad status {fields['status']!r}")
        if "health" in fields and fields["health"] not in HEALTHS:
            raise ValueError(f"bad health {fields['health']!r}")
        cols = ", ".join(f"{k} = ?" for k in fields)
        with self.transaction() as conn:
            cur = conn.execute(
                f"UPDATE endpoints SET {cols}, updated_at = ? WHERE name = ?",  # noqa: S608 - names checked above
                (*fields.values(), time.time(), name),
            )
            return cur.rowcount > 0

    def increment_restarts(self, name: str) -> int:
        """Count one more restart of the endpoint's model server; returns the new count."""
        with self.transaction() as conn:
            conn.execute(
                "UPDATE endpoints SET restarts = restarts + 1, updated_at = ? WHERE name = ?", (time.time(), name)
            )
            row = conn.execute("SELECT restarts FROM endpoints WHERE name = ?", (name,)).fetchone()
        return int(row["restarts"]) if row else 0

    def get_endpoint(self, name: str) -> dict[str, Any] | None:
        """The endpoint joined with its current config and model, or None."""
        rows = self._read(_ENDPOINT_VIEW + " WHERE e.name = ?", (name,))
        return _decode(rows[0]) if rows else None

    def list_endpoints(self) -> list[dict[str, Any]]:
        return [_decode(r) for r in self._read(_ENDPOINT_VIEW + " ORDER BY e.created_at")]

    def get_config(self, config_name: str) -> dict[str, Any] | None:
        """An endpoint config joined with its model (artifact path, model name/version)."""
        rows = self._read(
            "SELECT c.name AS config_name, c.backend, c.options, c.port, c.model_name, m.artifact, "
            "m.artifact_name, m.artifact_version FROM endpoint_configs c "
            "JOIN models m ON m.name = c.model_name WHERE c.name = ?",
            (config_name,),
        )
        if not rows:
            return None
        row = rows[0]
        row["options"] = json.loads(row["options"] or "{}")
        return row

    def list_models(self) -> list[dict[str, Any]]:
        return self._read("SELECT * FROM models ORDER BY created_at")

    def list_configs(self) -> list[dict[str, Any]]:
        return self._read("SELECT * FROM endpoint_configs ORDER BY created_at")

    def remove_endpoint(self, name: str) -> dict[str, list[str]]:
        """Delete the endpoint row and every config and model that belonged to it; returns what went."""
        removed: dict[str, list[str]] = {"endpoints": [], "endpoint_configs": [], "models": []}
        with self.transaction() as conn:
            if conn.execute("DELETE FROM endpoints WHERE name = ?", (name,)).rowcount:
                removed["endpoints"].append(name)
            for table in ("endpoint_configs", "models"):
                names = conn.execute(f"SELECT name FROM {table} WHERE endpoint = ? ORDER BY name", (name,))  # noqa: S608
                removed[table] = [r[0] for r in names]
            conn.execute("DELETE FROM endpoint_configs WHERE endpoint = ?", (name,))
            conn.execute("DELETE FROM models WHERE endpoint = ?", (name,))
        return removed

    def remove_all(self) -> dict[str, list[str]]:
        """Delete every endpoint, endpoint config and model row; returns the names removed."""
        with self.transaction() as conn:
            removed = {
                "endpoints": [r[0] for r in conn.execute("SELECT name FROM endpoints ORDER BY name")],
                "endpoint_configs": [r[0] for r in conn.execute("SELECT name FROM endpoint_configs ORDER BY name")],
                "models": [r[0] for r in conn.execute("SELECT name FROM models ORDER BY name")],
            }
            conn.execute("DELETE FROM endpoints")
            conn.execute("DELETE FROM endpoint_configs")
            conn.execute("DELETE FROM models")
        return removed


_ENDPOINT_VIEW = (
    "SELECT e.*, c.backend, c.options, c.model_name, m.artifact, m.artifact_name, m.artifact_version "
    "FROM endpoints e LEFT JOIN endpoint_configs c ON c.name = e.config_name "
    "LEFT JOIN models m ON m.name = c.model_name"
)


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    row["options"] = json.loads(row.get("options") or "{}")
    return row
