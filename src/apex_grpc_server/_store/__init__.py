"""Chats, stored completions and deep-research jobs in one SQLite database (WAL mode).

``Store(path)`` opens ``apex.sqlite3``; its tables are attributes:
``store.chats`` (chats and the completions in them), ``store.completions``
(completions by id) and ``store.jobs`` (deep-research jobs). Every operation
is written once, as a method taking the connection, and awaited by callers:
it runs on the store's one SQLite worker thread (``_sqlite.on_worker``).
"""

from __future__ import annotations

from pathlib import Path

from apex_grpc_server._sqlite import SqliteWorker, transaction
from apex_grpc_server._store._chats import ChatTable, CompletionTable
from apex_grpc_server._store._jobs import JobTable
from apex_grpc_server._store._rows import (
    DEEP_RESEARCH_KEY,
    SCHEMA,
    SCHEMA_VERSION,
    ChatRow,
    CompletionRow,
    JobRow,
    NewCompletion,
    default_title,
)


class Store:
    """The server's database: ``apex.sqlite3`` in the data directory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.worker = SqliteWorker(path, "apex-grpc-store")
        self.worker.call(self._open)
        self.chats = ChatTable(self.worker)
        self.completions = CompletionTable(self.worker)
        self.jobs = JobTable(self.worker)

    def _open(self) -> None:
        conn = self.worker.conn
        conn.executescript(SCHEMA)
        with transaction(conn):
            conn.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )

    def close(self) -> None:
        """Close the database."""
        self.worker.close()


__all__ = [
    "DEEP_RESEARCH_KEY",
    "ChatRow",
    "CompletionRow",
    "JobRow",
    "NewCompletion",
    "Store",
    "default_title",
]
