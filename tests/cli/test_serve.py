"""``apex-grpc serve`` and ``apex-grpc index`` under the same command, as subprocesses."""

from __future__ import annotations

import os
import shlex
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
    assert indexed.stdout.startswith(f"indexed 1 document into {data / 'index.sqlite3'}:")
    server = served("--no-default-corpus", data_dir=data)
    found = run([*CLI, "search", "quagga", "-n", "1"], client_env(server.target, api_key))
    assert found.returncode == 0, found.stderr
    assert found.stdout.splitlines()[0] == "1. Quagga facts"


def test_serve_help_and_errors_come_from_the_server(cli: Callable[..., Result]) -> None:
    helped = cli("serve", "--help")
    assert helped.returncode == 0
    assert helped.stdout.startswith("usage: apex-grpc serve")
    assert "--port-file" in helped.stdout
    text = " ".join(helped.stdout.split())
    # The token cap, stated where a user looks (the SDK asks for 4096 by default).
    assert (
        "--max-new-tokens N the longest answer in tokens: requests asking for more (the SDK"
        ' asks for 4096 by default) are cut at N and end with finish_reason "length" (512)'
    ) in text
    assert "refused with RESOURCE_EXHAUSTED and a retry hint (256)" in text
    assert "--max-concurrent-streams N at most N calls at once on one client connection" in text
    bad = cli("serve", "--engine", "nope")
    assert bad.returncode == 2
    assert "invalid choice: 'nope'" in bad.stderr
    missing = cli("index")
    assert missing.returncode == 2 and missing.stderr.startswith("usage: apex-grpc index")


def exports(log: str) -> dict[str, str]:
    """The variables of the ``export NAME=value`` lines serve printed."""
    found = {}
    for line in log.splitlines():
        if line.startswith("export "):
            name, _, value = line.removeprefix("export ").partition("=")
            found[name] = shlex.split(value, comments=True)[0]
    return found


def test_serve_prints_the_exports_a_client_needs(
    served: Callable[..., Served], api_key: str
) -> None:
    server = served("--no-default-corpus")
    log = server.wait_for_log("export APEX_API_KEY=")
    assert f"# apex-grpc serve is ready on {server.target}. In another shell:" in log
    variables = exports(log)
    assert variables == {
        "MACROCOSMOS_BASE_URL": f"http://{server.target}",
        "MACROCOSMOS_USE_HTTPS": "false",
        "APEX_API_KEY": api_key,
    }
    # Exactly these, pasted into a clean environment, are all the CLI needs.
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("APEX_", "MACROCOSMOS_"))}
    result = run([*CLI, "chat", "--no-stream", "ping"], {**clean, **variables})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("pingping")


def test_serve_exports_a_placeholder_unless_one_key_was_given(
    served: Callable[..., Served],
) -> None:
    server = served("--no-default-corpus", "--api-key=second")
    variables = exports(server.wait_for_log("export APEX_API_KEY="))
    assert variables["APEX_API_KEY"] == "<one of the keys this server accepts>"
    assert "second" not in server.log()  # the keys are never printed then


def test_index_and_serve_share_the_data_folder(
    served: Callable[..., Served], api_key: str, tmp_path: Path
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "okapi.txt").write_text("The okapi is a shy relative of the giraffe.\n")
    shared = tmp_path / "shared"
    env = {**client_env("", None), "APEX_GRPC_DATA_DIR": str(shared)}
    for command in ("serve", "index"):  # both say where they keep data, and it is the same
        helped = run([*CLI, command, "--help"], env)
        unwrapped = "".join(helped.stdout.split())  # argparse may wrap inside the long path
        assert f"(default{shared}:$APEX_GRPC_DATA_DIRifset" in unwrapped
    indexed = run([*CLI, "index", str(docs)], env)
    assert indexed.returncode == 0, indexed.stderr
    assert indexed.stdout.startswith(f"indexed 1 document into {shared / 'index.sqlite3'}:")
    server = served("--no-default-corpus", data_dir=shared)
    found = run([*CLI, "search", "okapi", "-n", "1"], client_env(server.target, api_key))
    assert found.returncode == 0, found.stderr
    assert "okapi.txt" in found.stdout


def test_a_bind_failure_under_apex_grpc_serve_is_one_line(tmp_path: Path) -> None:
    # A unix socket path over 107 characters: grpc core refuses it and, unless kept off
    # the terminal, logs its own `E... add_port.cc` line first.
    socket = tmp_path / ("s" * 120 + ".sock")
    command = [*CLI, "serve", "--engine", "echo", "--api-key", "k", "--unix-socket", str(socket)]
    env = {**client_env("", None), "APEX_GRPC_DATA_DIR": str(tmp_path / "data")}
    env.pop("GRPC_VERBOSITY", None)
    quiet = run(command, env)
    assert quiet.returncode != 0
    assert quiet.stderr.count("\n") == 1 and "Failed to bind" in quiet.stderr, quiet.stderr
    loud = run([*command, "--log-level", "debug"], env)
    assert "add_port.cc" in loud.stderr  # grpc's own reason, when asked for


def test_a_second_server_on_one_data_directory_refuses_to_start(
    served: Callable[..., Served], api_key: str, tmp_path: Path
) -> None:
    data = tmp_path / "shared-data"
    first = served("--no-default-corpus", data_dir=data)
    second = run(
        [
            *CLI,
            "serve",
            "--engine",
            "echo",
            "--port",
            "0",
            "--api-key",
            api_key,
            "--data-dir",
            str(data),
            "--no-default-corpus",
        ],
        client_env("", None),
    )
    assert second.returncode == 1
    assert (
        f"the data directory {data} is in use by another apex-grpc server "
        f"(PID {first.process.pid})" in second.stderr
    ), second.stderr
    assert first.process.poll() is None  # the first one goes on serving
    # The lock dies with its holder, even a killed one: a restart is never blocked.
    first.process.kill()
    first.process.wait()
    again = served("--no-default-corpus", data_dir=data)
    assert again.process.poll() is None
