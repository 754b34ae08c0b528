"""Hostile input: fuzzed arguments to every public client entry point (only our own errors
ever escape) and oversized messages in both directions (RESOURCE_EXHAUSTED, not a crash).

The server side of this (hypothesis-generated requests over the wire, database
integrity afterwards) is tests/server/wire/test_fuzz_requests.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import apex_grpc as mc

pytestmark = pytest.mark.oldest

WEIRD = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.binary(max_size=8),
    st.lists(st.integers(-5, 300), max_size=3),
    st.dictionaries(st.text(max_size=6), st.one_of(st.text(max_size=6), st.integers()), max_size=3),
    st.just(object()),
)
ROLES = st.sampled_from(["user", "system", "assistant", "robot", "", "USER"])
MESSAGE = st.one_of(
    st.fixed_dictionaries({"role": ROLES, "content": st.one_of(st.text(max_size=30), WEIRD)}),
    st.dictionaries(st.text(max_size=8), WEIRD, max_size=3),
    WEIRD,
)
MESSAGES = st.one_of(st.lists(MESSAGE, max_size=3), WEIRD)
KWARGS = st.dictionaries(
    st.sampled_from(
        [
            "sampling_parameters",
            "seed",
            "model",
            "uids",
            "task",
            "inference_mode",
            "mixture",
            "json_format",
            "test_time_inference",
            "timeout",
            "metadata",
            "max_retries",
            "compression",
            "wait_for_ready",
            "idle_timeout",
            "first_chunk_timeout",
            "not_a_parameter",
        ]
    ),
    WEIRD,
    max_size=4,
)

# Every public entry point, as (name, how to call it with fuzzed arguments).
ENTRY_POINTS: list[tuple[str, Callable[[Any, Any, Any, Any], Any]]] = [
    ("chat", lambda c, a, b, kw: c.chat.completions.create(messages=a, **kw)),
    ("chat stream", lambda c, a, b, kw: c.chat.completions.create(messages=a, stream=True, **kw)),
    ("search", lambda c, a, b, kw: c.web_search.search(search_query=a, n_results=b)),
    (
        "search kw",
        lambda c, a, b, kw: c.web_search.search(search_query="q", max_response_time=a, n_miners=b),
    ),
    ("research submit", lambda c, a, b, kw: c.deep_research.submit(a, seed=b)),
    ("research get", lambda c, a, b, kw: c.deep_research.get(a)),
    ("sessions", lambda c, a, b, kw: c.chats.list_sessions(a)),
    ("completions", lambda c, a, b, kw: c.chats.list_completions(a)),
    ("completion", lambda c, a, b, kw: c.chats.get_completion(a)),
    ("update", lambda c, a, b, kw: c.chats.update(a, b)),
    ("delete", lambda c, a, b, kw: c.chats.delete(a)),
    ("create", lambda c, a, b, kw: c.chats.create(a, title=b)),
    ("create completion", lambda c, a, b, kw: c.chats.create_completion(a, b)),
    ("delete completions", lambda c, a, b, kw: c.chats.delete_completions(a)),
    ("chat search", lambda c, a, b, kw: c.chats.search(a)),
    ("update completion", lambda c, a, b, kw: c.chats.update_completion(a, completion_metadata=b)),
    ("with_options", lambda c, a, b, kw: c.with_options(timeout=a, max_retries=b)),
    ("create with a key", lambda c, a, b, kw: c.chats.create("hi", idempotency_key=a)),
    ("delete with a key", lambda c, a, b, kw: c.chats.delete("none", idempotency_key=b)),
]


def consume(result: Any) -> None:
    if isinstance(result, mc.ChatCompletionStream):
        result.until_done()


def unknown_keyword(error: TypeError, kw: dict[str, Any]) -> bool:
    """Python's own refusal of a keyword a method does not have (methods are plain defs)."""
    return "not_a_parameter" in kw and "unexpected keyword argument 'not_a_parameter'" in str(error)


@pytest.fixture(scope="module")
def fuzz_client(echo_target: str, api_key: str) -> Any:
    with mc.ApexClient(api_key=api_key, base_url=echo_target, secure=False, timeout=5) as client:
        yield client


