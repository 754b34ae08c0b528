"""A fleet: several replicas' stores on one real PostgreSQL database, writing at once.

Each ``Store`` here is what one replica opens (its own connection pool); the
database is a fresh one on the session's ``local_postgres``. Skipped where
PostgreSQL is not installed; failing instead on CI.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import pytest

from apex_grpc_server._store import CompletionRow, Listings, NewCompletion
from apex_grpc_server._store.interface import Check
from apex_grpc_server._wire.reply_limits import ListingLimit, ListingTooLarge

if TYPE_CHECKING:  # psycopg is the postgres extra: imported once PostgreSQL runs
    from apex_grpc_server._store.postgres.store import PostgresStore

Opener = Callable[[], Awaitable["PostgresStore"]]


@pytest.fixture
async def replicas(postgres_url: str) -> AsyncIterator[Opener]:
    """Open replicas' stores on one fresh database: ``a = await replicas()``."""
    from apex_grpc_server._store.postgres.store import PostgresStore

    opened: list[PostgresStore] = []

    async def open_replica() -> PostgresStore:
        opened.append(await PostgresStore.open(postgres_url))
        return opened[-1]

    yield open_replica
    for store in opened:
        await store.close()


def answer(prompt: str = "p", text: str = "a") -> NewCompletion:
    return NewCompletion(prompt, text, "basic", {})


async def in_a_replica(url: str, action: Callable[[PostgresStore], Awaitable[Any]]) -> Any:
    """Run ``action`` on a replica's store of its own, opened and closed around it."""
    from apex_grpc_server._store.postgres.store import PostgresStore

    store = await PostgresStore.open(url)
    try:
        return await action(store)
    finally:
        await store.close()


async def running_job(store: PostgresStore) -> tuple[str, str, CompletionRow]:
    """A deep-research job claimed by a runner: its id, its lease token, its completion."""
    _, completion = await store.jobs.create("u1", b"req", "q", "t")
    (claimed,) = await store.jobs.claim("runner", 30, 1)
    return claimed.id, claimed.token, completion


async def test_concurrent_metadata_patches_from_two_replicas_are_all_kept(replicas) -> None:
    a, b = await replicas(), await replicas()
    _, row = await a.chats.create("u1", "t", "apex", answer())
    await asyncio.gather(
        *(
            (a if n % 2 else b).completions.update("u1", row.id, metadata_patch={f"k{n}": n})
            for n in range(50)
        )
    )
    for store in (a, b):
        final = await store.completions.get("u1", row.id)
        assert final is not None and final.metadata == {f"k{n}": n for n in range(50)}


async def test_concurrent_title_and_type_changes_from_two_replicas_both_land(replicas) -> None:
    a, b = await replicas(), await replicas()
    chats = [(await a.chats.create("u1", "old", "old", answer()))[0] for _ in range(20)]
    await asyncio.gather(
        *(a.chats.update("u1", chat.id, f"title {i}", None) for i, chat in enumerate(chats)),
        *(b.chats.update("u1", chat.id, None, f"type {i}") for i, chat in enumerate(chats)),
    )
    for i, chat in enumerate(chats):
        stored = await b.chats.get("u1", chat.id)
        assert stored is not None and (stored.title, stored.chat_type) == (
            f"title {i}",
            f"type {i}",
        )


async def test_a_chat_written_through_one_replica_is_listed_and_found_through_another(
    replicas,
) -> None:
    a, b = await replicas(), await replicas()
    created = [
        (await (a if i % 2 else b).chats.create("u1", f"c{i}", "apex", answer(f"zebra {i}")))[0]
        for i in range(30)
    ]
    for store in (a, b):
        assert {c.id for c in await store.chats.of_user("u1", "")} == {c.id for c in created}
        assert set(await store.chats.search("u1", "zeb")) == {c.id for c in created}
    assert await b.chats.search("u1", "zebra 7") == [created[7].id]


