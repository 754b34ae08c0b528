"""The store's operations: each written once, run on the SQLite worker thread, awaited."""

from __future__ import annotations

import inspect
import sqlite3
import threading
import time
from collections.abc import AsyncIterator

import pytest

from apex_grpc_server._sqlite import SqliteWorker, on_worker
from apex_grpc_server._store import NewCompletion, Store, default_title
from apex_grpc_server._store._rows import SCHEMA_VERSION, now_us

pytestmark = pytest.mark.oldest


class Probe:
    def __init__(self, worker: SqliteWorker) -> None:
        self.worker = worker

    @on_worker
    def where(self, conn: sqlite3.Connection, tag: str, *, twice: bool = False) -> str:
        """Which thread ran me."""
        assert conn is self.worker.conn
        name = threading.current_thread().name
        return f"{tag}:{name}" * (2 if twice else 1)


async def test_on_worker_runs_the_body_on_the_worker_thread(tmp_path) -> None:
    worker = SqliteWorker(tmp_path / "probe.sqlite3", "probe-worker")
    try:
        result = await Probe(worker).where("x", twice=True)
    finally:
        worker.close()
    assert result.startswith("x:probe-worker") and result.count("x:") == 2
    # Callers see the method as they call it: no connection parameter.
    assert (
        str(inspect.signature(Probe.where))
        == "(self, tag: 'str', *, twice: 'bool' = False) -> 'str'"
    )
    assert Probe.where.__doc__ == "Which thread ran me."
    assert inspect.iscoroutinefunction(Probe.where)


async def test_store_tables_share_one_database(tmp_path) -> None:
    store = Store(tmp_path / "apex.sqlite3")
    try:
        chat, first = await store.chats.create("u1", "t", "apex", NewCompletion("p", "a", "b", {}))
        job, completion = await store.jobs.create("u1", b"req", "question", "title")
        await store.jobs.add_chunk(job.id, 0, "chunk")
        await store.jobs.set_status(job.id, "completed", text="answer", details={"n": 1})
        assert await store.completions.get("u2", first.id) is None  # another user's row
        finished = await store.completions.get("u1", completion.id)
        assert finished is not None and finished.completion_text == "answer"
        assert finished.metadata["deep_researcher"] == {
            "job_id": job.id,
            "status": "completed",
            "n": 1,
        }
        assert [c.id for c in await store.chats.of_user("u1", "")][-1] == chat.id
        stored = await store.jobs.get("u1", job.id)
        assert stored is not None and stored.chunks == ((0, "chunk"),)
    finally:
        store.close()


@pytest.fixture
async def store(tmp_path) -> AsyncIterator[Store]:
    opened = Store(tmp_path / "apex.sqlite3")
    yield opened
    opened.close()


def answer(prompt: str = "p", text: str = "a", **metadata: object) -> NewCompletion:
    return NewCompletion(prompt, text, "basic", dict(metadata))


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


async def test_only_completions_marked_as_deep_research_are_listed_as_such(store: Store) -> None:
    await store.chats.create("u1", "t", "apex", answer())
    _, completion = await store.jobs.create("u1", b"req", "question", "title")
    listed = await store.completions.deep_research("u1")
    assert [c.id for c in listed] == [completion.id]
    assert completion.completed_us is None and completion.completion_type == "deep_research"


async def test_a_job_completes_its_completion_only_when_it_ends(store: Store) -> None:
    job, completion = await store.jobs.create("u1", b"req", "question", "title")
    await store.jobs.set_status(job.id, "running", details={"step": 1})
    running = await store.completions.get("u1", completion.id)
    assert running is not None and running.completed_us is None
    assert running.metadata["deep_researcher"] == {"job_id": job.id, "status": "running", "step": 1}
    await store.jobs.set_status(job.id, "failed", error="upstream down")
    failed = await store.completions.get("u1", completion.id)
    assert failed is not None and failed.completed_us is not None
    assert failed.error_message == "upstream down" and failed.completion_text == ""
    stored = await store.jobs.get("u1", job.id)
    assert stored is not None and (stored.status, stored.error) == ("failed", "upstream down")


async def test_the_store_reopens_with_its_rows(tmp_path) -> None:
    path = tmp_path / "apex.sqlite3"
    first = Store(path)
    try:
        chat, _ = await first.chats.create("u1", "kept", "apex", answer())
        assert first.path == path
        assert any(t.name.startswith("apex-grpc-store") for t in threading.enumerate())
    finally:
        first.close()
    again = Store(path)
    try:
        assert await again.chats.get("u1", chat.id) == chat
        version = again.worker.call(
            lambda: again.worker.conn.execute(
                "SELECT value FROM meta WHERE key = 'schema_version'"
            ).fetchall()
        )
        assert version == [(str(SCHEMA_VERSION),)]
    finally:
        again.close()


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


def test_now_is_counted_in_whole_microseconds() -> None:
    stamp = now_us()
    assert isinstance(stamp, int) and abs(stamp / 1e6 - time.time()) < 5
