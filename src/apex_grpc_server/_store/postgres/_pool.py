"""The connection pool every PostgreSQL table shares, and a transaction taken from it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from psycopg import AsyncConnection, AsyncCursor
from psycopg_pool import AsyncConnectionPool

Pool = AsyncConnectionPool[AsyncConnection[tuple[Any, ...]]]
Cursor = AsyncCursor[tuple[Any, ...]]


class Database:
    """A psycopg pool of autocommit connections.

    ``transaction()`` lends a cursor inside BEGIN ... COMMIT (every write, and
    reads of several statements that must agree); ``read()`` lends one whose
    single statement runs on its own, one round trip instead of three.
    """

    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncCursor[tuple[Any, ...]]]:
        """A cursor in one transaction: committed when the block ends, rolled back on error.

        The COMMIT returns once PostgreSQL has made the write durable
        (synchronous_commit is on for every connection), so a caller that
        answers after this block never acknowledges a write it could lose.
        """
        async with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cursor:
            yield cursor

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncCursor[tuple[Any, ...]]]:
        """A cursor for one read-only statement, outside any transaction."""
        async with self.pool.connection() as conn, conn.cursor() as cursor:
            yield cursor
