"""The store's operations driven directly: rows, listing, searching, editing, deleting, jobs.

Every test taking ``store`` runs against both backends: SQLite and a real
PostgreSQL (``local_postgres``; skipped where PostgreSQL is not installed,
failing instead on CI). Every read and write is scoped by the user id;
another user's row is as good as missing.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from _stores import scalar

from apex_grpc_server._store import (
    SCHEMA_VERSION,
    Listings,
    NewCompletion,
    Storage,
    default_title,
)
from apex_grpc_server._store.rows import now_us
from apex_grpc_server._store.sqlite.store import SqliteStore

Store = Storage


def answer(prompt: str = "p", text: str = "a", **metadata: object) -> NewCompletion:
    return NewCompletion(prompt, text, "basic", dict(metadata))


async def test_a_new_database_makes_user_ids_with_a_secret_of_its_own(store: Store) -> None:
    secret = store.user_id_secret
    assert isinstance(secret, bytes) and len(secret) == 32


async def test_a_users_chats_come_most_recently_updated_first(store: Store) -> None:
    old, _ = await store.chats.create("u1", "old", "apex", answer())
    new, _ = await store.chats.create("u1", "new", "gpt", answer())
    await store.chats.create("u2", "theirs", "apex", answer())
    assert [c.title for c in await store.chats.of_user("u1", "")] == ["new", "old"]
    await store.chats.add_completion("u1", old.id, answer("again"))  # old is updated now
    assert [c.title for c in await store.chats.of_user("u1", "")] == ["old", "new"]
    assert [c.id for c in await store.chats.of_user("u1", "gpt")] == [new.id]
    assert await store.chats.of_user("u1", "other") == []
    assert await store.chats.of_user("u3", "") == []


async def test_a_chat_changes_title_or_type_and_only_for_its_owner(store: Store) -> None:
    chat, _ = await store.chats.create("u1", "t", "apex", answer())
    renamed = await store.chats.update("u1", chat.id, "Zebras", None)
    assert renamed is not None and (renamed.title, renamed.chat_type) == ("Zebras", "apex")
    assert renamed.updated_us >= chat.updated_us and renamed.created_us == chat.created_us
    retyped = await store.chats.update("u1", chat.id, None, "gpt")
    assert retyped is not None and (retyped.title, retyped.chat_type) == ("Zebras", "gpt")
    assert await store.chats.get("u1", chat.id) == retyped
    assert await store.chats.update("u2", chat.id, "stolen", None) is None
    assert await store.chats.update("u1", "nope", "x", None) is None
    assert (await store.chats.get("u1", chat.id)).title == "Zebras"  # type: ignore[union-attr]


async def test_search_finds_chats_with_every_word_as_a_prefix_for_their_owner(store: Store) -> None:
    zebras, _ = await store.chats.create("u1", "z", "apex", answer("Tell me about zebras"))
    both, _ = await store.chats.create("u1", "b", "apex", answer("zebras", "with lions, too"))
    await store.chats.add_completion("u1", both.id, answer("more zebras"))  # one hit per chat
    await store.chats.create("u2", "theirs", "apex", answer("zebras"))
    found = await store.chats.search("u1", "zebra")
    assert sorted(found) == sorted([zebras.id, both.id]) and len(found) == 2
    assert await store.chats.search("u1", "zeb lio") == [both.id]  # every word, as prefixes
    assert await store.chats.search("u1", "zebras giraffes") == []
    assert await store.chats.search("u1", "  ?! ") == []  # no words at all
    assert await store.chats.search("u3", "zebras") == []


async def test_search_returns_at_most_the_limit_100_by_default(store: Store) -> None:
    ids = {
        (await store.chats.create("u1", "z", "apex", answer(f"zebra {i}")))[0].id
        for i in range(101)
    }
    found = await store.chats.search("u1", "zebra")
    assert len(found) == 100 and set(found) < ids
    assert len(await store.chats.search("u1", "zebra", limit=3)) == 3


async def test_editing_a_completion_can_be_checked_and_undone(store: Store) -> None:
    chat, first = await store.chats.create("u1", "t", "apex", answer("one", "1"))
    await store.chats.add_completion("u1", chat.id, answer("two", "2"))
    seen: list[list[str]] = []

    def check(listings: Listings) -> None:  # sees the chat as it would be
        seen.append([row.completion_text for row in listings.chat])
        assert listings.deep_research is None  # not a deep-research entry

    edited = await store.completions.update("u1", first.id, text="uno", check=check)
    assert edited is not None and edited.completion_text == "uno" and seen == [["uno", "2"]]

    def refuse(listings: Listings) -> None:
        raise ValueError("too long")

    with pytest.raises(ValueError, match="too long"):
        await store.completions.update("u1", first.id, prompt="changed", check=refuse)
    kept = await store.completions.get("u1", first.id)
    assert kept is not None and kept.user_prompt_text == "one"  # undone
    assert await store.completions.update("u2", first.id, text="x", check=check) is None
    assert len(seen) == 1


async def test_a_metadata_patch_can_make_a_completion_a_deep_research_entry(store: Store) -> None:
    _, row = await store.chats.create("u1", "t", "apex", answer())
    assert await store.completions.deep_research("u1") == []
    await store.completions.update("u1", row.id, metadata_patch={"deep_researcher": {"n": 1}})
    assert [c.id for c in await store.completions.deep_research("u1")] == [row.id]
    await store.completions.update("u1", row.id, metadata_patch={"deep_researcher": None})
    assert await store.completions.deep_research("u1") == []


async def test_a_new_job_is_pending_in_its_own_chat(store: Store) -> None:
    job, completion = await store.jobs.create("u1", b"req", "question", "Research: X")
    other, _ = await store.jobs.create("u1", b"req", "question", "Research: Y")
    assert job.id != other.id
    assert (job.status, job.error, job.completion_id) == ("pending", None, completion.id)
    assert job.created_us == job.updated_us == completion.created_us
    assert completion.metadata == {"deep_researcher": {"job_id": job.id, "status": "pending"}}
    assert completion.completed_us is None and completion.user_prompt_text == "question"
    (chat,) = [c for c in await store.chats.of_user("u1", "") if c.id == completion.chat_id]
    assert (chat.title, chat.chat_type) == ("Research: X", "apex")
    stored = await store.jobs.get("u1", job.id)
    assert stored == job  # no chunks yet
    assert await store.jobs.get("u2", job.id) is None


async def test_a_jobs_chunks_come_back_in_order(store: Store) -> None:
    job, _ = await store.jobs.create("u1", b"req", "question", "t")
    (claim,) = await store.jobs.claim("runner", 30, 5)
    for seq, chunk in [(2, "c"), (0, "a"), (1, "b")]:
        assert await store.jobs.add_chunk(job.id, claim.token, seq, chunk)
    stored = await store.jobs.get("u1", job.id)
    assert stored is not None and stored.chunks == ((0, "a"), (1, "b"), (2, "c"))
    assert stored.updated_us >= job.updated_us and stored.created_us == job.created_us


async def test_runners_claim_pending_jobs_oldest_first_each_once(store: Store) -> None:
    first, _ = await store.jobs.create("u1", b"r1", "q1", "t")
    second, _ = await store.jobs.create("u2", b"r2", "q2", "t")
    third, _ = await store.jobs.create("u1", b"r3", "q3", "t")
    a = await store.jobs.claim("a", 30, 2)
    assert [(c.id, c.user_id, c.request) for c in a] == [
        (first.id, "u1", b"r1"),
        (second.id, "u2", b"r2"),
    ]
    assert a[0].token.startswith("a/") and a[0].token != a[1].token
    b = await store.jobs.claim("b", 30, 5)
    assert [c.id for c in b] == [third.id]
    assert await store.jobs.claim("c", 30, 5) == []  # every lease is held
    running = await store.jobs.get("u1", first.id)
    assert running is not None and running.status == "running"
    row = await store.completions.get("u1", running.completion_id or "")
    assert row is not None and row.metadata["deep_researcher"]["status"] == "running"
    assert await store.jobs.finish(first.id, a[0].token, "completed", text="answer")
    assert await store.jobs.claim("c", 30, 5) == []  # a finished job is never claimed again
    assert not await store.jobs.renew(first.id, a[0].token, 30)  # nor renewed


async def test_an_expired_lease_passes_the_job_on_and_the_old_run_writes_nothing(
    store: Store,
) -> None:
    job, completion = await store.jobs.create("u1", b"req", "question", "t")
    (old,) = await store.jobs.claim("dead", 0.3, 5)
    assert await store.jobs.add_chunk(job.id, old.token, 0, "from the first run")
    assert await store.jobs.renew(job.id, old.token, 0.3)
    assert await store.jobs.claim("other", 30, 5) == []  # still held
    await asyncio.sleep(0.4)  # the dead runner stops renewing: its lease runs out
    assert not await store.jobs.renew(job.id, old.token, 30)
    (new,) = await store.jobs.claim("other", 30, 5)
    assert new.id == job.id and new.token != old.token
    taken = await store.jobs.get("u1", job.id)
    assert taken is not None and taken.chunks == ()  # restarted from scratch
    assert not await store.jobs.add_chunk(job.id, old.token, 1, "late")
    assert not await store.jobs.finish(job.id, old.token, "completed", text="old answer")
    assert await store.jobs.add_chunk(job.id, new.token, 0, "new")
    assert await store.jobs.finish(job.id, new.token, "completed", text="new answer")
    done = await store.jobs.get("u1", job.id)
    assert done is not None and (done.status, done.chunks) == ("completed", ((0, "new"),))
    row = await store.completions.get("u1", completion.id)
    assert row is not None and row.completion_text == "new answer"


async def test_a_lease_runs_exactly_as_long_as_asked_from_the_claim_or_renewal(
    store: Store,
) -> None:
    job, _ = await store.jobs.create("u1", b"r", "p", "t")
    lease_us = 10**12  # 11.6 days: a lease off by a millionth is off by a second
    expiry = "SELECT lease_expires_us FROM jobs WHERE id = %s"
    before = now_us()
    (claimed,) = await store.jobs.claim("r", lease_us / 1e6, 5)
    assert before + lease_us <= await scalar(store, expiry, job.id) <= now_us() + lease_us
    before = now_us()
    assert await store.jobs.renew(job.id, claimed.token, 2 * lease_us / 1e6)
    assert before + 2 * lease_us <= await scalar(store, expiry, job.id) <= now_us() + 2 * lease_us


async def test_released_leases_are_taken_over_at_once(store: Store) -> None:
    job, _ = await store.jobs.create("u1", b"req", "question", "t")
    other, _ = await store.jobs.create("u1", b"req", "question", "t")
    claims = await store.jobs.claim("closing", 60, 5)
    assert await store.jobs.release([claims[0].token]) == 1
    assert await store.jobs.release([claims[0].token]) == 0  # released already
    (taken,) = await store.jobs.claim("next", 60, 5)
    assert taken.id == job.id  # the other job's lease still holds
    assert not await store.jobs.add_chunk(job.id, claims[0].token, 0, "x")
    assert await store.jobs.add_chunk(other.id, claims[1].token, 0, "x")


async def test_search_finds_every_matching_chat_however_many_hits_one_chat_has(
    store: Store,
) -> None:
    # One chat whose 25 completions each outrank the other chats' single hits.
    busy, _ = await store.chats.create("u1", "busy", "apex", answer("zebra zebra", "zebra"))
    for _ in range(24):
        await store.chats.add_completion("u1", busy.id, answer("zebra zebra", "zebra"))
    quiet = [
        (await store.chats.create("u1", "q", "apex", answer(f"a long prompt {i} about a zebra")))[0]
        for i in range(2)
    ]
    found = await store.chats.search("u1", "zebra", limit=2)
    assert found[0] == busy.id and len(found) == 2 and found[1] in {c.id for c in quiet}
    assert set(await store.chats.search("u1", "zebra", limit=3)) == {
        busy.id,
        *(c.id for c in quiet),
    }


async def test_a_new_chat_and_its_completion_are_stored_as_given(store: Store) -> None:
    before = now_us()
    chat, first = await store.chats.create("u1", "Zebras", "apex", answer("q", "ans", k=1))
    assert (chat.user_id, chat.title, chat.chat_type) == ("u1", "Zebras", "apex")
    assert before <= chat.created_us == chat.updated_us <= now_us()
    assert await store.chats.get("u1", chat.id) == chat
    assert await store.chats.get("u2", chat.id) is None  # another user's chat is not there
    assert await store.completions.get("u1", first.id) == first
    assert (first.chat_id, first.user_prompt_text, first.completion_text) == (chat.id, "q", "ans")
    assert first.created_us == first.completed_us == chat.created_us
    assert first.metadata == {"k": 1} and first.error_message == ""
    assert first.completion_type == "basic"


async def test_a_chats_completions_come_oldest_first_and_only_to_their_owner(store: Store) -> None:
    chat, first = await store.chats.create("u1", "t", "apex", answer("one"))
    second = await store.chats.add_completion("u1", chat.id, answer("two"))
    assert second is not None
    pending = await store.chats.add_completion(
        "u1", chat.id, NewCompletion("three", "", "basic", {}, completed=False)
    )
    assert pending is not None and pending.completed_us is None
    listed = await store.chats.completions("u1", chat.id)
    assert listed is not None and [c.user_prompt_text for c in listed] == ["one", "two", "three"]
    assert listed[0] == first and listed[2].completed_us is None
    assert await store.chats.completions("u2", chat.id) is None
    assert await store.chats.add_completion("u2", chat.id, answer()) is None


async def test_deleting_is_all_or_nothing_and_names_the_unknown_ids(store: Store) -> None:
    mine, _ = await store.chats.create("u1", "mine", "apex", answer())
    other, _ = await store.chats.create("u1", "other", "apex", answer())
    theirs, _ = await store.chats.create("u2", "theirs", "apex", answer())
    assert await store.chats.delete("u1", [mine.id, theirs.id, "nope"]) == [theirs.id, "nope"]
    assert await store.chats.get("u1", mine.id) == mine  # nothing was deleted
    assert await store.chats.delete("u1", [mine.id]) == []
    assert await store.chats.get("u1", mine.id) is None
    assert await store.chats.get("u1", other.id) == other
    assert await store.chats.get("u2", theirs.id) == theirs


async def test_deleting_completions_is_all_or_nothing_too(store: Store) -> None:
    chat, first = await store.chats.create("u1", "t", "apex", answer("one"))
    second = await store.chats.add_completion("u1", chat.id, answer("two"))
    assert second is not None
    assert await store.completions.delete("u2", [first.id]) == [first.id]
    assert await store.completions.delete("u1", [first.id, "nope"]) == ["nope"]
    assert await store.completions.delete("u1", [first.id]) == []
    listed = await store.chats.completions("u1", chat.id)
    assert listed is not None and [c.id for c in listed] == [second.id]


async def test_a_metadata_patch_replaces_keys_and_null_removes_them(store: Store) -> None:
    _, row = await store.chats.create("u1", "t", "apex", answer(a=1, b=2))
    patched = await store.completions.update("u1", row.id, metadata_patch={"a": None, "c": 3})
    assert patched is not None and patched.metadata == {"b": 2, "c": 3}
    absent = await store.completions.update("u1", row.id, metadata_patch={"never-set": None})
    assert absent is not None and absent.metadata == {"b": 2, "c": 3}
    same = await store.completions.update("u1", row.id, text="new", metadata_patch={})
    assert same is not None and same.metadata == {"b": 2, "c": 3}
    assert same.completion_text == "new" and same.user_prompt_text == "p"
    prompted = await store.completions.update("u1", row.id, prompt="asked again")
    assert prompted is not None and prompted.user_prompt_text == "asked again"
    assert prompted.completion_text == "new"  # what is not given stays


async def test_only_completions_marked_as_deep_research_are_listed_as_such(store: Store) -> None:
    await store.chats.create("u1", "t", "apex", answer())
    _, completion = await store.jobs.create("u1", b"req", "question", "title")
    listed = await store.completions.deep_research("u1")
    assert [c.id for c in listed] == [completion.id]
    assert completion.completed_us is None and completion.completion_type == "deep_research"


async def test_a_job_completes_its_completion_only_when_it_ends(store: Store) -> None:
    job, completion = await store.jobs.create("u1", b"req", "question", "title")
    (claim,) = await store.jobs.claim("runner", 30, 1)
    assert await store.jobs.finish(job.id, claim.token, "running", details={"step": 1})
    running = await store.completions.get("u1", completion.id)
    assert running is not None and running.completed_us is None
    assert running.metadata["deep_researcher"] == {"job_id": job.id, "status": "running", "step": 1}
    assert await store.jobs.finish(job.id, claim.token, "failed", error="upstream down")
    failed = await store.completions.get("u1", completion.id)
    assert failed is not None and failed.completed_us is not None
    assert failed.error_message == "upstream down" and failed.completion_text == ""
    stored = await store.jobs.get("u1", job.id)
    assert stored is not None and (stored.status, stored.error) == ("failed", "upstream down")


@pytest.mark.oldest
async def test_the_store_reopens_with_its_rows(tmp_path) -> None:
    path = tmp_path / "apex.sqlite3"
    first = SqliteStore(path)
    try:
        chat, _ = await first.chats.create("u1", "kept", "apex", answer())
        assert first.path == path
        assert any(t.name.startswith("apex-grpc-store") for t in threading.enumerate())
    finally:
        await first.close()
    again = SqliteStore(path)
    try:
        assert await again.chats.get("u1", chat.id) == chat
        version = again.worker.call(
            lambda: again.worker.conn.execute(
                "SELECT value FROM meta WHERE key = 'schema_version'"
            ).fetchall()
        )
        assert version == [(str(SCHEMA_VERSION),)]
    finally:
        await again.close()


@pytest.mark.oldest
@pytest.mark.parametrize(
    ("prompt", "title"),
    [
        ("Tell me about zebras", "Tell me about zebras"),
        ("  spaced \n  out  ", "spaced out"),
        ("one two three four five six seven eight", "one two three four five six seven eight"),
        (
            "one two three four five six seven eight nine",
            "one two three four five six seven eight…",
        ),
        ("x" * 60, "x" * 60),
        ("x" * 61, "x" * 59 + "…"),
        ("word " * 3 + "y" * 70, "word word word " + "y" * 44 + "…"),
        ("a" * 58 + " " + "b" * 10, "a" * 58 + "…"),  # no space before the ellipsis
        ("", "Untitled chat"),
        ("   ", "Untitled chat"),
    ],
)
def test_default_titles_are_the_first_eight_words_within_60_characters(
    prompt: str, title: str
) -> None:
    assert default_title(prompt) == title
    assert len(default_title(prompt)) <= 60


@pytest.mark.oldest
def test_now_is_counted_in_whole_microseconds() -> None:
    stamp = now_us()
    assert isinstance(stamp, int) and abs(stamp / 1e6 - time.time()) < 5


@pytest.mark.oldest
async def test_a_version_1_database_migrates_forward_with_its_rows(tmp_path) -> None:
    import sqlite3

    from apex_grpc_server._store.sqlite.schema import MIGRATIONS

    path = tmp_path / "apex.sqlite3"
    with sqlite3.connect(path) as old:  # the schema as servers before migrations left it
        for statement in MIGRATIONS[0].statements:
            old.execute(statement)
        old.execute("INSERT INTO meta(key, value) VALUES ('schema_version', '1')")
        old.execute("INSERT INTO chats VALUES ('c1', 'u1', 'kept', 'apex', 1, 1)")
        old.execute(
            "INSERT INTO jobs(id, user_id, status, created_us, updated_us, request)"
            " VALUES ('j1', 'u1', 'running', 1, 1, x'00')"
        )
    store = SqliteStore(path)
    try:
        assert store.schema_version == SCHEMA_VERSION == 5
        chat = await store.chats.get("u1", "c1")
        assert chat is not None and chat.title == "kept"
        (claim,) = await store.jobs.claim("r", 30, 5)  # a job left running has no lease
        assert (claim.id, claim.request) == ("j1", b"\x00")
    finally:
        await store.close()
    again = SqliteStore(path)  # reopening applies nothing
    await again.close()
    assert again.schema_version == 5


async def test_every_write_of_a_completion_shows_its_check_the_listings_it_changes(
    store: Store,
) -> None:
    seen: list[tuple[list[str], list[str] | None]] = []

    def check(listings: Listings) -> None:
        deep = listings.deep_research
        seen.append(
            (
                [row.user_prompt_text for row in listings.chat],
                None if deep is None else [row.user_prompt_text for row in deep],
            )
        )

    chat, first = await store.chats.create("u1", "t", "apex", answer("one"), check=check)
    await store.chats.add_completion("u1", chat.id, answer("two"), check=check)
    await store.jobs.create("u1", b"r", "three", "t", check=check)
    patch = {"deep_researcher": {"status": "completed"}}
    await store.completions.update("u1", first.id, metadata_patch=patch, check=check)
    assert seen == [
        (["one"], None),
        (["one", "two"], None),
        (["three"], ["three"]),
        (["one", "two"], ["three", "one"]),  # newest first
    ]

    def refuse(listings: Listings) -> None:
        raise ValueError("too big")

    for write in (
        lambda: store.chats.create("u1", "t", "apex", answer("x"), check=refuse),
        lambda: store.chats.add_completion("u1", chat.id, answer("x"), check=refuse),
        lambda: store.jobs.create("u1", b"r", "x", "t", check=refuse),
    ):
        with pytest.raises(ValueError, match="too big"):
            await write()
    assert len(await store.chats.of_user("u1", "")) == 2  # nothing of the refused writes stayed
    assert len(await store.chats.completions("u1", chat.id) or []) == 2


async def test_a_jobs_answer_shows_its_check_the_listings_and_a_refusal_stores_nothing(
    store: Store,
) -> None:
    job, completion = await store.jobs.create("u1", b"r", "question", "t")
    (claimed,) = await store.jobs.claim("runner", 30, 1)

    def refuse(listings: Listings) -> None:
        assert [row.completion_text for row in listings.chat] == ["the answer"]
        assert [row.id for row in listings.deep_research or []] == [completion.id]
        raise ValueError("too big")

    with pytest.raises(ValueError, match="too big"):
        await store.jobs.finish(
            claimed.id, claimed.token, "completed", text="the answer", check=refuse
        )
    stored = await store.jobs.get("u1", job.id)
    assert stored is not None and stored.status == "running"
    row = await store.completions.get("u1", completion.id)
    assert row is not None and row.completion_text == ""
    assert await store.jobs.finish(claimed.id, claimed.token, "failed", error="refused")
