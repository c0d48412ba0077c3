"""The review queue and its answers in SQLite: ``review.db`` inside the audit folder.

Every change is one ``BEGIN IMMEDIATE`` transaction committed before the HTTP answer goes out, in WAL mode with
``synchronous=FULL``: a killed server loses no answer it confirmed, and a reader never sees half a change.
Two reviewers never hold the same bin: ``next`` leases a bin to one reviewer for ``lease_seconds``; an answer
needs the lease (or a lapsed lease nobody else took), and a lapsed lease returns the bin to the queue.

Answers: ``0``-``5`` (the count), ``more`` (more than 5), ``unsure`` (looked, cannot tell: the bin leaves the
queue but gives no label), ``skip`` (not me: the bin stays in the queue for the others). Undo takes back the
reviewer's last answer and gives the bin back to them.
"""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from binsight.errors import BinsightError
from binsight.utils.sqlite import immediate_transaction

DB_FILE = "review.db"
ANSWERS = ("0", "1", "2", "3", "4", "5", "more", "unsure", "skip")
# Decisions of the audit that go into the queue by default (confirmed bins only with include_confirmed).
QUEUE_DECISIONS = ("count", "mismatch", "review")

SCHEMA = """
CREATE TABLE IF NOT EXISTS bins (
    id INTEGER PRIMARY KEY,
    rank INTEGER NOT NULL,
    bin_id TEXT NOT NULL,
    location TEXT NOT NULL,
    photo TEXT,
    expected INTEGER,
    predicted INTEGER,
    p_wrong REAL,
    decision TEXT NOT NULL,
    reason TEXT NOT NULL,
    probabilities TEXT NOT NULL,
    sha256 TEXT,
    UNIQUE (bin_id, location)  -- one photo may stand for several bins (a capture of the same photo twice)
);
CREATE TABLE IF NOT EXISTS leases (
    bin INTEGER PRIMARY KEY REFERENCES bins(id),
    reviewer TEXT NOT NULL,
    expires REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS answers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    bin INTEGER NOT NULL REFERENCES bins(id),
    reviewer TEXT NOT NULL,
    answer TEXT NOT NULL,
    count INTEGER,
    answered_at TEXT NOT NULL,
    undone INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS answers_bin ON answers(bin, undone);
CREATE INDEX IF NOT EXISTS answers_reviewer ON answers(reviewer, undone);
"""
# A bin is settled once it has a live answer other than skip.
_SETTLED = "EXISTS (SELECT 1 FROM answers a WHERE a.bin = b.id AND a.undone = 0 AND a.answer != 'skip')"


class Conflict(BinsightError):
    """The bin is not this reviewer's to answer (leased to another, or already answered)."""


