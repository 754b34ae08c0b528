"""Chats, stored completions and deep-research jobs: one interface, two backends.

``await open_store(database_url, data_dir)`` returns a ``Storage``
(``_store._interface``): SQLite in one file (the embedded default, one
server) or PostgreSQL (``postgresql://...``, shared by a fleet of replicas).
Its tables are attributes: ``store.chats`` (chats and the completions in
them), ``store.completions`` (completions by id) and ``store.jobs``
(deep-research jobs and their leases); every operation is awaited.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from apex_grpc_server import _database
from apex_grpc_server._config import DEFAULT_STORE_WAIT_S
from apex_grpc_server._store._interface import (
    ChatStore,
    CompletionStore,
    ConnectionLost,
    JobStore,
    Storage,
    StoreBusy,
    StoreUnavailable,
)
from apex_grpc_server._store._rows import (
    DEEP_RESEARCH_KEY,
    SCHEMA_VERSION,
    ChatRow,
    ClaimedJob,
    CompletionRow,
    JobRow,
    Listings,
    NewCompletion,
    default_title,
)
from apex_grpc_server._store.sqlite import SqliteStore


async def open_store(
    database_url: str | None, data_dir: Path, *, wait_s: float = DEFAULT_STORE_WAIT_S
) -> Storage:
    """Open (and migrate) the database ``database_url`` names; None: SQLite in ``data_dir``.

    `wait_s`: the longest a PostgreSQL operation waits for a pooled connection or a lock.
    """
    target = _database.parse(database_url, data_dir)
    if target.kind == "sqlite":
        assert target.path is not None
        return await asyncio.to_thread(SqliteStore, target.path)
    _database.check_driver(target)
    from apex_grpc_server._store.postgres import PostgresStore

    assert target.url is not None
    return await PostgresStore.open(target.url, wait_s=wait_s)


__all__ = [
    "DEEP_RESEARCH_KEY",
    "SCHEMA_VERSION",
    "ChatRow",
    "ChatStore",
    "ClaimedJob",
    "CompletionRow",
    "CompletionStore",
    "ConnectionLost",
    "JobRow",
    "JobStore",
    "Listings",
    "NewCompletion",
    "SqliteStore",
    "Storage",
    "StoreBusy",
    "StoreUnavailable",
    "default_title",
    "open_store",
]
