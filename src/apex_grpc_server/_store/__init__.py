"""Chats, stored completions and deep-research jobs: one interface, two backends.

``await open_store(database_url, data_dir)`` returns a ``Storage``
(``_store.interface``): SQLite in one file (the embedded default, one
server) or PostgreSQL (``postgresql://...``, shared by a fleet of replicas).
Its tables are attributes: ``store.chats`` (chats and the completions in
them), ``store.completions`` (completions by id) and ``store.jobs``
(deep-research jobs and their leases); every operation is awaited.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from apex_grpc_server._store import url as _database
from apex_grpc_server._store.interface import (
    ChatStore,
    CompletionStore,
    JobStore,
    Storage,
)
from apex_grpc_server._store.rows import (
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


async def open_store(database_url: str | None, data_dir: Path) -> Storage:
    """Open (and migrate) the database ``database_url`` names; None: SQLite in ``data_dir``."""
    target = _database.parse(database_url, data_dir)
    if target.kind == "sqlite":
        from apex_grpc_server._store.sqlite.store import SqliteStore

        assert target.path is not None
        return await asyncio.to_thread(SqliteStore, target.path)
    _database.check_driver(target)
    from apex_grpc_server._store.postgres.store import PostgresStore

    assert target.url is not None
    return await PostgresStore.open(target.url)


__all__ = [
    "DEEP_RESEARCH_KEY",
    "SCHEMA_VERSION",
    "ChatRow",
    "ChatStore",
    "ClaimedJob",
    "CompletionRow",
    "CompletionStore",
    "JobRow",
    "JobStore",
    "Listings",
    "NewCompletion",
    "Storage",
    "default_title",
    "open_store",
]
