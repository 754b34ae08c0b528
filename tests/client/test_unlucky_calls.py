"""Unlucky calls end promptly with a typed error, both clients (issue #19 items 3, 6, 9a, 10).

A pushback hint no call should wait for, a DEADLINE_EXCEEDED from the server, a message
over grpc's size limit in either direction (against the real echo server), and an API key
grpc could never send.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

import apex_grpc as mc
from apex_grpc.testing import FakeApex, error

from .conftest import Client, settle

HI: list[mc.MessageParam] = [{"role": "user", "content": "Hi"}]


@pytest.fixture
def fake() -> Any:
    with FakeApex() as running:
        yield running


@pytest.fixture(params=["sync", "async"])
async def no_deadline_client(
    request: pytest.FixtureRequest, fake: FakeApex
) -> AsyncIterator[Client]:
    make = fake.client if request.param == "sync" else fake.async_client
    client: Client = make(timeout=None)
    yield client
    await settle(client.close())


# grpc core drops a hint that does not fit its own duration type (10**30 ms) before the
# client sees it: that call ends as a bare rate limit (never retried), with no hint to quote.
@pytest.mark.parametrize(
    ("pushback_ms", "quoted"),
    [(10**9, True), (10**15, True), (10**30, False)],
)
async def test_a_huge_pushback_without_a_deadline_fails_at_once_with_the_typed_error(
    fake: FakeApex, no_deadline_client: Client, pushback_ms: int, quoted: bool
) -> None:
    fake.on("ChatCompletion").reply(
        error("RESOURCE_EXHAUSTED", "busy", retry_pushback_ms=pushback_ms)
    )

    started = time.monotonic()
    with pytest.raises(mc.RateLimitError) as caught:
        await settle(no_deadline_client.chat.completions.create(messages=HI))

    assert time.monotonic() - started < 5.0  # not 11.6 days, not an OverflowError
    assert caught.value.attempts == 1 and fake.call_count == 1
    if quoted:
        hint = f"the server asked to retry in {pushback_ms} ms, past RetryPolicy.max_pushback"
        assert caught.value.hint is not None and hint in caught.value.hint
        assert hint in str(caught.value)
    else:
        assert caught.value.hint is None


async def test_a_pushback_past_the_deadline_fails_at_once(
    fake: FakeApex, no_deadline_client: Client
) -> None:
    fake.on("ChatCompletion").reply(error("UNAVAILABLE", "draining", retry_pushback_ms=30_000))

    started = time.monotonic()
    with pytest.raises(mc.UnavailableError) as caught:
        await settle(no_deadline_client.chat.completions.create(messages=HI, timeout=20))

    assert time.monotonic() - started < 5.0
    assert caught.value.hint is not None and "past the call's deadline" in caught.value.hint


async def test_deadline_exceeded_from_the_server_is_raised_after_one_attempt(
    fake: FakeApex, no_deadline_client: Client
) -> None:
    # The server sends it for web search's max_response_time and for upstream timeouts:
    # a retry would make the user wait, and pay, again.
    fake.on("WebRetrieval").reply(error("DEADLINE_EXCEEDED", "miners took too long"))

    with pytest.raises(mc.DeadlineExceededError) as caught:
        await settle(no_deadline_client.web_search.search("grpc"))

    assert caught.value.attempts == 1
    assert fake.call_count == 1


# A message over the size limit, both directions, for real: grpc's own wording.

LIMIT = 64 * 1024


@pytest.fixture(params=["sync", "async"])
async def small_client(
    request: pytest.FixtureRequest, echo_target: str, api_key: str
) -> AsyncIterator[Client]:
    cls = mc.ApexClient if request.param == "sync" else mc.AsyncApexClient
    client: Client = cls(
        base_url=echo_target, api_key=api_key, secure=False, max_message_bytes=LIMIT
    )
    yield client
    await settle(client.close())


async def test_a_request_over_the_clients_limit_is_message_too_large(
    small_client: Client,
) -> None:
    with pytest.raises(mc.MessageTooLargeError) as caught:
        await settle(small_client.chats.create("x" * (LIMIT + 1000)))

    assert "Sent message larger than max" in caught.value.details
    assert not isinstance(caught.value, mc.RateLimitError)
    assert caught.value.attempts == 1 and caught.value.hint


async def test_a_reply_over_the_clients_limit_is_message_too_large(
    small_client: Client,
) -> None:
    # Three completions of 30 KB each fit one by one; their listing does not.
    created = await settle(small_client.chats.create("y" * 30_000))
    chat_id = created.parsed_chat.id
    for _ in range(2):
        await settle(small_client.chats.create_completion(chat_id, "z" * 30_000))

    with pytest.raises(mc.MessageTooLargeError) as caught:
        await settle(small_client.chats.list_completions(chat_id))

    assert "Received message larger than max" in caught.value.details
    assert caught.value.attempts == 1
    assert caught.value.hint is not None and "max_message_bytes" in caught.value.hint
    await settle(small_client.chats.delete(chat_id))


# An API key grpc cannot send as metadata is refused when the client is made.

SECRET = "sk-live-0123456789"


@pytest.mark.parametrize(
    ("key", "kind"),
    [
        (SECRET + "\u00e9", "a non-ASCII character"),
        (SECRET + "\x07", "a control character"),
        (SECRET + "\t" + SECRET, "a control character"),
        (SECRET + " " + SECRET, "a space"),
        (SECRET + "\x7f", "a control character"),
    ],
)
def test_a_key_that_cannot_be_sent_as_metadata_is_refused_without_echoing_it(
    client_type: type[mc.ApexClient] | type[mc.AsyncApexClient], key: str, kind: str
) -> None:
    with pytest.raises(mc.ValidationError) as caught:
        client_type(api_key=key, base_url="127.0.0.1:1", secure=False)

    assert caught.value.argument == "api_key"
    assert kind in caught.value.problem
    assert SECRET not in str(caught.value) and SECRET not in repr(caught.value)


def test_every_visible_ascii_character_is_a_valid_key_character(
    client_type: type[mc.ApexClient] | type[mc.AsyncApexClient],
) -> None:
    key = "".join(chr(c) for c in range(0x21, 0x7F))
    client_type(api_key=key, base_url="127.0.0.1:1", secure=False)
    client_type(api_key=f"  {key}\n", base_url="127.0.0.1:1", secure=False)  # stripped
