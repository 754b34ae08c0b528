"""Fixtures for client tests: a scripted ApexService on loopback and clients bound to it."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

import apex_grpc as mc

from ._scripted_server import ScriptedServer

KEY = "sk-test-9f8e7d6c5b4a"
FAST_RETRY = mc.RetryPolicy(initial_backoff=0.01, max_backoff=0.05)


@pytest.fixture(scope="session")
def scripted_server() -> Iterator[ScriptedServer]:
    server = ScriptedServer().start()
    yield server
    server.stop()


@pytest.fixture
def scripted(scripted_server: ScriptedServer) -> ScriptedServer:
    scripted_server.reset()
    return scripted_server


@pytest.fixture
def client(scripted: ScriptedServer) -> Iterator[mc.ApexClient]:
    with mc.ApexClient(api_key=KEY, base_url=scripted.target, secure=False, retry=FAST_RETRY) as c:
        yield c


@pytest.fixture
async def aclient(scripted: ScriptedServer) -> AsyncIterator[mc.AsyncApexClient]:
    async with mc.AsyncApexClient(
        api_key=KEY, base_url=scripted.target, secure=False, retry=FAST_RETRY
    ) as c:
        yield c


@pytest.fixture(params=["sync", "async"])
def either_client(request: pytest.FixtureRequest) -> mc.ApexClient | mc.AsyncApexClient:
    """`client`, then `aclient`: a test body written once runs against both clients.

    The test must be ``async`` and pass each client call through `settle`.
    """
    return request.getfixturevalue("client" if request.param == "sync" else "aclient")


Client = mc.ApexClient | mc.AsyncApexClient


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
