"""The connection pool every PostgreSQL table shares, and a transaction taken from it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import psycopg
from psycopg import AsyncConnection, AsyncCursor, AsyncPipeline
from psycopg_pool import AsyncConnectionPool

Pool = AsyncConnectionPool[AsyncConnection[tuple[Any, ...]]]
Cursor = AsyncCursor[tuple[Any, ...]]


class PipelinedCursor(AsyncCursor[tuple[Any, ...]]):
    """A transaction's cursor in pipeline mode: a statement is sent without waiting for its result.

    A write that needs no result until COMMIT thus costs one round trip to
    the database instead of one per statement. ``fetchone``/``fetchmany``/
    ``fetchall`` first wait for the results of every statement sent so far
    (``settle``), so they read the last statement's rows, and raise the error
    of any statement that failed. ``rowcount`` is not known until then:
    ``await affected()`` settles and returns it (the property raises instead
    of answering with a stale count).
    """

    def __init__(self, connection: AsyncConnection[Any], pipeline: AsyncPipeline) -> None:
        super().__init__(connection)
        self.pipeline = pipeline

    async def settle(self) -> None:
        """Wait for the results of every statement sent so far; raises the first one's error."""
        await self.pipeline.sync()

    async def affected(self) -> int:
        """The number of rows the last statement changed, once its result is in."""
        await self.settle()
        return super().rowcount

    @property
    def rowcount(self) -> int:
        """Not available in a pipeline before ``settle()``: use ``await affected()``."""
        raise TypeError("a pipelined statement's rowcount: use `await cursor.affected()`")

    async def fetchone(self) -> tuple[Any, ...] | None:
        """The next row of the last statement's result, once every result is in."""
        await self.settle()
        return await super().fetchone()

    async def fetchmany(self, size: int = 0) -> list[tuple[Any, ...]]:
        """The next ``size`` rows of the last statement's result, once every result is in."""
        await self.settle()
        return await super().fetchmany(size)

    async def fetchall(self) -> list[tuple[Any, ...]]:
        """The remaining rows of the last statement's result, once every result is in."""
        await self.settle()
        return await super().fetchall()


class Database:
    """A psycopg pool of autocommit connections.

    ``transaction()`` lends a cursor inside BEGIN ... COMMIT (every write, and
    reads of several statements that must agree), its statements pipelined;
    ``read()`` lends one whose single statement runs on its own, one round
    trip instead of three.
    """

    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[PipelinedCursor]:
        """A pipelined cursor in one transaction: committed when the block ends, else rolled back.

        BEGIN, the block's statements and COMMIT leave in one flight; only a
        fetch (or ``affected()``) in the block waits for the results so far.
        So a write that reads nothing (a new chat with its first completion)
        is one round trip. The COMMIT's result is awaited before the block
        ends, and it returns once PostgreSQL has made the write durable
        (synchronous_commit is on for every connection), so a caller that
        answers after this block never acknowledges a write it could lose.

        A statement's error surfaces at the next fetch, or at the end of the
        block, as the same psycopg error as outside a pipeline; PostgreSQL
        skips every statement after it (COMMIT included), and the transaction
        is rolled back here, as it is when the block raises.
        """
        async with self.pool.connection() as conn:
            try:
                async with conn.pipeline() as pipeline:
                    cursor = PipelinedCursor(conn, pipeline)
                    await cursor.execute("BEGIN")
                    yield cursor
                    await cursor.execute("COMMIT")
            except BaseException:
                await _roll_back(conn)
                raise

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[Cursor]:
        """A cursor for one read-only statement, outside any transaction."""
        async with self.pool.connection() as conn, conn.cursor() as cursor:
            yield cursor


async def _roll_back(conn: AsyncConnection[Any]) -> None:
    """End a failed transaction (a no-op when none is open), keeping the error that failed it.

    A connection too broken to roll back is discarded by the pool when it
    comes back; the caller still sees the first error, not this one.
    """
    with contextlib.suppress(psycopg.Error):
        await conn.rollback()
