"""Reading a store's tables behind its back, on either backend (the store tests' helper)."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from typing import Any

from apex_grpc_server._store import Storage
from apex_grpc_server._store.sql import qmark


async def scalar(store: Storage, query: str, *params: Any) -> Any:
    """The first column of the first row ``query`` (``%s`` placeholders) finds in ``store``."""
    if hasattr(store, "db"):  # PostgreSQL
        async with store.db.read() as cur:
            await cur.execute(query, params)
            row = await cur.fetchone()
    else:  # SQLite: a connection of our own (WAL mode lets it read beside the store's)
        with closing(sqlite3.connect(store.path)) as conn:
            row = conn.execute(qmark(query), params).fetchone()
    assert row is not None, query
    return row[0]
