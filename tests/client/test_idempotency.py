"""Idempotency keys on write RPCs (issue #19 item 2, the client's half), both clients.

Every write RPC carries ``idempotency-key`` metadata: one per logical call, the same on
each retry, the caller's own when given; reads carry none. Checked against
apex_grpc.testing.FakeApex, which records the metadata each attempt arrived with.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

import apex_grpc as mc
from apex_grpc._methods import ALL_METHODS
from apex_grpc.testing import FakeApex, error

from .conftest import Client, settle

KEY = "idempotency-key"
FAST = mc.RetryPolicy(initial_backoff=0.01, max_backoff=0.02)
HI: list[mc.MessageParam] = [{"role": "user", "content": "Hi"}]

# What a write method is called with, by RPC: the seven writes of the API.
WRITE_CALLS: dict[str, Callable[..., Any]] = {
    "CreateChatAndCompletion": lambda c, **o: c.chats.create("hello", **o),
    "CreateCompletion": lambda c, **o: c.chats.create_completion("chat-1", "again", **o),
    "SubmitDeepResearcherJob": lambda c, **o: c.deep_research.submit(HI, **o),
    "UpdateChatAttributes": lambda c, **o: c.chats.update("chat-1", {"title": "T"}, **o),
    "UpdateCompletionAttributes": lambda c, **o: c.chats.update_completion(
        "done-1", completion_text="x", **o
    ),
    "DeleteChats": lambda c, **o: c.chats.delete(["chat-1"], **o),
    "DeleteCompletions": lambda c, **o: c.chats.delete_completions(["done-1"], **o),
}
READ_CALLS: dict[str, Callable[..., Any]] = {
    "ChatCompletion": lambda c: c.chat.completions.create(messages=HI),
    "WebRetrieval": lambda c: c.web_search.search("grpc"),
    "GetDeepResearcherJob": lambda c: c.deep_research.get("job-1"),
    "GetChatSessions": lambda c: c.chats.list_sessions(),
    "GetStoredChatCompletions": lambda c: c.chats.list_completions("chat-1"),
    "GetChatCompletion": lambda c: c.chats.get_completion("done-1"),
    "SearchChatIdsByPromptAndCompletionText": lambda c: c.chats.search("x"),
    "GetCompletionsWithDeepResearcherEntry": lambda c: c.chats.list_deep_research_completions(),
}


def test_the_write_rpcs_are_exactly_the_seven_that_change_stored_state() -> None:
    # Pinned as a value: a method wrongly marked (or unmarked) changes which calls carry a key.
    assert {m.name for m in ALL_METHODS if m.write} == set(WRITE_CALLS)
    assert {m.name for m in ALL_METHODS if not m.write} == set(READ_CALLS) | {
        "ChatCompletionStream"
    }


@pytest.fixture
def fake() -> Any:
    with FakeApex() as running:
        yield running


@pytest.fixture(params=["sync", "async"])
async def fake_client(request: pytest.FixtureRequest, fake: FakeApex) -> AsyncIterator[Client]:
    client: Client = (fake.client if request.param == "sync" else fake.async_client)(retry=FAST)
    yield client
    await settle(client.close())


def _answer(fake: FakeApex, rpc: str, *first: Any) -> None:
    response_type = next(m.response_type for m in ALL_METHODS if m.name == rpc)
    fake.on(rpc).reply(*first, response_type())


def _keys(fake: FakeApex, rpc: str) -> list[str | bytes | None]:
    return [call.metadata.get(KEY) for call in fake.calls_to(rpc)]


async def test_a_retried_write_sends_the_same_key_on_every_attempt(
    fake: FakeApex, fake_client: Client
) -> None:
    _answer(fake, "CreateChatAndCompletion", error("UNAVAILABLE", "restarting"))

    await settle(fake_client.chats.create("hello"))

    first, second = _keys(fake, "CreateChatAndCompletion")
    assert isinstance(first, str) and re.fullmatch(r"[0-9a-f]{32}", first)  # 128 random bits in hex
    assert second == first


@pytest.mark.parametrize("rpc", sorted(WRITE_CALLS))
async def test_each_write_sends_a_fresh_key_per_logical_call(
    fake: FakeApex, fake_client: Client, rpc: str
) -> None:
    _answer(fake, rpc)

    await settle(WRITE_CALLS[rpc](fake_client))
    await settle(WRITE_CALLS[rpc](fake_client))

    first, second = _keys(fake, rpc)
    assert first and second and first != second
    assert all(len(c.metadata.get_all(KEY)) == 1 for c in fake.calls_to(rpc))


@pytest.mark.parametrize("rpc", sorted(WRITE_CALLS))
async def test_the_callers_own_key_is_sent_as_given_on_every_attempt(
    fake: FakeApex, fake_client: Client, rpc: str
) -> None:
    _answer(fake, rpc, error("UNAVAILABLE", "restarting"))

    await settle(WRITE_CALLS[rpc](fake_client, idempotency_key="order-42:Retry~OK"))

    assert _keys(fake, rpc) == ["order-42:Retry~OK", "order-42:Retry~OK"]


async def test_reads_send_no_key(fake: FakeApex, fake_client: Client) -> None:
    for rpc, call in READ_CALLS.items():
        _answer(fake, rpc)
        await settle(call(fake_client))
    fake.on("ChatCompletionStream").reply("streamed")
    chunks = await settle(fake_client.chat.completions.create(messages=HI, stream=True))
    await settle(chunks.text())

    assert fake.call_count == len(READ_CALLS) + 1
    assert [call.method for call in fake.requests if KEY in call.metadata] == []


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("", "1 to 128 characters"),
        ("k" * 129, "1 to 128 characters"),
        ("two words", "a space at position 3"),
        ("caf\u00e9", "a non-ASCII character at position 3"),
        ("tab\there", "a control character at position 3"),
        (42, "must be a string"),
    ],
)
async def test_a_key_that_cannot_be_sent_is_refused_before_the_call(
    fake: FakeApex, fake_client: Client, key: object, problem: str
) -> None:
    with pytest.raises(mc.ValidationError, match=f"idempotency_key.*{problem}"):
        await settle(fake_client.chats.create("hello", idempotency_key=key))
    assert fake.call_count == 0


async def test_a_key_of_128_characters_is_the_longest_taken(
    fake: FakeApex, fake_client: Client
) -> None:
    _answer(fake, "DeleteChats")
    await settle(fake_client.chats.delete("chat-1", idempotency_key="k" * 128))
    assert _keys(fake, "DeleteChats") == ["k" * 128]
