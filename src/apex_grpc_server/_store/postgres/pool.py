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

    A fetch (``fetchone``, ``fetchall``...) waits for the results sent so far,
    as psycopg does in a pipeline, and raises the error of a statement that
    failed. ``rowcount`` is not known before then: ``await affected()`` waits
    and returns it (the property raises rather than answer a stale count).
    """

    def __init__(self, connection: AsyncConnection[Any], pipeline: AsyncPipeline) -> None:
        super().__init__(connection)
        self.pipeline = pipeline

    async def affected(self) -> int:
        """The number of rows the last statement changed, once every result so far is in."""
        await self.pipeline.sync()
        return super().rowcount

    @property
    def rowcount(self) -> int:
        """Not known in a pipeline until the results are in: use ``await affected()``."""
        raise TypeError("a pipelined statement's rowcount: use `await cursor.affected()`")


class Database:
    """A psycopg pool of autocommit connections.

    ``transaction()`` lends a cursor inside BEGIN ... COMMIT (writes, and reads
    of several statements that must agree), its statements pipelined;
    ``read()`` lends one whose statement runs on its own: one round trip for
    a read, or for a write that is one statement.
    """

    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[PipelinedCursor]:
        """A pipelined cursor in one transaction: committed when the block ends, else rolled back.

        BEGIN, the block's statements and COMMIT leave in one flight; only a
        fetch (or ``affected()``) in the block waits for the results so far.
        So a write that reads nothing is one round trip, and each read adds
        one (a keyed write reads its key INSERT's row count). The COMMIT's result is awaited
        before the block ends, and it returns once PostgreSQL has made the
        write durable (synchronous_commit is on for every connection), so a
        caller that answers after this block never acknowledges a write it
        could lose.

        A statement's error surfaces later than outside a pipeline (at a
        later statement once PostgreSQL's answer is in, at the next fetch or
        ``affected()``, or at the end of the block) but as the same psycopg
        error; PostgreSQL skips every statement after it (COMMIT included),
        and the transaction is rolled back, as it is when the block raises.
        """
        # Leaving pool.connection() with an error rolls the transaction back.
        async with self.pool.connection() as conn, conn.pipeline() as pipeline:
            cursor = PipelinedCursor(conn, pipeline)
            await cursor.execute("BEGIN")
            try:
                yield cursor
                await cursor.execute("COMMIT")
            except BaseException:
                # Take in the rest of the failed flight (the statements
                # PostgreSQL skipped), so leaving the pipeline is quiet.
                with contextlib.suppress(psycopg.Error):
                    await pipeline.sync()
                raise

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[Cursor]:
        """A cursor outside any transaction: each statement commits on its own (autocommit).

        For reads, and for a write that one statement makes whole (a new chat
        with its first completion, ``PostgresChats.create``).
        """
        async with self.pool.connection() as conn, conn.cursor() as cursor:
            yield cursor
