"""The benchmark's server: the local Apex server with the echo engine, in its own process.

A separate process keeps the server's CPU work off the client's GIL, so the
client side measures only client overhead plus the wire.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ._common import BENCH_KEY

ROOT = Path(__file__).resolve().parent.parent

_LAUNCHER = """
import pathlib, sys, tempfile
from apex_grpc_server import ServerConfig, run_server
config = ServerConfig(
    host="127.0.0.1", port=0, engine=sys.argv[1], api_keys=frozenset({sys.argv[2]}),
    data_dir=pathlib.Path(tempfile.mkdtemp(prefix="apex-bench-")),
    echo_chunks=int(sys.argv[3]), echo_chunk_size=int(sys.argv[4]),
    tls_cert=sys.argv[5] or None, tls_key=sys.argv[6] or None, drain_delay_s=0.0,
    database_url=sys.argv[7] or None,
)
with run_server(config) as server:
    print(server.port, flush=True)
    sys.stdin.read()  # until the parent closes our stdin
"""


@contextmanager
def echo_server(
    chunks: int,
    chunk_size: int,
    engine: str = "echo",
    tls: tuple[str, str] | None = None,
    database_url: str | None = None,
) -> Iterator[str]:
    """Start a server process; yields its target; stops it on exit.

    `tls` is (certificate chain PEM path, private key PEM path) to serve TLS;
    `database_url` stores chats in that database (None: SQLite in a fresh data dir).
    """
    cert, key = tls or ("", "")
    argv = [
        "-c", _LAUNCHER, engine, BENCH_KEY, str(chunks), str(chunk_size), cert, key,
        database_url or "",
    ]  # fmt: skip
    with server_process(argv) as (_, port):
        yield f"127.0.0.1:{port}"


@contextmanager
def server_process(argv: list[str]) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """Run `python argv...`, which prints its port first; yields (process, port).

    The process stops when its stdin closes; it is killed if it has not
    stopped 10 s later.
    """
    process = subprocess.Popen(
        [sys.executable, *argv],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.strip().isdigit():
            raise RuntimeError(f"benchmark server did not start (got {line!r})")
        yield process, int(line)
    finally:
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
