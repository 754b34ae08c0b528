"""Deep-research job claims on PostgreSQL while another transaction holds a job's row.

Two guards of ``_store/postgres/jobs.py`` that only show under concurrency, each held in
place here by a raw transaction of the test's own on the same database:

- a runner's claim takes the next pending job at once while another runner's claim holds
  the oldest one (``FOR UPDATE SKIP LOCKED``), instead of queueing behind it;
- a run's write holds its job's row from the lease check to its commit (``holds``:
  ``FOR UPDATE``), so a lease that runs out while the write is in flight is not taken
  over under it.

Skipped where PostgreSQL is not installed; failing instead on CI.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # psycopg is the postgres extra: imported once PostgreSQL runs
    import psycopg

    from apex_grpc_server._store.postgres.store import PostgresStore

AT_ONCE_S = 2.0
"""How long a claim that need not wait may take on a loaded machine (it takes ~10 ms)."""


@pytest.fixture
async def replicas(postgres_url: str) -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    """Two replicas' stores (each its own pool) on one fresh database."""
    from apex_grpc_server._store.postgres.store import PostgresStore

    first = await PostgresStore.open(postgres_url)
    second = await PostgresStore.open(postgres_url)
    yield first, second
    await second.close()
    await first.close()


@pytest.fixture
async def raw(postgres_url: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """A plain connection of the test's own: its open transaction is the other party."""
    import psycopg

    conn = await psycopg.AsyncConnection.connect(postgres_url)
    yield conn
    await conn.rollback()
    await conn.close()


async def waiting_on_a_lock(raw_url: str, deadline_s: float = 10.0) -> None:
    """Return once some backend of the database waits on a lock (a write held in place)."""
    import psycopg

    async with await psycopg.AsyncConnection.connect(raw_url, autocommit=True) as probe:
        ends = time.monotonic() + deadline_s
        while time.monotonic() < ends:
            cur = await probe.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            row = await cur.fetchone()
            if row is not None and row[0] > 0:
                return
            await asyncio.sleep(0.01)
    raise AssertionError("no write came to wait on the test's lock")


async def test_a_claim_takes_the_next_job_while_another_claim_holds_the_oldest(
    replicas: tuple[PostgresStore, PostgresStore], raw: psycopg.AsyncConnection[Any]
) -> None:
    store, _ = replicas
    oldest, _ = await store.jobs.create("u1", b"req-1", "first", "t")
    newer, _ = await store.jobs.create("u1", b"req-2", "second", "t")
    # Another runner's claim in flight: it has locked the oldest pending job, not committed.
    await raw.execute(
        "SELECT id FROM jobs WHERE status = 'pending' ORDER BY created_us, id LIMIT 1 FOR UPDATE"
    )
    claim = asyncio.ensure_future(store.jobs.claim("runner-b", 30, 1))
    done, _ = await asyncio.wait({claim}, timeout=AT_ONCE_S)
    await raw.rollback()  # lets a claim that queued behind the lock finish, to be reported
    claimed = await claim
    assert done, f"the claim waited behind another claim's lock (then took {claimed})"
    assert [job.id for job in claimed] == [newer.id]
    # The oldest is still pending, and the next claim takes it.
    assert [job.id for job in await store.jobs.claim("runner-c", 30, 1)] == [oldest.id]


async def test_an_expired_lease_is_not_taken_over_while_the_old_runs_write_is_in_flight(
    replicas: tuple[PostgresStore, PostgresStore],
    raw: psycopg.AsyncConnection[Any],
    postgres_url: str,
) -> None:
    old_replica, new_replica = replicas
    job, completion = await old_replica.jobs.create("u1", b"req", "q", "t")
    (claimed,) = await old_replica.jobs.claim("runner-a", 1.5, 1)
    # Hold the old run's finish in place after its lease check: it locks the answer's chat
    # next (see `lock_chat_of`), and the test's transaction holds that row.
    await raw.execute("SELECT 1 FROM chats WHERE id = %s FOR UPDATE", (completion.chat_id,))
    finish = asyncio.ensure_future(
        old_replica.jobs.finish(
            claimed.id, claimed.token, "completed", text="the answer", check=lambda _: None
        )
    )
    await waiting_on_a_lock(postgres_url)
    assert not finish.done(), "the lease ran out before the old run's write began"
    await asyncio.sleep(await _lease_left_s(postgres_url, job.id) + 0.05)
    takeover = await asyncio.wait_for(new_replica.jobs.claim("runner-b", 30, 1), AT_ONCE_S)
    await raw.rollback()
    assert takeover == [], "a job was taken over while its old run's write was in flight"
    assert await asyncio.wait_for(finish, AT_ONCE_S) is True
    final = await new_replica.jobs.get("u1", job.id)
    assert final is not None and final.status == "completed"
    assert await new_replica.jobs.claim("runner-b", 30, 1) == []


async def _lease_left_s(url: str, job_id: str) -> float:
    """Seconds until the job's lease runs out, on the database's clock (its leases' clock)."""
    import psycopg

    from apex_grpc_server._store.postgres.jobs import DB_NOW_US

    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute(
            f"SELECT (lease_expires_us - {DB_NOW_US}) / 1e6 FROM jobs WHERE id = %s", (job_id,)
        )
        row = await cur.fetchone()
    assert row is not None
    return max(0.0, float(row[0]))