async def test_jobs_claimed_by_three_runners_run_exactly_once(replicas) -> None:
    stores = [await replicas() for _ in range(3)]
    jobs = [(await stores[0].jobs.create("u1", b"req", f"q{i}", "t"))[0] for i in range(30)]
    runs: Counter[str] = Counter()

    async def runner(name: str) -> None:
        store = stores[int(name[-1])]
        while claimed := await store.jobs.claim(name, 30, 2):
            for job in claimed:
                runs[job.id] += 1
                await asyncio.sleep(0.005)
                assert await store.jobs.finish(job.id, job.token, "completed", text=name)

    await asyncio.gather(*(runner(f"runner-{i}") for i in range(3)))
    assert runs == Counter({job.id: 1 for job in jobs})
    for job in jobs:
        stored = await stores[1].jobs.get("u1", job.id)
        assert stored is not None and stored.status == "completed"


async def test_a_dead_runners_job_is_taken_over_and_its_result_stored_once(replicas) -> None:
    dead, alive = await replicas(), await replicas()
    job, completion = await dead.jobs.create("u1", b"req", "q", "t")
    (first,) = await dead.jobs.claim("dead", 0.3, 5)
    assert await dead.jobs.add_chunk(job.id, first.token, 0, "half an answer")
    assert await alive.jobs.claim("alive", 30, 5) == []
    await asyncio.sleep(0.4)  # "dead" never renews
    (second,) = await alive.jobs.claim("alive", 30, 5)
    assert second.id == job.id
    assert not await dead.jobs.finish(job.id, first.token, "completed", text="dead answer")
    assert await alive.jobs.add_chunk(job.id, second.token, 0, "whole answer")
    assert await alive.jobs.finish(job.id, second.token, "completed", text="whole answer")
    stored = await dead.jobs.get("u1", job.id)
    assert stored is not None and stored.chunks == ((0, "whole answer"),)
    row = await dead.completions.get("u1", completion.id)
    assert row is not None and row.completion_text == "whole answer"


async def test_replicas_starting_together_migrate_the_schema_once(postgres_url: str) -> None:
    import psycopg

    from apex_grpc_server._store.postgres.schema import MIGRATIONS
    from apex_grpc_server._store.postgres.store import PostgresStore

    opened = await asyncio.gather(
        *(PostgresStore.open(postgres_url) for _ in range(4)), return_exceptions=True
    )
    stores = [store for store in opened if isinstance(store, PostgresStore)]
    for store in stores:
        await store.close()
    assert stores == opened, [str(error) for error in opened if error not in stores]
    assert {store.schema_version for store in stores} == {len(MIGRATIONS)}
    async with await psycopg.AsyncConnection.connect(postgres_url) as conn:
        cursor = await conn.execute("SELECT version FROM schema_migrations ORDER BY version")
        assert [row[0] for row in await cursor.fetchall()] == [1, 2, 3, 4, 5]


DEEP_LIMIT = 64 * 1024
"""Characters of prompts the user's deep-research listing may hold in the test below."""
PROMPT = 40_000  # one entry of this fits the limit, two do not
MARK = {"deep_researcher": {"status": "completed"}}


def deep_listing_fits(listings: Listings) -> None:
    deep = listings.deep_research or []
    if sum(len(row.user_prompt_text) for row in deep) > DEEP_LIMIT:
        raise ValueError("the deep-research listing would be too large")


class OverlappingCheck:
    """A listing check (``limit``) that lets no write commit until the other write has read its
    listings too, or waits on a lock this one holds: without a lock both checks then see one
    entry and pass; with one, the second reads after the first committed. No timing decides it."""

    def __init__(self, url: str, limit: Check = deep_listing_fits) -> None:
        self.url = url
        self.limit = limit
        self.arrived = 0
        self.lock = threading.Lock()

    def __call__(self, listings: Listings) -> None:
        import psycopg

        with self.lock:
            self.arrived += 1
        self.limit(listings)
        deadline = time.monotonic() + 20
        with psycopg.connect(self.url, autocommit=True) as watcher:
            while True:
                with self.lock:
                    if self.arrived >= 2:
                        return
                queued = watcher.execute(  # a row lock is waited for as its holder's xid
                    "SELECT count(*) FROM pg_locks AS l JOIN pg_stat_activity AS a"
                    " ON a.pid = l.pid WHERE NOT l.granted AND a.datname = current_database()"
                ).fetchone()
                if queued is not None and queued[0]:
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError("the other write neither read its listings nor queued")
                time.sleep(0.01)


