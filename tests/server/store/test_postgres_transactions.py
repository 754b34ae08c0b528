"""How a write's statements reach the database: PostgreSQL's pipelined transactions.

A PostgreSQL transaction sends BEGIN, its statements and COMMIT without
waiting for each result (``Database.transaction``), so a statement's error
surfaces later than the statement: at a later statement, at a fetch, at
``affected()``, or at the end of the block. Wherever it surfaces, the whole
write is undone, the error is the driver's own, and nothing is left unread.
A new chat without a key is one statement on its own; with a deep-research
entry it still checks the user's listing (both backends).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest

from apex_grpc_server._store import Listings, NewCompletion, Storage, open_store, sql
from apex_grpc_server._store.idempotency_keys import KeyRecord
from apex_grpc_server._store.url import parse


@pytest.fixture
async def postgres(postgres_url: str, tmp_path) -> AsyncIterator[Any]:
    opened = await open_store(parse(postgres_url, tmp_path))
    yield opened
    await opened.close()


def answer(prompt: str = "p", **metadata: object) -> NewCompletion:
    return NewCompletion(prompt, "a", "basic", dict(metadata))


def record(key: str) -> KeyRecord:
    return KeyRecord(key, "CreateDeepResearchJob", "f", lambda result: b"answer")


async def test_a_new_deep_research_chat_is_checked_against_the_users_listing(
    store: Storage,
) -> None:
    # A new chat is one statement only when it has no such listing to check.
    seen: list[list[str] | None] = []

    def check(listings: Listings) -> None:
        assert [row.user_prompt_text for row in listings.chat] == [f"deep {len(seen)}"]
        deep = listings.deep_research
        seen.append(None if deep is None else [row.user_prompt_text for row in deep])

    entry = {"job_id": "j", "status": "completed"}
    for number in range(2):
        await store.chats.create(
            "u1", "t", "apex", answer(f"deep {number}", deep_researcher=entry), check=check
        )
    assert seen == [["deep 0"], ["deep 1", "deep 0"]]  # newest first


@pytest.mark.parametrize("surfacing", ["at the end", "at a fetch", "at affected()"])
async def test_a_statement_failing_in_a_pipelined_write_undoes_all_of_it(
    postgres: Any,
    surfacing: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import psycopg

    from apex_grpc_server._store.postgres import jobs as _jobs

    first, _ = await postgres.jobs.create("u1", b"r", "first", "t")
    before = (
        await postgres.chats.of_user("u1", ""),
        await postgres.completions.deep_research("u1"),
    )
    # The next job's id is taken: its INSERT fails after its chat's and its
    # completion's INSERTs succeeded, in the same flight.
    monkeypatch.setattr(_jobs, "uuid", SimpleNamespace(uuid4=lambda: uuid.UUID(first.id)))
    checked: list[Listings] = []
    options: dict[str, Any] = {
        "at the end": {},  # the COMMIT's wait
        "at a fetch": {"check": checked.append},  # the deep-research listing's SELECT
        "at affected()": {"key": record("k1")},  # the key INSERT's row count
    }[surfacing]
    with caplog.at_level(logging.WARNING), pytest.raises(psycopg.errors.UniqueViolation):
        await postgres.jobs.create("u1", b"r", "second", "t", **options)
    assert checked == []  # the check never ran on a write that had failed
    after = (await postgres.chats.of_user("u1", ""), await postgres.completions.deep_research("u1"))
    assert after == before  # neither the chat nor the completion stayed
    assert await postgres.keys.get("u1", "k1") is None
    # Nothing of the failed flight was left unread (psycopg would warn "error
    # ignored terminating" the pipeline), and the next write goes through.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    monkeypatch.undo()
    await postgres.jobs.create("u1", b"r", "third", "t", key=record("k2"))
    assert len(await postgres.chats.of_user("u1", "")) == 2


async def test_an_error_arriving_before_the_block_ends_is_raised_there_and_undoes_the_write(
    postgres: Any, caplog: pytest.LogCaptureFixture
) -> None:
    import psycopg

    from apex_grpc_server._store.postgres.chats import chat_params

    chat, _ = await postgres.chats.create("u1", "kept", "apex", answer())
    with caplog.at_level(logging.WARNING), pytest.raises(psycopg.errors.UniqueViolation):
        async with postgres.db.transaction() as cur:
            await cur.execute("UPDATE chats SET title = 'changed' WHERE id = %s", (chat.id,))
            await cur.execute(sql.INSERT_CHAT, chat_params(chat))  # its id is taken
            await asyncio.sleep(0.2)  # PostgreSQL's error reaches us before COMMIT is sent
    assert [c.title for c in await postgres.chats.of_user("u1", "")] == ["kept"]
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_a_pipelined_statements_row_count_is_read_once_its_result_is_in(
    postgres: Any,
) -> None:
    for number in range(3):
        await postgres.chats.create("u1", f"chat {number}", "apex", answer())
    async with postgres.db.transaction() as cur:
        await cur.execute("UPDATE chats SET title = 'renamed' WHERE user_id = %s", ("u1",))
        with pytest.raises(TypeError, match="affected"):
            _ = cur.rowcount  # not known yet: it would be a stale or -1 count
        assert await cur.affected() == 3
    assert {chat.title for chat in await postgres.chats.of_user("u1", "")} == {"renamed"}
