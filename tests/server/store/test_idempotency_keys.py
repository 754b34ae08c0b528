"""Idempotency keys in the store, on both backends: a keyed write happens once.

A write given a ``KeyRecord`` stores it in its own transaction; a second
write with the same key (same user) is undone and raises ``KeyTaken``
carrying the first answer, also when two stores on one PostgreSQL race.
"""

from __future__ import annotations

import asyncio
import sys
from types import SimpleNamespace

import pytest
from _stores import scalar

from apex_grpc_server._store import NewCompletion, Storage, open_store
from apex_grpc_server._store import idempotency_keys as keys
from apex_grpc_server._store.idempotency_keys import KeyRecord, KeyTaken
from apex_grpc_server._store.url import parse


def record(key: str = "k1", method: str = "Create", fingerprint: str = "f1") -> KeyRecord:
    return KeyRecord(key, method, fingerprint, lambda result: repr(result).encode())


def answer(prompt: str = "p") -> NewCompletion:
    return NewCompletion(prompt, "a", "basic", {})


async def test_a_repeated_key_writes_nothing_and_carries_the_first_answer(store: Storage) -> None:
    chat, row = await store.chats.create("u1", "t", "apex", answer(), key=record())
    first = await store.keys.get("u1", "k1")
    assert first == keys.Remembered("Create", "f1", repr((chat, row)).encode())
    with pytest.raises(KeyTaken) as taken:
        await store.chats.create("u1", "t", "apex", answer(), key=record())
    assert taken.value.remembered == first
    assert str(taken.value) == "idempotency key already used"
    assert [c.id for c in await store.chats.of_user("u1", "")] == [chat.id]
    # Keys are per user; another user's key of the same name is theirs.
    await store.chats.create("u2", "t", "apex", answer(), key=record())
    assert len(await store.chats.of_user("u2", "")) == 1
    assert await store.keys.get("u3", "k1") is None


async def test_every_write_stores_its_key_and_is_undone_on_a_repeat(store: Storage) -> None:
    chat, row = await store.chats.create("u1", "t", "apex", answer())
    other, _ = await store.chats.create("u1", "o", "apex", answer())
    taken = record("taken")
    await store.chats.create("u1", "x", "apex", answer(), key=taken)
    writes = [
        lambda key: store.chats.add_completion("u1", chat.id, answer("more"), key=key),
        lambda key: store.chats.update("u1", chat.id, "renamed", None, key=key),
        lambda key: store.completions.update("u1", row.id, text="edited", key=key),
        lambda key: store.jobs.create("u1", b"r", "research", "t", key=key),
        lambda key: store.completions.delete("u1", [row.id], key=key),
        lambda key: store.chats.delete("u1", [other.id], key=key),
    ]
    JOB_CREATE = 3
    for number, write in enumerate(writes):
        before = await state(store, chat.id)
        with pytest.raises(KeyTaken):
            await write(taken)
        assert await state(store, chat.id) == before, number  # undone
        result = await write(record(f"w{number}"))
        stored = await store.keys.get("u1", f"w{number}")
        # The stored answer is made from this write's own result (a new job's: the job).
        answered = result[0] if number == JOB_CREATE else result
        assert stored == keys.Remembered("Create", "f1", repr(answered).encode()), number
        assert await state(store, chat.id) != before, number


async def state(store: Storage, chat_id: str) -> tuple[object, ...]:
    return (
        await store.chats.of_user("u1", ""),
        await store.chats.completions("u1", chat_id),
        await store.completions.deep_research("u1"),
    )


async def test_a_failed_write_stores_no_key(store: Storage) -> None:
    assert await store.chats.add_completion("u1", "nope", answer(), key=record()) is None
    assert await store.chats.update("u1", "nope", "t", None, key=record()) is None
    assert await store.completions.update("u1", "nope", text="t", key=record()) is None
    assert await store.chats.delete("u1", ["nope"], key=record()) == ["nope"]
    assert await store.keys.get("u1", "k1") is None


