"""Fixtures for client tests: the testing kit's FakeApex (fixture ``apex_fake``) and clients
bound to it, and the answers most tests script."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

import apex_grpc as mc
from apex_grpc import _methods
from apex_grpc.testing import FakeApex, RecordedCall, Reply, Stream, completion, stream

KEY = "sk-test-9f8e7d6c5b4a"
FAST_RETRY = mc.RetryPolicy(initial_backoff=0.01, max_backoff=0.05)


@pytest.fixture
def client(apex_fake: FakeApex) -> Iterator[mc.ApexClient]:
    with apex_fake.client(api_key=KEY, retry=FAST_RETRY) as c:
        yield c


@pytest.fixture
async def aclient(apex_fake: FakeApex) -> AsyncIterator[mc.AsyncApexClient]:
    async with apex_fake.async_client(api_key=KEY, retry=FAST_RETRY) as c:
        yield c


def echo(call: RecordedCall) -> mc.ChatCompletionResponse:
    """A ChatCompletion answer: the last message's content (a callable reply)."""
    messages = call.request.messages
    return completion(messages[-1].content if messages else "", id="c1")


def chunks(count: int = 5, **options: Any) -> Stream:
    """A stream of `count` chunks ``c0 ``, ``c1 ``...; `options` are `stream`'s."""
    return stream(*(f"c{i} " for i in range(count)), id="s1", **options)


def answer_every_rpc(fake: FakeApex) -> None:
    """Script all 16 RPCs: a chat echoes, a stream sends five chunks, the rest answer an empty
    response; each unary answer carries an ``x-request-id`` (``req-METHOD``)."""
    for method in _methods.ALL_METHODS:
        if method.server_streaming:
            fake.on(method.name).reply(chunks())
        else:
            fake.on(method.name).reply(_answer_to(method))


def _answer_to(method: _methods.Method[Any, Any]) -> Any:
    def answer(call: RecordedCall) -> Reply:
        message = echo(call) if method is _methods.CHAT_COMPLETION else method.response_type()
        return Reply(message, initial_metadata=(("x-request-id", f"req-{method.name}"),))

    return answer


def make(client_type: ClientType, fake: FakeApex, **options: object) -> Client:
    """A plaintext client of `client_type` to `fake`, with the key KEY."""
    return client_type(api_key=KEY, base_url=fake.target, secure=False, **options)  # type: ignore[arg-type]


@pytest.fixture(params=["sync", "async"])
def either_client(request: pytest.FixtureRequest) -> mc.ApexClient | mc.AsyncApexClient:
    """`client`, then `aclient`: a test body written once runs against both clients.

    The test must be ``async`` and pass each client call through `settle`.
    """
    return request.getfixturevalue("client" if request.param == "sync" else "aclient")


Client = mc.ApexClient | mc.AsyncApexClient
ClientType = type[mc.ApexClient] | type[mc.AsyncApexClient]


@pytest.fixture(params=["sync", "async"])
def client_type(request: pytest.FixtureRequest) -> type[mc.ApexClient] | type[mc.AsyncApexClient]:
    """ApexClient, then AsyncApexClient: for tests that build their own client."""
    return mc.ApexClient if request.param == "sync" else mc.AsyncApexClient


async def settle(value: Any) -> Any:
    """`value`, awaited when the async client returned an awaitable."""
    return await value if inspect.isawaitable(value) else value


async def next_chunk(stream: mc.ChatCompletionStream | mc.AsyncChatCompletionStream) -> Any:
    """The next chunk of a sync or an async stream."""
    if isinstance(stream, mc.AsyncChatCompletionStream):
        return await stream.__anext__()
    return next(stream)
