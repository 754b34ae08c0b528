"""The benchmark's server: the local Apex server with the echo engine, in its own process.

A separate process keeps the server's CPU work off the client's GIL, so the
client side measures only client overhead plus the wire.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

BENCH_KEY = "bench-key"

_LAUNCHER = """
import pathlib, sys, tempfile
from apex_grpc_server import ServerConfig, run_server
config = ServerConfig(
    host="127.0.0.1", port=0, engine=sys.argv[1], api_keys=frozenset({sys.argv[2]}),
    data_dir=pathlib.Path(tempfile.mkdtemp(prefix="apex-bench-")),
    echo_chunks=int(sys.argv[3]), echo_chunk_size=int(sys.argv[4]),
)
with run_server(config) as server:
    print(server.port, flush=True)
    sys.stdin.read()  # until the parent closes our stdin
"""


@contextmanager
def echo_server(chunks: int, chunk_size: int, engine: str = "echo") -> Iterator[str]:
    """Start a server process; yields its target; stops it on exit."""
    process = subprocess.Popen(
        [sys.executable, "-c", _LAUNCHER, engine, BENCH_KEY, str(chunks), str(chunk_size)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.strip().isdigit():
            raise RuntimeError(f"benchmark server did not start (got {line!r})")
        yield f"127.0.0.1:{int(line)}"
    finally:
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
