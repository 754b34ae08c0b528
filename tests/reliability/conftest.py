"""Fixtures for the reliability suite: servers in-process and as child processes, proxies."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import apex_grpc as mc

from ._process import ServerProcess
from ._proxy import Proxy

FAST_RETRY = mc.RetryPolicy(initial_backoff=0.02, max_backoff=0.1)
LONG = os.environ.get("APEX_GRPC_LONG_TESTS", "").lower() in ("1", "true", "yes")


@pytest.fixture
def server_process(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., ServerProcess]]:
    """Start child-process servers: ``server_process(*flags, port=0)``; stopped at teardown."""
    started: list[ServerProcess] = []

    def start(*extra: str, port: int = 0) -> ServerProcess:
        server = ServerProcess(tmp_path_factory.mktemp("proc"), *extra, port=port).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def proxy() -> Iterator[Callable[[int], Proxy]]:
    """Start proxies in front of a port: ``proxy(upstream_port)``; stopped at teardown."""
    proxies: list[Proxy] = []

    def start(upstream_port: int, **kwargs: Any) -> Proxy:
        p = Proxy(upstream_port, **kwargs).start()
        proxies.append(p)
        return p

    yield start
    for p in proxies:
        p.stop()


def sync_client(target: str, key: str, **kwargs: Any) -> mc.ApexClient:
    kwargs.setdefault("retry", FAST_RETRY)
    return mc.ApexClient(api_key=key, base_url=target, secure=False, **kwargs)


def async_client(target: str, key: str, **kwargs: Any) -> mc.AsyncApexClient:
    kwargs.setdefault("retry", FAST_RETRY)
    return mc.AsyncApexClient(api_key=key, base_url=target, secure=False, **kwargs)


DATA = Path(__file__).parent


Fleet = Callable[..., list[ServerProcess]]
"""`fleet(n, *flags)`: start n replicas."""


@pytest.fixture
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """``fleet(n, *flags)``: n replicas (echo engine, INFO logs) started at once.

    ``fleet(n, *flags, hosts=[...])``: one replica per host, all on one port (the
    first picks it), as replicas behind one DNS name with several addresses.
    """
    started: list[ServerProcess] = []

    def start(replicas: int, *flags: str, hosts: Sequence[str] = ()) -> list[ServerProcess]:
        servers = [
            ServerProcess(
                tmp_path_factory.mktemp("replica"),
                *flags,
                log_level="INFO",
                host=hosts[n] if hosts else "127.0.0.1",
            )
            for n in range(replicas)
        ]
        started.extend(servers)
        if hosts:  # the first replica picks the port the others share
            servers[0].start()
            for server in servers[1:]:
                server.port = servers[0].port
        with ThreadPoolExecutor(replicas) as pool:
            list(pool.map(ServerProcess.start, servers[1:] if hosts else servers))
        return servers

    yield start
    for server in started:
        server.kill()


def target_of(servers: list[ServerProcess]) -> str:
    """The ipv4: target naming every replica (one round_robin channel reaches them all)."""
    return "ipv4:" + ",".join(server.target for server in servers)