@pytest.mark.parametrize("write", ["submit", "mark"])
def test_concurrent_deep_research_writes_in_two_chats_never_overfill_the_listing(
    postgres_url: str, write: str
) -> None:
    # Two replicas each add an entry to the user's deep-research listing, in chats of
    # their own: each fits alone, not together. Exactly one must be refused.
    check = OverlappingCheck(postgres_url)

    def first_completions(store: PostgresStore) -> Awaitable[list[str]]:
        async def create() -> list[str]:
            made = [await store.chats.create("u1", "t", "apex", answer(n * PROMPT)) for n in "ab"]
            return [row.id for _, row in made]

        return create()

    ids = asyncio.run(in_a_replica(postgres_url, first_completions)) if write == "mark" else []

    def one_write(n: int) -> BaseException | None:
        async def act(store: PostgresStore) -> None:
            if write == "submit":
                await store.jobs.create("u1", b"req", "ab"[n] * PROMPT, "t", check=check)
            else:
                await store.completions.update("u1", ids[n], metadata_patch=MARK, check=check)

        try:
            asyncio.run(in_a_replica(postgres_url, act))
        except Exception as error:
            return error
        return None

    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(one_write, range(2)))
    refused = [error for error in outcomes if error is not None]
    assert len(refused) == 1 and isinstance(refused[0], ValueError), outcomes

    async def entries(store: PostgresStore) -> list[Any]:
        return await store.completions.deep_research("u1")

    assert len(asyncio.run(in_a_replica(postgres_url, entries))) == 1


CHAT_LIMIT = 64 * 1024
"""Bytes of a chat's GetStoredChatCompletions reply in the test below."""
ANSWER = 40_000  # one answer of this fits the limit, two do not


def test_a_jobs_answer_and_a_completion_written_into_its_chat_at_once_never_overfill_it(
    postgres_url: str,
) -> None:
    # One replica stores a deep-research job's answer while another adds a completion
    # to the job's chat: each fits the chat's listing alone, not both. Exactly one is refused.
    check = OverlappingCheck(postgres_url, ListingLimit(CHAT_LIMIT))

    job_id, token, completion = asyncio.run(in_a_replica(postgres_url, running_job))
    chat_id = completion.chat_id

    async def finish(store: PostgresStore) -> None:
        text = "a" * ANSWER
        assert await store.jobs.finish(job_id, token, "completed", text=text, check=check)

    async def add_completion(store: PostgresStore) -> None:
        added = answer("p", "b" * ANSWER)
        assert await store.chats.add_completion("u1", chat_id, added, check=check) is not None

    def one_write(action: Callable[[PostgresStore], Awaitable[None]]) -> BaseException | None:
        try:
            asyncio.run(in_a_replica(postgres_url, action))
        except Exception as error:
            return error
        return None

    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(one_write, [finish, add_completion]))
    refused = [error for error in outcomes if error is not None]
    assert len(refused) == 1 and isinstance(refused[0], ListingTooLarge), outcomes

    async def listing(store: PostgresStore) -> list[Any]:
        rows = await store.chats.completions("u1", chat_id)
        assert rows is not None
        return rows

    stored = asyncio.run(in_a_replica(postgres_url, listing))
    assert len(stored) == 1 + (outcomes[1] is None)
    ListingLimit(CHAT_LIMIT)(Listings(stored, None))


