"""SQLite write transactions that take the write lock up front (``BEGIN IMMEDIATE``) and commit atomically."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def immediate_transaction(connect: Callable[[], sqlite3.Connection]) -> Iterator[sqlite3.Connection]:
    """One write transaction on a fresh connection from ``connect`` (opened with ``isolation_level=None``):
    committed on success, rolled back on any exception, closed either way."""
    conn = connect()
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    finally:
        conn.close()
