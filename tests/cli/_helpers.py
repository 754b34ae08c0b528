"""Helpers shared by the CLI tests: running commands, the environment they get."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLI = (sys.executable, "-m", "apex_grpc.cli")
_ENV_DROP = (
    "APEX_API_KEY",
    "MACROCOSMOS_API_KEY",
    "MACROCOSMOS_BASE_URL",
    "MACROCOSMOS_USE_HTTPS",
    "APEX_GRPC_ALLOW_INSECURE_KEY",
    "APEX_GRPC_LOG",
    "GRPC_TRACE",
)

Result = subprocess.CompletedProcess[str]


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def client_env(target: str, api_key: str | None) -> dict[str, str]:
    """The environment of a CLI (or example) pointed at `target`, in plaintext."""
    env = {k: v for k, v in os.environ.items() if k not in _ENV_DROP}
    env.update(MACROCOSMOS_BASE_URL=target, MACROCOSMOS_USE_HTTPS="false", PYTHONUNBUFFERED="1")
    if api_key is not None:
        env["APEX_API_KEY"] = api_key
    return env


def run(
    command: Sequence[str],
    env: Mapping[str, str],
    *,
    input: str | None = "",
    timeout: float = 60,
) -> Result:
    """Run a command to completion; stdin is `input` (empty: not a terminal, at EOF)."""
    return subprocess.run(
        list(command),
        env=dict(env),
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=ROOT,
    )
