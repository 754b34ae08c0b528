"""The connection pool every PostgreSQL table shares, and a transaction taken from it."""

from __future__ import annotations

import contextlib
import select
import time
from collections.abc import AsyncIterator
from typing import Any

import psycopg
from psycopg import AsyncConnection, AsyncCursor, AsyncPipeline
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from apex_grpc_server._store.interface import ConnectionLost, StoreBusy, StoreUnavailable
from apex_grpc_server._store.url import redact

Connection = AsyncConnection[tuple[Any, ...]]
Pool = AsyncConnectionPool[Connection]
Cursor = AsyncCursor[tuple[Any, ...]]

RECONNECT_S = 2.0
"""How long the pool retries (1 s apart) to replace a connection before it gives up on it:
a later call asks for a new one at once, so the pool heals within about a second of the
database coming back, not after the driver's growing backoff (up to minutes)."""
BUSY_PUSHBACK_MS = 500
"""When a caller refused for want of a free connection (or lock) is told to retry."""


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

    def __init__(
        self, conninfo: str, settings: dict[str, Any], *, size: int, wait_s: float
    ) -> None:
        self.pool: Pool = AsyncConnectionPool(
            conninfo,
            min_size=1,
            max_size=size,
            kwargs=settings,
            open=False,
            timeout=wait_s,
            reconnect_timeout=RECONNECT_S,
            configure=self._connected,
            name="apex-grpc-store",
        )
        self.wait_s = wait_s
        """The longest an operation waits for a pooled connection (and, in PostgreSQL, a lock)."""
        self._failed_connects = 0
        """The pool's failed connection attempts as its last new connection was made."""

    async def _connected(self, conn: Connection) -> None:
        """The pool made a new connection: the attempts that failed before it are behind us."""
        self._failed_connects = self.pool.get_stats().get("connections_errors", 0)

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        """A pooled connection known not to have been hung up on, the driver's errors typed.

        Waits at most ``wait_s`` for one: StoreUnavailable when the pool's
        attempts to connect failed meanwhile (the database is down or
        unreachable), else StoreBusy (every connection stayed lent out). A
        connection the server hung up on while it sat in the pool (a restart
        of PostgreSQL ends every session) is replaced before use.
        ConnectionLost when the connection breaks during the block; StoreBusy
        when a lock was not granted in ``wait_s``.
        """
        conn = await self._checkout()
        try:
            async with conn:  # as pool.connection(): roll back on error
                yield conn
        except psycopg.errors.LockNotAvailable:
            raise StoreBusy(
                f"the database: a lock was not granted within {self.wait_s:g} s",
                BUSY_PUSHBACK_MS,
            ) from None
        except psycopg.Error as error:
            if not conn.closed:
                raise
            raise ConnectionLost(f"the database connection was lost ({reason(error)})") from None
        finally:
            await self.pool.putconn(conn)

    async def _checkout(self) -> Connection:
        deadline = time.monotonic() + self.wait_s
        while True:
            try:
                conn = await self.pool.getconn(max(deadline - time.monotonic(), 0.001))
            except PoolTimeout:
                # Busy, unless the pool's attempts to connect have failed since it last made one.
                if self.pool.get_stats().get("connections_errors", 0) > self._failed_connects:
                    raise StoreUnavailable(
                        f"the database cannot be reached (no connection within {self.wait_s:g} s)"
                    ) from None
                raise StoreBusy(
                    f"the database: all {self.pool.max_size} connections of this server"
                    f" stayed busy for {self.wait_s:g} s",
                    BUSY_PUSHBACK_MS,
                ) from None
            if not _hung_up(conn):
                return conn
            await conn.close()  # the pool replaces a closed connection
            await self.pool.putconn(conn)

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
        # Leaving connection() with an error rolls the transaction back.
        async with self.connection() as conn, conn.pipeline() as pipeline:
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
        async with self.connection() as conn, conn.cursor() as cursor:
            yield cursor


def _hung_up(conn: Connection) -> bool:
    """Whether the server spoke on an idle connection: it only does so to end the session.

    An idle connection in autocommit mode (no LISTEN) is sent nothing; after
    a restart or a terminated backend its socket holds the server's goodbye
    (or EOF). A readable socket costs one poll to see, where a round trip to
    check every connection lent out would cost every call.
    """
    if conn.closed:
        return True
    readable, _, _ = select.select([conn.pgconn.socket], [], [], 0)
    return bool(readable)


def reason(error: BaseException) -> str:
    """The first line of the driver's message, with any password removed."""
    lines = str(error).strip().splitlines()
    return redact(lines[0]) if lines else type(error).__name__
