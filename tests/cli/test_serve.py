"""``apex-grpc serve`` and ``apex-grpc index`` under the same command, as subprocesses."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

from ._helpers import CLI, Result, client_env, run
from .conftest import Served


def test_serve_answers_and_stops_on_ctrl_c(served: Callable[..., Served], api_key: str) -> None:
    server = served("--no-default-corpus")
    result = run([*CLI, "chat", "--no-stream", "ping"], client_env(server.target, api_key))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("pingping")
    assert server.stop(signal.SIGINT) == 0
    log = server.log()
    assert f"serving apex.v1.ApexService on {server.target}" in log
    assert "/apex.v1.ApexService/ChatCompletion OK" in log
    assert "server stopped" in log


def test_index_then_serve_then_search(
    served: Callable[..., Served], api_key: str, tmp_path: Path
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "zebras.md").write_text(
        "# Quagga facts\n\nThe quagga was a plains zebra with stripes only in front.\n"
    )
    data = tmp_path / "data"
    indexed = run([*CLI, "index", "--data-dir", str(data), str(docs)], client_env("", None))
    assert indexed.returncode == 0, indexed.stderr
    assert indexed.stdout.startswith("indexed 1 documents")
    server = served("--no-default-corpus", data_dir=data)
    found = run([*CLI, "search", "quagga", "-n", "1"], client_env(server.target, api_key))
    assert found.returncode == 0, found.stderr
    assert found.stdout.splitlines()[0] == "1. Quagga facts"


def test_serve_help_and_errors_come_from_the_server(cli: Callable[..., Result]) -> None:
    helped = cli("serve", "--help")
    assert helped.returncode == 0
    assert helped.stdout.startswith("usage: apex-grpc serve")
    assert "--port-file" in helped.stdout
    bad = cli("serve", "--engine", "nope")
    assert bad.returncode == 2
    assert "invalid choice: 'nope'" in bad.stderr
    missing = cli("index")
    assert missing.returncode == 2 and missing.stderr.startswith("usage: apex-grpc index")
