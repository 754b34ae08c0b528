"""Fixtures for the server tests: a raw generated stub on the session's echo server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from _requests import chat_request

from apex_grpc_proto.apex.v1 import apex_pb2 as pb
from apex_grpc_proto.apex.v1 import apex_pb2_grpc as pb_grpc
from apex_grpc_server._store import Storage, open_store
from apex_grpc_server._store.url import parse

Metadata = tuple[tuple[str, str | bytes], ...]

try:  # the dev extra has it; the oldest-dependency venv cannot (it needs grpcio >= 1.85)
    import grpc_testing  # noqa: F401
except ImportError:
    # Those modules drive the service through grpc_testing and build messages the oldest
    # protobuf cannot: not collected there (the oldest suite runs `-m oldest` tests only).
    collect_ignore_glob = ["rpc/test_servicer*.py", "rpc/test_call_scope.py"]


STORE_BACKENDS = [pytest.param("sqlite", marks=pytest.mark.oldest), "postgresql"]
"""The SQLite runs are in the oldest-dependencies suite; PostgreSQL needs the postgres extra."""


@pytest.fixture(params=STORE_BACKENDS)
def store_url(request: pytest.FixtureRequest) -> str | None:
    """A server's ``database_url`` on each backend: None (SQLite), then a fresh PostgreSQL one."""
    return request.getfixturevalue("postgres_url") if request.param == "postgresql" else None


@pytest.fixture(params=STORE_BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    """A fresh store on each backend: SQLite in `tmp_path`, and the session's PostgreSQL."""
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    opened = await open_store(parse(url, tmp_path))
    yield opened
    await opened.close()


@pytest.fixture(scope="session")
def channel(echo_target: str) -> Iterator[grpc.Channel]:
    """A plain grpcio channel to the session's echo server."""
    with grpc.insecure_channel(echo_target) as chan:
        yield chan


@pytest.fixture(scope="session")
def stub(channel: grpc.Channel) -> pb_grpc.ApexServiceStub:
    """The generated ApexService stub on ``channel``."""
    return pb_grpc.ApexServiceStub(channel)


@pytest.fixture(scope="session")
def auth(api_key: str) -> Metadata:
    """Request metadata carrying the test API key."""
    return (("authorization", f"Bearer {api_key}"),)


@pytest.fixture(scope="session")
def chat() -> Callable[..., pb.ChatCompletionRequest]:
    """Build a request: ``chat("hi")`` or ``chat(("system", "..."), ("user", "hi"), seed=1)``."""
    return chat_request


@pytest.fixture
def connect() -> Iterator[Callable[[str], pb_grpc.ApexServiceStub]]:
    """``connect(target)``: an ApexService stub on a new channel, closed at teardown."""
    channels: list[grpc.Channel] = []

    def open_stub(target: str) -> pb_grpc.ApexServiceStub:
        chan = grpc.insecure_channel(target)
        channels.append(chan)
        return pb_grpc.ApexServiceStub(chan)

    yield open_stub
    for chan in channels:
        chan.close()


@pytest.fixture
def socketless_server(tmp_path: Path, api_key: str) -> Iterator[Callable[..., Any]]:
    """``socketless_server(**ServerConfig overrides)``: the service layer through grpc_testing.

    No sockets (tests/server/_socketless.py); echo engine, no search corpus unless
    ``default_corpus=True``, keys ``api_key`` and ``OTHER_API_KEY``. Closed at teardown.
    """
    pytest.importorskip("grpc_testing", reason="grpcio-testing is in the dev extra")
    # tests/server is on sys.path (no __init__.py here), as for its test modules.
    from _socketless import OTHER_API_KEY, SocketlessServer

    from apex_grpc_server import ServerConfig

    servers: list[SocketlessServer] = []

    def start(**overrides: Any) -> SocketlessServer:
        settings: dict[str, Any] = {
            "engine": "echo",
            "api_keys": frozenset({api_key, OTHER_API_KEY}),
            "data_dir": tmp_path / f"data-{len(servers)}",
            "default_corpus": False,
        }
        settings.update(overrides)
        server = SocketlessServer(ServerConfig(**settings), api_key)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def apex(socketless_server: Callable[..., Any]) -> Any:
    """The socketless service layer with the default settings."""
    return socketless_server()
