"""The store's operations driven directly: listing, searching, editing, deep-research jobs.

Every read and write is scoped by the user id; another user's row is as good as missing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from apex_grpc_server._store import NewCompletion, Store

pytestmark = pytest.mark.oldest


@pytest.fixture
async def store(tmp_path) -> AsyncIterator[Store]:
    opened = Store(tmp_path / "apex.sqlite3")
    yield opened
    opened.close()


def answer(prompt: str = "p", text: str = "a", **metadata: object) -> NewCompletion:
    return NewCompletion(prompt, text, "basic", dict(metadata))


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

    def check(rows: list) -> None:  # sees the chat as it would be
        seen.append([row.completion_text for row in rows])

    edited = await store.completions.update("u1", first.id, text="uno", check=check)
    assert edited is not None and edited.completion_text == "uno" and seen == [["uno", "2"]]

    def refuse(rows: list) -> None:
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
    for seq, chunk in [(2, "c"), (0, "a"), (1, "b")]:
        await store.jobs.add_chunk(job.id, seq, chunk)
    stored = await store.jobs.get("u1", job.id)
    assert stored is not None and stored.chunks == ((0, "a"), (1, "b"), (2, "c"))
    assert stored.updated_us >= job.updated_us and stored.created_us == job.created_us


async def test_a_restart_fails_the_unfinished_jobs_only(store: Store) -> None:
    pending, pending_row = await store.jobs.create("u1", b"r", "q1", "t")
    running, _ = await store.jobs.create("u1", b"r", "q2", "t")
    done, _ = await store.jobs.create("u2", b"r", "q3", "t")
    await store.jobs.set_status(running.id, "running")
    await store.jobs.set_status(done.id, "completed", text="answer")
    assert await store.jobs.interrupt_unfinished("server restarted") == 2
    for job in (pending, running):
        stored = await store.jobs.get("u1", job.id)
        assert stored is not None and (stored.status, stored.error) == (
            "failed",
            "server restarted",
        )
    finished = await store.completions.get("u1", pending_row.id)
    assert finished is not None and finished.error_message == "server restarted"
    assert finished.completed_us is not None
    assert finished.metadata["deep_researcher"]["status"] == "failed"
    kept = await store.jobs.get("u2", done.id)
    assert kept is not None and (kept.status, kept.error) == ("completed", None)
    assert await store.jobs.interrupt_unfinished("again") == 0


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
