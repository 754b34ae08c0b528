"""Opening a PostgreSQL store: the pool as configured, and each way opening fails, named.

A failure names the database by its URL without the password, and the
driver's reason by its first line. Skipped where PostgreSQL is not installed;
failing instead on CI.
"""

from __future__ import annotations

import asyncio
import socket

import pytest

from apex_grpc_server._store import open_store
from apex_grpc_server._store.url import parse


async def test_an_unreachable_database_is_named_without_its_password(
    local_postgres, tmp_path
) -> None:
    from apex_grpc_server._store.postgres.store import DatabaseUnavailable

    url = "postgresql://apex:s3cret@127.0.0.1:1/apex"
    with pytest.raises(DatabaseUnavailable) as caught:
        await open_store(parse(url, tmp_path))
    message = str(caught.value)
    assert message.startswith("cannot connect to PostgreSQL at postgresql://apex:***@127.0.0.1:1/")
    assert "s3cret" not in message
    assert message.endswith("Connection refused")  # the driver's reason, its first line


async def test_a_database_that_answers_nothing_is_given_up_on_after_the_connect_timeout(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("psycopg")
    from apex_grpc_server._store.postgres import store as postgres
    from apex_grpc_server._store.postgres.store import DatabaseUnavailable

    monkeypatch.setattr(postgres, "CONNECT_TIMEOUT_S", 1)
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never speaks
        url = f"postgresql://apex@127.0.0.1:{silent.getsockname()[1]}/apex"
        with pytest.raises(DatabaseUnavailable, match="cannot connect to PostgreSQL"):
            await asyncio.wait_for(open_store(parse(url, tmp_path)), 10)


async def test_a_schema_that_cannot_be_migrated_is_named_with_the_reason(
    postgres_url: str, tmp_path
) -> None:
    import psycopg

    from apex_grpc_server._store.postgres.store import DatabaseUnavailable
    from apex_grpc_server._store.url import redact

    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as conn:
        await conn.execute("CREATE TABLE schema_migrations (not_a_version TEXT)")
    with pytest.raises(DatabaseUnavailable) as caught:
        await open_store(parse(postgres_url, tmp_path))
    message = str(caught.value)
    assert message.startswith(f"cannot migrate the schema of {redact(postgres_url)}: ")
    assert '"version" does not exist' in message


async def test_a_store_opens_its_pool_as_configured_whatever_the_database_defaults(
    postgres_url: str,
) -> None:
    import psycopg

    from apex_grpc_server._store import DEFAULT_WAIT_S
    from apex_grpc_server._store.postgres.store import POOL_SIZE, PostgresStore

    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as conn:
        database = postgres_url.rpartition("/")[2]
        await conn.execute(f'ALTER DATABASE "{database}" SET synchronous_commit = off')
    first = await PostgresStore.open(postgres_url)
    try:
        pool = first.db.pool
        assert (pool.name, pool.min_size, pool.max_size, pool.timeout) == (
            "apex-grpc-store",
            1,
            POOL_SIZE,
            DEFAULT_WAIT_S,  # a call waits this long for a connection, not 30 s
        )
        assert first.url == postgres_url  # no password to hide here
        async with first.db.read() as cur:
            assert cur.connection.autocommit  # transactions are explicit
            await cur.execute("SHOW synchronous_commit")  # an acknowledged write is durable
            assert await cur.fetchone() == ("on",)
            await cur.execute("SHOW lock_timeout")  # nor for a lock (DEFAULT_WAIT_S)
            assert await cur.fetchone() == ("2s",)
        second = await PostgresStore.open(postgres_url, pool_size=3)
        assert second.db.pool.max_size == 3
        assert second.user_id_secret == first.user_id_secret is not None  # the database's own
        await second.close()
    finally:
        await first.close()


async def test_a_libpq_without_pipeline_mode_is_refused_naming_the_fix(
    local_postgres, tmp_path, monkeypatch
) -> None:
    # psycopg built on a system libpq older than 14 cannot pipeline (Database.transaction).
    import psycopg

    from apex_grpc_server._store.postgres.store import DatabaseUnavailable

    monkeypatch.setattr(psycopg.AsyncPipeline, "is_supported", classmethod(lambda cls: False))
    fix = r", which has no pipeline mode \(libpq 14 or newer has it\): .*'psycopg\[binary\]>=3\.2'$"
    with pytest.raises(DatabaseUnavailable, match=fix):
        await open_store(parse(local_postgres.create_database("apex_old_libpq"), tmp_path))


def test_a_drivers_error_is_told_by_its_first_line_without_a_password() -> None:
    psycopg = pytest.importorskip("psycopg")
    from apex_grpc_server._store.postgres.pool import reason

    error = psycopg.OperationalError(" failed at postgresql://apex:s3cret@h/db\n\thint \n")
    assert reason(error) == "failed at postgresql://apex:***@h/db"
    assert reason(psycopg.OperationalError("")) == "OperationalError"


async def test_a_pool_that_cannot_connect_after_the_migration_is_named(
    postgres_url: str, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The database goes away between the migration and the pool's first connections: here
    # the pool alone is pointed at a port where nothing listens.
    from psycopg_pool import AsyncConnectionPool

    from apex_grpc_server._store.postgres import pool
    from apex_grpc_server._store.postgres import store as postgres

    gone = "postgresql://apex:s3cret@127.0.0.1:1/apex"

    class PoolOfAGoneDatabase(AsyncConnectionPool):  # type: ignore[type-arg]
        def __init__(self, conninfo: str, **kwargs: object) -> None:
            super().__init__(gone, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pool, "AsyncConnectionPool", PoolOfAGoneDatabase)
    monkeypatch.setattr(postgres, "CONNECT_TIMEOUT_S", 1)
    try:
        store = await asyncio.wait_for(open_store(parse(postgres_url, tmp_path)), 10)
    except postgres.DatabaseUnavailable as refused:
        message = str(refused)
    else:  # closed here, or its pool would keep trying to connect
        await store.close()
        pytest.fail("opened a store whose pool cannot connect")
    assert message == f"cannot open a pool to {postgres_url}"
