"""Idempotency keys in SQLite (see ``_store.idempotency_keys``): looked up, stored, swept."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from apex_grpc_server._store import idempotency_keys as keys
from apex_grpc_server._store.sql import qmark
from apex_grpc_server._store.sqlite.connection import SqliteWorker, on_worker


class SqliteKeys:
    """The ``idempotency_keys`` table."""

    def __init__(self, worker: SqliteWorker) -> None:
        self.worker = worker
        self.next_sweep = 0.0

    @on_worker
    def get(self, conn: sqlite3.Connection, user_id: str, key: str) -> keys.Remembered | None:
        """The user's live record of ``key``, if any (expired records are deleted now and then)."""
        if time.monotonic() >= self.next_sweep:
            self.next_sweep = time.monotonic() + keys.SWEEP_EVERY_S
            conn.execute(qmark(keys.SWEEP_KEYS), (keys.cutoff_us(),))  # autocommit
        row = conn.execute(qmark(keys.SELECT_KEY), (user_id, key, keys.cutoff_us())).fetchone()
        return keys.remembered(row)


def remember(
    conn: sqlite3.Connection, user_id: str, record: keys.KeyRecord | None, result: Any
) -> None:
    """Store ``record`` of a write that returned ``result``, inside the write's transaction.

    Raises KeyTaken (the caller's transaction then rolls the write back) when
    the key was stored first by another write.
    """
    if record is None:
        return
    if conn.execute(qmark(keys.INSERT_KEY), keys.insert_params(user_id, record, result)).rowcount:
        return
    row = conn.execute(qmark(keys.SELECT_KEY), (user_id, record.key, keys.cutoff_us())).fetchone()
    found = keys.remembered(row)
    assert found is not None  # the insert found a live record of this key
    raise keys.KeyTaken(found)