class ReviewStore:
    """The queue of one audit folder.

    Args:
        audit_dir: A folder written by ``binsight audit`` (holds ``audit.json``; ``review.db`` is created there).
        lease_seconds: How long a bin stays with the reviewer it was given to.
        clock: Seconds since the epoch (tests pass a fake one to expire leases).
    """

    def __init__(self, audit_dir: str | Path, lease_seconds: float = 300.0, clock=time.time) -> None:
        self.audit_dir = Path(audit_dir)
        self.path = self.audit_dir / DB_FILE
        self.lease_seconds = float(lease_seconds)
        self.clock = clock
        with self.transaction() as conn:
            for statement in filter(str.strip, SCHEMA.split(";")):
                conn.execute(statement)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    def transaction(self):
        """One atomic write (see :func:`binsight.utils.sqlite.immediate_transaction`)."""
        return immediate_transaction(self._connect)

    # -- the queue -------------------------------------------------------------------------------------------
    def import_audit(self, include_confirmed: bool = False) -> int:
        """Add the audit's bins (review order) to the queue; bins already there keep their answers.

        Returns:
            The number of bins added.

        Raises:
            BinsightError: no ``audit.json`` in the folder.
        """
        source = self.audit_dir / "audit.json"
        if not source.is_file():
            raise BinsightError(f"{source} does not exist: run `binsight audit SOURCE --out {self.audit_dir}` first")
        rows = json.loads(source.read_text(encoding="utf-8"))["rows"]
        decisions = QUEUE_DECISIONS + (("confirmed",) if include_confirmed else ())
        added = 0
        with self.transaction() as conn:
            for row in rows:
                if row["decision"] not in decisions or not row.get("photo"):
                    continue
                cur = conn.execute(
                    "INSERT OR IGNORE INTO bins (rank, bin_id, location, photo, expected, predicted, p_wrong, "
                    "decision, reason, probabilities, sha256) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        row["rank"],
                        row["bin_id"],
                        row["location"],
                        row["photo"],
                        row["expected"],
                        row["predicted_count"],
                        row["p_wrong"],
                        row["decision"],
                        row["reason"],
                        json.dumps(row["probabilities"]),
                        row["sha256"],
                    ),
                )
                added += cur.rowcount
        return added

    def next_bin(self, reviewer: str) -> dict[str, Any] | None:
        """The bin this reviewer should look at now (leased to them), or None when nothing is left for them."""
        now = self.clock()
        with self.transaction() as conn:
            conn.execute("DELETE FROM leases WHERE expires <= ?", (now,))
            held = conn.execute("SELECT bin FROM leases WHERE reviewer = ? ORDER BY expires LIMIT 1", (reviewer,))
            row = held.fetchone()
            if row is None:
                row = conn.execute(
                    f"SELECT b.id AS bin FROM bins b WHERE NOT {_SETTLED} "
                    "AND NOT EXISTS (SELECT 1 FROM leases l WHERE l.bin = b.id) "
                    "AND NOT EXISTS (SELECT 1 FROM answers s WHERE s.bin = b.id AND s.undone = 0 "
                    "AND s.answer = 'skip' AND s.reviewer = ?) ORDER BY b.rank LIMIT 1",
                    (reviewer,),
                ).fetchone()
                if row is None:
                    return None
            conn.execute(
                "INSERT OR REPLACE INTO leases (bin, reviewer, expires) VALUES (?, ?, ?)",
                (row["bin"], reviewer, now + self.lease_seconds),
            )
            return self._bin(conn, row["bin"])

    def answer(self, reviewer: str, bin_id: int, answer: str) -> int:
        """Record ``answer`` for bin ``bin_id`` (the store's id); returns the answer's id.

        Raises:
            BinsightError: an answer that is not one of :data:`ANSWERS`, or an unknown bin.
            Conflict: the bin is leased to another reviewer, or already settled.
        """
        if answer not in ANSWERS:
            raise BinsightError(f"answer {answer!r} is not one of {', '.join(ANSWERS)}")
        now = self.clock()
        with self.transaction() as conn:
            if conn.execute("SELECT 1 FROM bins WHERE id = ?", (bin_id,)).fetchone() is None:
                raise BinsightError(f"no bin {bin_id} in this review")
            lease = conn.execute("SELECT reviewer, expires FROM leases WHERE bin = ?", (bin_id,)).fetchone()
            if lease is not None and lease["reviewer"] != reviewer and lease["expires"] > now:
                raise Conflict(f"bin {bin_id} is being reviewed by {lease['reviewer']}")
            settled = conn.execute(
                "SELECT reviewer FROM answers WHERE bin = ? AND undone = 0 AND answer != 'skip'", (bin_id,)
            ).fetchone()
            if settled is not None:
                raise Conflict(f"bin {bin_id} was already answered by {settled['reviewer']}")
            count = int(answer) if answer.isdigit() else None
            cur = conn.execute(
                "INSERT INTO answers (bin, reviewer, answer, count, answered_at) VALUES (?, ?, ?, ?, ?)",
                (bin_id, reviewer, answer, count, datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds")),
            )
            conn.execute("DELETE FROM leases WHERE bin = ?", (bin_id,))
            return int(cur.lastrowid)

    def undo(self, reviewer: str) -> dict[str, Any] | None:
        """Take back this reviewer's last live answer and lease its bin to them again; None if there is none."""
        now = self.clock()
        with self.transaction() as conn:
            last = conn.execute(
                "SELECT id, bin FROM answers WHERE reviewer = ? AND undone = 0 ORDER BY id DESC LIMIT 1", (reviewer,)
            ).fetchone()
            if last is None:
                return None
            conn.execute("UPDATE answers SET undone = 1 WHERE id = ?", (last["id"],))
            conn.execute("DELETE FROM leases WHERE reviewer = ?", (reviewer,))  # the bin they had goes back
            conn.execute(
                "INSERT OR REPLACE INTO leases (bin, reviewer, expires) VALUES (?, ?, ?)",
                (last["bin"], reviewer, now + self.lease_seconds),
            )
            return self._bin(conn, last["bin"])

    def progress(self, reviewer: str | None = None) -> dict[str, int]:
        """Queue totals: ``total``, ``settled``, ``remaining``, ``leased``, and ``mine`` (this reviewer's answers)."""
        conn = self._connect()
        try:
            total = conn.execute("SELECT COUNT(*) FROM bins").fetchone()[0]
            settled = conn.execute(f"SELECT COUNT(*) FROM bins b WHERE {_SETTLED}").fetchone()[0]
            leased = conn.execute("SELECT COUNT(*) FROM leases WHERE expires > ?", (self.clock(),)).fetchone()[0]
            mine = conn.execute(
                "SELECT COUNT(*) FROM answers WHERE reviewer = ? AND undone = 0 AND answer != 'skip'", (reviewer,)
            ).fetchone()[0]
        finally:
            conn.close()
        return {"total": total, "settled": settled, "remaining": total - settled, "leased": leased, "mine": mine}

    def photo_path(self, bin_id: int) -> Path | None:
        conn = self._connect()
        try:
            row = conn.execute("SELECT photo FROM bins WHERE id = ?", (bin_id,)).fetchone()
        finally:
            conn.close()
        return Path(row["photo"]) if row and row["photo"] else None

    def settled_answers(self) -> list[dict[str, Any]]:
        """The live answer of every settled bin, with the bin's record, in review order."""
        conn = self._connect()
        try:
            rows = conn.execute(
                "SELECT b.id AS bin, b.bin_id, b.location, b.photo, b.expected, b.predicted, a.answer, a.count, "
                "a.reviewer, a.answered_at FROM answers a JOIN bins b ON b.id = a.bin "
                "WHERE a.undone = 0 AND a.answer != 'skip' ORDER BY b.rank"
            ).fetchall()
        finally:
            conn.close()
        return [dict(r) for r in rows]

    @staticmethod
    def _bin(conn: sqlite3.Connection, bin_id: int) -> dict[str, Any]:
        row = dict(conn.execute("SELECT * FROM bins WHERE id = ?", (bin_id,)).fetchone())
        row["probabilities"] = json.loads(row["probabilities"])
        return row
