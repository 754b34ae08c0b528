"""Chats, stored completions and deep-research jobs: one interface, two backends.

``await open_store(config.database)`` (the target ``ServerConfig`` parsed once
from its ``database_url``, see ``url.py``) returns a ``Storage``
(``interface.py``): SQLite in one file (the embedded default, one server,
``sqlite/``) or PostgreSQL (``postgresql://...``, shared by a fleet of replicas,
``postgres/``). Both open the same way (``await SqliteStore.open(path)``,
``await PostgresStore.open(url)``) and name their tables alike (``SqliteChats`` /
``PostgresChats``, ...). Its tables are attributes: ``store.chats`` (chats and
the completions in them), ``store.completions`` (completions by id) and
``store.jobs`` (deep-research jobs and their leases); every operation is awaited.
"""

from __future__ import annotations

from apex_grpc_server._store.interface import (
    DEFAULT_WAIT_S,
    ChatStore,
    CompletionStore,
    ConnectionLost,
    JobStore,
    Storage,
    StoreBusy,
    StoreUnavailable,
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
from apex_grpc_server._store.url import DatabaseTarget


async def open_store(target: DatabaseTarget, *, wait_s: float = DEFAULT_WAIT_S) -> Storage:
    """Open (and migrate) the database ``target`` names (``ServerConfig.database``).

    `wait_s`: the longest a PostgreSQL operation waits for a pooled connection or a lock.
    """
    if target.kind == "sqlite":
        from apex_grpc_server._store.sqlite.store import SqliteStore

        assert target.path is not None
        return await SqliteStore.open(target.path)
    from apex_grpc_server._store.postgres.store import PostgresStore

    assert target.url is not None
    return await PostgresStore.open(target.url, wait_s=wait_s)


__all__ = [
    "DEEP_RESEARCH_KEY",
    "DEFAULT_WAIT_S",
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
    "Storage",
    "StoreBusy",
    "StoreUnavailable",
    "default_title",
    "open_store",
]