@pytest.mark.parametrize(("name", "call"), ENTRY_POINTS, ids=[n for n, _ in ENTRY_POINTS])
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(a=st.one_of(MESSAGES, WEIRD), b=WEIRD, kw=KWARGS)
def test_sync_entry_points_raise_only_apex_errors(
    fuzz_client: mc.ApexClient, name: str, call: Any, a: Any, b: Any, kw: dict[str, Any]
) -> None:
    try:
        consume(call(fuzz_client, a, b, kw))
    except mc.ApexError:
        pass
    except TypeError as error:
        if not unknown_keyword(error, kw):
            raise


@settings(max_examples=60, deadline=None)
@given(a=MESSAGES, b=WEIRD, kw=KWARGS, index=st.integers(0, len(ENTRY_POINTS) - 1))
def test_async_entry_points_raise_only_apex_errors(
    echo_target: str, api_key: str, a: Any, b: Any, kw: dict[str, Any], index: int
) -> None:
    _, call = ENTRY_POINTS[index]

    async def run() -> None:
        async with mc.AsyncApexClient(
            api_key=api_key, base_url=echo_target, secure=False, timeout=5
        ) as client:
            try:
                result = call(client, a, b, kw)
                if asyncio.iscoroutine(result):
                    result = await result
                if isinstance(result, mc.AsyncChatCompletionStream):
                    await result.until_done()
            except mc.ApexError:
                pass
            except TypeError as error:
                if not unknown_keyword(error, kw):
                    raise

    asyncio.run(run())


@pytest.mark.parametrize(
    "make",
    [
        lambda: mc.ApexClient(api_key=object()),  # type: ignore[arg-type]
        lambda: mc.ApexClient(api_key="k", base_url=12),  # type: ignore[arg-type]
        lambda: mc.ApexClient(api_key="k\nx-evil: 1"),
        lambda: mc.ApexClient(api_key="k\u00e9y"),
        lambda: mc.ApexClient(api_key="two words"),
        lambda: mc.ApexClient(api_key="k\x00"),
        lambda: mc.ApexClient(
            api_key="k", base_url="h:1", secure=False, keepalive=None, max_message_bytes=0.5
        ),  # type: ignore[arg-type]
        lambda: mc.AsyncApexClient(
            api_key="k", base_url="127.0.0.1:1", secure=False, channel_options=5
        ),  # type: ignore[arg-type]
    ],
)
def test_constructor_rejects_garbage_with_our_errors(make: Any) -> None:
    with pytest.raises(mc.ApexError):
        make()


# Oversized messages


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def test_request_larger_than_the_client_allows(echo_target: str, api_key: str) -> None:
    with mc.ApexClient(
        api_key=api_key, base_url=echo_target, secure=False, max_message_bytes=1 << 20
    ) as client:
        with pytest.raises(mc.MessageTooLargeError) as caught:
            client.chat.completions.create(messages=user("x" * (2 << 20)))
        assert caught.value.code.name == "RESOURCE_EXHAUSTED"
        assert not isinstance(caught.value, mc.RateLimitError)
        assert client.chat.completions.create(messages=user("small")).choices


def test_response_larger_than_the_client_allows(echo_target: str, api_key: str) -> None:
    big = (("x-echo-chunks", "1"), ("x-echo-chunk-size", str(2 << 20)))
    with mc.ApexClient(
        api_key=api_key, base_url=echo_target, secure=False, max_message_bytes=1 << 20
    ) as client:
        with pytest.raises(mc.MessageTooLargeError):
            client.chat.completions.create(messages=user("grow"), metadata=big)
        with pytest.raises(mc.MessageTooLargeError):
            client.chat.completions.create(
                messages=user("grow"), metadata=big, stream=True
            ).until_done()
        assert client.chat.completions.create(messages=user("small")).choices


async def test_request_larger_than_the_server_allows(echo_target: str, api_key: str) -> None:
    async with mc.AsyncApexClient(api_key=api_key, base_url=echo_target, secure=False) as client:
        with pytest.raises(mc.MessageTooLargeError) as caught:
            await client.chat.completions.create(messages=user("y" * (17 << 20)))
        assert caught.value.attempts == 1  # never retried: it would fail the same way
        # The server shrugs it off and keeps serving.
        response = await client.chat.completions.create(messages=user("still alive"))
        assert response.choices[0].message.content.startswith("still alive")
