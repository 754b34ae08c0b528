"""Fixtures for the CLI tests: run ``apex-grpc`` as a subprocess, and servers to run it against.

`cli` runs the command line against the session's echo server. `served`
starts ``apex-grpc serve`` as a subprocess (its own process: a server that
misbehaves cannot take the test process down, and its stderr carries the
server's one log line per call, with the status the server saw).
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from ._helpers import CLI, ROOT, Result, client_env, run


@pytest.fixture
def cli_env(echo_target: str, api_key: str) -> dict[str, str]:
    """Environment for the session's echo server."""
    return client_env(echo_target, api_key)


@pytest.fixture
def cli(cli_env: dict[str, str]) -> Callable[..., Result]:
    """``cli("chat", "hi", input=..., env=...)`` runs ``apex-grpc chat hi``."""

    def call(*args: str, input: str | None = "", env: Mapping[str, str] | None = None) -> Result:
        return run([*CLI, *args], cli_env if env is None else env, input=input)

    return call


@dataclass
class Served:
    """An ``apex-grpc serve`` subprocess."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def target(self) -> str:
        """``127.0.0.1:PORT``."""
        return f"127.0.0.1:{self.port}"

    def log(self) -> str:
        """The server's log so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_for_log(self, text: str, timeout: float = 10) -> str:
        """Wait until `text` shows up in the log; returns the log."""
        deadline = time.monotonic() + timeout
        while True:
            log = self.log()
            if text in log:
                return log
            status = self.process.poll()
            if status is not None or time.monotonic() > deadline:
                state = "running" if status is None else f"exited with status {status}"
                raise AssertionError(f"{text!r} not in the log of the server ({state}):\n{log}")
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        """Signal the server and wait for it; returns its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@pytest.fixture
def served(tmp_path: Path, api_key: str) -> Iterator[Callable[..., Served]]:
    """Start ``apex-grpc serve --engine echo ... EXTRA_FLAGS``; all are stopped at teardown."""
    servers: list[Served] = []

    def start(*flags: str, data_dir: Path | None = None) -> Served:
        number = len(servers)
        port_file = tmp_path / f"port-{number}"
        log_path = tmp_path / f"server-{number}.log"
        command = [
            *CLI,
            "serve",
            "--engine=echo",
            "--port=0",
            f"--port-file={port_file}",
            f"--api-key={api_key}",
            f"--data-dir={data_dir or tmp_path / f'data-{number}'}",
            "--grace-period=0.5",
            "--drain-delay=0",
            "--log-level=INFO",
            *flags,
        ]
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=ROOT
            )
        deadline = time.monotonic() + 30
        while not port_file.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise AssertionError(f"the server did not start:\n{log_path.read_text()}")
            time.sleep(0.05)
        server = Served(process, int(port_file.read_text()), log_path)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
