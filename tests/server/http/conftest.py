"""Fixtures of the HTTP face tests: one echo server with both faces, and clients of each."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import grpc
import httpx
import pytest
from _http_calls import PAGE_ORIGIN

from apex_grpc_proto.apex.v1 import apex_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    from apex_grpc_server import RunningServer


@pytest.fixture(scope="module")
def two_faced(tmp_path_factory: pytest.TempPathFactory, api_key: str) -> Iterator[RunningServer]:
    """An echo server serving gRPC and, on another port, HTTP (test knobs on)."""
    from apex_grpc_server import ServerConfig, run_server

    config = ServerConfig(
        host="127.0.0.1",
        port=0,
        http_port=0,
        cors_origins=(PAGE_ORIGIN,),
        engine="echo",
        api_keys=frozenset({api_key}),
        data_dir=tmp_path_factory.mktemp("two-faced"),
        default_corpus=False,
        grace_period_s=1.0,
        drain_delay_s=0.0,
    )
    with run_server(config) as server:
        yield server


@pytest.fixture(scope="module")
def http(two_faced: RunningServer) -> Iterator[httpx.Client]:
    """An HTTP/1.1 client of the server's HTTP face."""
    with httpx.Client(base_url=f"http://127.0.0.1:{two_faced.http_port}", timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def grpc_stub(two_faced: RunningServer) -> Iterator[pb_grpc.ApexServiceStub]:
    """A raw gRPC stub of the same server's gRPC face."""
    with grpc.insecure_channel(two_faced.target) as channel:
        yield pb_grpc.ApexServiceStub(channel)


@pytest.fixture(scope="module")
def bearer(api_key: str) -> dict[str, str]:
    """The Authorization header of the test key."""
    return {"authorization": f"Bearer {api_key}"}
