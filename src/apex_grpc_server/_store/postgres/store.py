"""Chats, stored completions and deep-research jobs in PostgreSQL, shared by a fleet.

The driver is psycopg 3: maintained, a real asyncio API
(``psycopg.AsyncConnection``) with a connection pool (``psycopg_pool``), and
binary wheels (``psycopg[binary]``) so ``pip install 'apex-grpc[postgres]'``
needs no compiler or libpq. (asyncpg would do too; psycopg speaks libpq's
URLs and settings, which operators already use.)
"""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
from psycopg_pool import PoolTimeout

from apex_grpc_server._store.interface import DEFAULT_WAIT_S, StoreUnavailable
from apex_grpc_server._store.postgres.chats import PostgresChats, PostgresCompletions
from apex_grpc_server._store.postgres.idempotency_keys import PostgresKeys
from apex_grpc_server._store.postgres.jobs import PostgresJobs
from apex_grpc_server._store.postgres.pool import Database, reason
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
        self, db: Database, url: str, schema_version: int, user_id_secret: bytes | None
    ) -> None:
        self._url = url  # for ping's own connection; never shown (self.url is redacted)
        self._probe: psycopg.AsyncConnection[Any] | None = None
        self.url = redact(url)
        self.schema_version = schema_version
        self.user_id_secret = user_id_secret
        """The secret of this database's user ids (None: the old unsalted ids)."""
        self.db = db
        self.chats = PostgresChats(self.db)
        self.completions = PostgresCompletions(self.db)
        self.jobs = PostgresJobs(self.db)
        self.keys = PostgresKeys(self.db)

    @classmethod
    async def open(
        cls, url: str, *, pool_size: int = POOL_SIZE, wait_s: float = DEFAULT_WAIT_S
    ) -> PostgresStore:
        """Connect, migrate the schema to the newest version, and open the pool.

        An operation waits at most `wait_s` for a pooled connection or a lock
        (then StoreBusy or StoreUnavailable, see ``Database.connection``).

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
            # An acknowledged write must survive a crash of the database server too; a
            # lock held elsewhere (an operator's LOCK TABLE) fails the call in wait_s.
            "options": f"-c synchronous_commit=on -c lock_timeout={round(wait_s * 1000)}",
            "connect_timeout": CONNECT_TIMEOUT_S,
        }
        try:
            conn = await psycopg.AsyncConnection.connect(
                url, connect_timeout=CONNECT_TIMEOUT_S, autocommit=True
            )
        except psycopg.Error as error:
            raise DatabaseUnavailable(
                f"cannot connect to PostgreSQL at {redact(url)}: {reason(error)}"
            ) from None
        try:
            async with conn:
                version = await migrate(conn)
                cursor = await conn.execute(SELECT_USER_IDS)
                meta = {str(key): str(value) for key, value in await cursor.fetchall()}
        except psycopg.Error as error:
            raise DatabaseUnavailable(
                f"cannot migrate the schema of {redact(url)}: {reason(error)}"
            ) from None
        db = Database(url, settings, size=pool_size, wait_s=wait_s)
        try:
            await db.pool.open(wait=True, timeout=CONNECT_TIMEOUT_S)
        except PoolTimeout:
            await db.pool.close()
            raise DatabaseUnavailable(f"cannot open a pool to {redact(url)}") from None
        return cls(db, url, version, user_id_secret(meta))

    async def ping(self, timeout_s: float) -> None:
        """Raise StoreUnavailable unless PostgreSQL answers ``SELECT 1`` within `timeout_s`.

        On a connection of its own, not the pool's: a pool whose connections
        are all busy is not a database that is down.
        """
        try:
            async with asyncio.timeout(timeout_s):
                if self._probe is None or self._probe.closed:
                    self._probe = await psycopg.AsyncConnection.connect(
                        self._url, autocommit=True, connect_timeout=max(1, round(timeout_s))
                    )
                await self._probe.execute("SELECT 1")
        except (psycopg.Error, TimeoutError) as error:
            await self._close_probe()
            why = "no answer" if isinstance(error, TimeoutError) else reason(error)
            raise StoreUnavailable(f"PostgreSQL at {self.url}: {why}") from None

    async def close(self) -> None:
        """Close every pooled connection."""
        await self._close_probe()
        await self.db.pool.close()

    async def _close_probe(self) -> None:
        probe, self._probe = self._probe, None
        if probe is not None:
            await probe.close()


__all__ = ["DatabaseUnavailable", "PostgresStore"]
