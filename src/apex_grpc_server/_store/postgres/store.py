"""Chats, stored completions and deep-research jobs in PostgreSQL, shared by a fleet.

The driver is psycopg 3: maintained, a real asyncio API
(``psycopg.AsyncConnection``) with a connection pool (``psycopg_pool``), and
binary wheels (``psycopg[binary]``) so ``pip install 'apex-grpc[postgres]'``
needs no compiler or libpq. (asyncpg would do too; psycopg speaks libpq's
URLs and settings, which operators already use.)
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from apex_grpc_server._store.postgres.chats import PostgresChats, PostgresCompletions
from apex_grpc_server._store.postgres.idempotency_keys import PostgresKeys
from apex_grpc_server._store.postgres.jobs import PostgresJobs
from apex_grpc_server._store.postgres.pool import Database, Pool
from apex_grpc_server._store.postgres.schema import migrate
from apex_grpc_server._store.rows import SELECT_USER_IDS, user_id_secret
from apex_grpc_server._store.url import redact

CONNECT_TIMEOUT_S = 10
POOL_SIZE = 10


class DatabaseUnavailable(OSError):
    """The database cannot be reached or used (the message never holds a password)."""


class PostgresStore:
    """The server's database in PostgreSQL; open with ``await PostgresStore.open(url)``."""

    def __init__(
        self, pool: Pool, url: str, schema_version: int, user_id_secret: bytes | None
    ) -> None:
        self.url = redact(url)
        self.schema_version = schema_version
        self.user_id_secret = user_id_secret
        """The secret of this database's user ids (None: the old unsalted ids)."""
        self.db = Database(pool)
        self.chats = PostgresChats(self.db)
        self.completions = PostgresCompletions(self.db)
        self.jobs = PostgresJobs(self.db)
        self.keys = PostgresKeys(self.db)

    @classmethod
    async def open(cls, url: str, *, pool_size: int = POOL_SIZE) -> PostgresStore:
        """Connect, migrate the schema to the newest version, and open the pool.

        Raises DatabaseUnavailable naming the (redacted) URL when the database
        cannot be reached or migrated, or when psycopg's libpq cannot pipeline.
        """
        if not psycopg.AsyncPipeline.is_supported():  # Database.transaction pipelines
            raise DatabaseUnavailable(
                f"psycopg {psycopg.__version__} runs on libpq {psycopg.pq.version()}, which has"
                " no pipeline mode (libpq 14 or newer has it): pip install 'psycopg[binary]>=3.2'"
            )
        settings: dict[str, Any] = {
            "autocommit": True,  # transactions are explicit (Database.transaction)
            # An acknowledged write must survive a crash of the database server too.
            "options": "-c synchronous_commit=on",
        }
        try:
            conn = await psycopg.AsyncConnection.connect(
                url, connect_timeout=CONNECT_TIMEOUT_S, autocommit=True
            )
        except psycopg.Error as error:
            raise DatabaseUnavailable(
                f"cannot connect to PostgreSQL at {redact(url)}: {_reason(error)}"
            ) from None
        try:
            async with conn:
                version = await migrate(conn)
                cursor = await conn.execute(SELECT_USER_IDS)
                meta = {str(key): str(value) for key, value in await cursor.fetchall()}
        except psycopg.Error as error:
            raise DatabaseUnavailable(
                f"cannot migrate the schema of {redact(url)}: {_reason(error)}"
            ) from None
        pool: Pool = AsyncConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            kwargs=settings,
            open=False,
            timeout=30.0,
            name="apex-grpc-store",
        )
        try:
            await pool.open(wait=True, timeout=CONNECT_TIMEOUT_S)
        except PoolTimeout:
            await pool.close()
            raise DatabaseUnavailable(f"cannot open a pool to {redact(url)}") from None
        return cls(pool, url, version, user_id_secret(meta))

    async def close(self) -> None:
        """Close every pooled connection."""
        await self.db.pool.close()


def _reason(error: psycopg.Error) -> str:
    """The first line of the driver's message, with any password removed."""
    text = str(error).strip().splitlines()
    return redact(text[0]) if text else type(error).__name__


__all__ = ["DatabaseUnavailable", "PostgresStore"]