def wait_until_queued(watcher: Any, count: int) -> None:
    """Wait until ``count`` transactions of this database wait for a lock (20 s at most)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        queued = watcher.execute(
            "SELECT count(*) FROM pg_locks AS l JOIN pg_stat_activity AS a"
            " ON a.pid = l.pid WHERE NOT l.granted AND a.datname = current_database()"
        ).fetchone()
        if queued is not None and queued[0] >= count:
            return
        time.sleep(0.01)
    raise TimeoutError(f"fewer than {count} writes queued")


@pytest.mark.parametrize("first", ["edit", "answer"])
def test_an_edit_of_a_jobs_answer_and_the_answer_queue_without_deadlocking(
    postgres_url: str, first: str
) -> None:
    # An edit of a job's completion and the job's answer, on two replicas, queue (in either
    # order) behind a third transaction holding the completion's row. Both take the chat's
    # row before the completion's: once it lets go, one runs after the other. (Taken in
    # opposite orders, the first would get the completion and wait for the chat, which the
    # second holds while it waits for the completion.)
    import psycopg

    job_id, token, completion = asyncio.run(in_a_replica(postgres_url, running_job))
    completion_id = completion.id

    async def edit(store: PostgresStore) -> Any:
        return await store.completions.update("u1", completion_id, metadata_patch={"k": 1})

    async def finish(store: PostgresStore) -> Any:
        check = ListingLimit(1 << 20)
        return await store.jobs.finish(job_id, token, "completed", text="a", check=check)

    with (
        psycopg.connect(postgres_url) as holder,
        psycopg.connect(postgres_url, autocommit=True) as watcher,
        ThreadPoolExecutor(2) as pool,
    ):
        holder.execute("SELECT 1 FROM completions WHERE id = %s FOR UPDATE", (completion_id,))
        writes = [edit, finish] if first == "edit" else [finish, edit]
        done = []
        for queued, write in enumerate(writes, 1):
            done.append(pool.submit(asyncio.run, in_a_replica(postgres_url, write)))
            wait_until_queued(watcher, queued)
        holder.commit()
        edited, finished = done if first == "edit" else done[::-1]
        assert edited.result() is not None
        assert finished.result() is True


def test_an_edit_reads_its_completion_once_a_write_holding_it_has_committed(
    postgres_url: str,
) -> None:
    # An edit merges its patch into the metadata it read: it reads the row FOR UPDATE, so a
    # write of the same completion in flight (a job's answer mirrored into it) is not lost.
    import psycopg

    _, _, completion = asyncio.run(in_a_replica(postgres_url, running_job))

    async def edit(store: PostgresStore) -> Any:
        return await store.completions.update("u1", completion.id, metadata_patch={"k": 1})

    async def read(store: PostgresStore) -> Any:
        return await store.completions.get("u1", completion.id)

    with (
        psycopg.connect(postgres_url) as holder,
        psycopg.connect(postgres_url, autocommit=True) as watcher,
        ThreadPoolExecutor(2) as pool,
    ):
        written = json.dumps({**completion.metadata, "other": 2})
        edit_sql = "UPDATE completions SET metadata = %s WHERE id = %s"
        holder.execute(edit_sql, (written, completion.id))
        try:  # a read never waits for a writer: it answers what was committed
            before = pool.submit(asyncio.run, in_a_replica(postgres_url, read)).result(timeout=5)
            assert before is not None and "other" not in before.metadata
            edited = pool.submit(asyncio.run, in_a_replica(postgres_url, edit))
            wait_until_queued(watcher, 1)
        finally:
            holder.commit()
        row = edited.result()
    assert row is not None and (row.metadata["other"], row.metadata["k"]) == (2, 1)


def test_a_deep_research_write_queues_behind_its_own_users_listing_lock_only(
    postgres_url: str,
) -> None:
    import psycopg

    from apex_grpc_server._store.postgres.chats import deep_research_lock_key

    def submit(user_id: str) -> Callable[[PostgresStore], Awaitable[Any]]:
        async def act(store: PostgresStore) -> Any:
            check = ListingLimit(1 << 20)
            return await store.jobs.create(user_id, b"req", "q", "t", check=check)

        return act

    with (
        psycopg.connect(postgres_url) as holder,
        psycopg.connect(postgres_url, autocommit=True) as watcher,
        ThreadPoolExecutor(1) as pool,
    ):
        holder.execute("SELECT pg_advisory_xact_lock(%s)", (deep_research_lock_key("u1"),))
        assert asyncio.run(in_a_replica(postgres_url, submit("u2"))) is not None  # not held
        queued = pool.submit(asyncio.run, in_a_replica(postgres_url, submit("u1")))
        wait_until_queued(watcher, 1)
        assert not queued.done()
        holder.commit()
        assert queued.result() is not None