async def test_writes_without_a_key_work_as_before(store: Storage) -> None:
    await store.chats.create("u1", "t", "apex", answer())
    await store.chats.create("u1", "t", "apex", answer())
    assert len(await store.chats.of_user("u1", "")) == 2


async def test_an_expired_key_is_forgotten_and_may_be_used_again(
    store: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    await store.chats.create("u1", "t", "apex", answer(), key=record(fingerprint="old"))
    monkeypatch.setattr(keys, "KEY_TTL_S", -1)  # everything stored so far has expired
    assert await store.keys.get("u1", "k1") is None
    await store.chats.create("u1", "t", "apex", answer(), key=record(fingerprint="new"))
    monkeypatch.setattr(keys, "KEY_TTL_S", 24 * 3600)
    fresh = await store.keys.get("u1", "k1")
    assert fresh is not None and fresh.fingerprint == "new"
    assert keys.KEY_TTL_S == 24 * 3600  # the documented lifetime


async def test_two_replicas_racing_on_one_key_write_once(postgres_url: str, tmp_path) -> None:
    stores = [await open_store(parse(postgres_url, tmp_path)) for _ in range(2)]
    try:
        outcomes = await asyncio.gather(
            *(
                store.chats.create("u1", "t", "apex", answer(f"p{n}"), key=record())
                for n in range(8)
                for store in stores
            ),
            return_exceptions=True,
        )
        won = [o for o in outcomes if not isinstance(o, BaseException)]
        lost = [o for o in outcomes if isinstance(o, KeyTaken)]
        assert len(won) == 1 and len(lost) == 15
        assert {o.remembered.response for o in lost} == {repr(won[0]).encode()}
        for store in stores:
            assert [c.id for c in await store.chats.of_user("u1", "")] == [won[0][0].id]
    finally:
        for store in stores:
            await store.close()


async def test_a_key_is_remembered_for_exactly_its_lifetime_then_replaced(
    store: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [10**15]
    monkeypatch.setattr(keys, "now_us", lambda: clock[0])
    await store.chats.create("u1", "t", "apex", answer(), key=record(fingerprint="old"))
    clock[0] += keys.KEY_TTL_S * 1_000_000  # the last microsecond it is remembered
    assert await store.keys.get("u1", "k1") is not None
    clock[0] += 1
    assert await store.keys.get("u1", "k1") is None
    # The expired record is replaced by the next write of the key, not refused.
    await store.chats.create("u1", "t", "apex", answer(), key=record(fingerprint="new"))
    fresh = await store.keys.get("u1", "k1")
    assert fresh is not None and fresh.fingerprint == "new"


async def test_expired_keys_are_deleted_once_a_minute_at_most(
    store: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock_us, monotonic = [10**15], [1000.0]
    monkeypatch.setattr(keys, "now_us", lambda: clock_us[0])
    module = sys.modules[type(store.keys).__module__]  # either store
    monkeypatch.setattr(module, "time", SimpleNamespace(monotonic=lambda: monotonic[0]))
    lifetime = keys.KEY_TTL_S * 1_000_000 + 1

    await store.chats.create("u1", "t", "apex", answer(), key=record("first"))
    clock_us[0] += lifetime
    await store.keys.get("u1", "any")  # the first lookup sweeps
    assert await scalar(store, "SELECT count(*) FROM idempotency_keys") == 0
    await store.chats.create("u1", "t", "apex", answer(), key=record("second"))
    clock_us[0] += lifetime
    monotonic[0] += keys.SWEEP_EVERY_S - 0.5
    await store.keys.get("u1", "any")  # within the minute: no sweep
    assert await scalar(store, "SELECT count(*) FROM idempotency_keys") == 1
    monotonic[0] += 0.5
    await store.keys.get("u1", "any")  # a minute after the last sweep: the next one
    assert await scalar(store, "SELECT count(*) FROM idempotency_keys") == 0
