"""Chats, stored completions and deep-research jobs in one SQLite file (WAL mode).

The embedded default: nothing to set up, one server per file. Every
operation is written once, as a method taking the connection, and awaited by
callers: it runs on the store's one SQLite worker thread (``_sqlite.on_worker``).
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from apex_grpc_server._store.interface import StoreUnavailable
from apex_grpc_server._store.rows import SELECT_USER_IDS, user_id_secret
from apex_grpc_server._store.sqlite.chats import SqliteChats, SqliteCompletions
from apex_grpc_server._store.sqlite.connection import SqliteWorker
from apex_grpc_server._store.sqlite.idempotency_keys import SqliteKeys
from apex_grpc_server._store.sqlite.jobs import SqliteJobs
from apex_grpc_server._store.sqlite.schema import migrate


class SqliteStore:
    """The server's database in one SQLite file (``apex.sqlite3`` in the data directory).

    Open it as the PostgreSQL store opens: ``await SqliteStore.open(path)``. The
    constructor does the same synchronously (it blocks on the migration).
    """

    @classmethod
    async def open(cls, path: Path) -> SqliteStore:
        """Open (creating and migrating) the SQLite file at ``path``, off the event loop."""
        return await asyncio.to_thread(cls, path)

    def __init__(self, path: Path) -> None:
        self.path = path
        self.worker = SqliteWorker(path, "apex-grpc-store")
        try:
            self.schema_version = self.worker.call(lambda: migrate(self.worker.conn))
            meta = self.worker.call(lambda: self.worker.conn.execute(SELECT_USER_IDS).fetchall())
        except BaseException:
            self.worker.close()
            raise
        self.chats = SqliteChats(self.worker)
        self.completions = SqliteCompletions(self.worker)
        self.jobs = SqliteJobs(self.worker)
        self.keys = SqliteKeys(self.worker)
        self.user_id_secret = user_id_secret(dict(meta))
        """The secret of this database's user ids (None: the old unsalted ids)."""

    async def ping(self, timeout_s: float) -> None:
        """Run ``SELECT 1`` on the store's connection (a local file: it answers unless broken).

        Raises StoreUnavailable when it does not answer within `timeout_s`.
        """
        try:
            async with asyncio.timeout(timeout_s):
                await self.worker.run(lambda: self.worker.conn.execute("SELECT 1").fetchone())
        except (sqlite3.Error, TimeoutError) as error:
            raise StoreUnavailable(f"SQLite at {self.path}: {error or 'no answer'}") from None

    async def close(self) -> None:
        """Close the database."""
        await asyncio.to_thread(self.worker.close)


__all__ = ["SqliteStore"]
