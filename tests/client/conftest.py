"""Fixtures for client tests: a scripted ApexService on loopback and clients bound to it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

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
