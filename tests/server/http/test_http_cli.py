"""`apex-grpc serve --http-port`: its flags, its environment variable, SIGTERM over HTTP."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
from _http_calls import END_STREAM, envelope, envelopes

KEY = "http-cli-key"
SERVE = (sys.executable, "-m", "apex_grpc.cli", "serve")


def test_serve_help_shows_the_http_flags() -> None:
    shown = subprocess.run([*SERVE, "--help"], capture_output=True, text=True, check=True).stdout
    assert "--http-port N" in shown
    assert "--cors-origin ORIGIN" in shown


def test_the_env_port_serves_http_and_sigterm_drains_a_stream_in_flight(tmp_path: Path) -> None:
    command = [
        *SERVE,
        "--engine",
        "echo",
        "--port",
        "0",
        "--api-key",
        KEY,
        "--data-dir",
        str(tmp_path / "data"),
        "--no-default-corpus",
        "--drain-delay",
        "0",
    ]
    env = {**os.environ, "APEX_GRPC_HTTP_PORT": "0"}
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout is not None
        base = ""
        for line in proc.stdout:
            if "over HTTP" in line:
                base = line.rsplit(" ", 1)[-1].strip()
                break
        assert base.startswith("http://127.0.0.1:"), "no HTTP line in the ready output"
        headers = {
            "authorization": f"Bearer {KEY}",
            "content-type": "application/connect+json",
            "x-echo-chunks": "6",
            "x-echo-delay-ms": "150",
        }
        body = envelope(json.dumps({"messages": [{"role": "user", "content": "drain"}]}).encode())
        received = b""
        with (
            httpx.Client(base_url=base, timeout=30) as client,
            client.stream(
                "POST", "/apex.v1.ApexService/ChatCompletionStream", content=body, headers=headers
            ) as response,
        ):
            for piece in response.iter_raw():
                if not received:  # the first chunk is here: stop the server under the stream
                    threading.Timer(0.05, proc.send_signal, (signal.SIGTERM,)).start()
                received += piece
        frames = envelopes(received)
        assert [flags for flags, _ in frames] == [0] * 6 + [END_STREAM]
        assert "error" not in json.loads(frames[-1][1])
        _, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    # The HTTP call went through the same plumbing as a gRPC call: the same log line.
    assert "/apex.v1.ApexService/ChatCompletionStream OK" in stderr
    assert "server stopped" in stderr


def test_without_http_port_the_server_loads_no_http_library(tmp_path: Path) -> None:
    script = f"""
import sys
from apex_grpc_server import ServerConfig, run_server
config = ServerConfig(port=0, engine="echo", api_keys=frozenset({{"k"}}),
                      data_dir={str(tmp_path)!r}, default_corpus=False)
with run_server(config) as server:
    assert server.http_port is None
print(sorted(m for m in sys.modules if m.split(".")[0] in ("connectrpc", "hypercorn", "h2", "h11")))
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"


def test_a_busy_http_port_is_a_named_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [*SERVE, "--engine", "echo", "--port", "0", "--http-port", str(port),
             "--api-key", KEY, "--data-dir", str(tmp_path / "data")],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert result.returncode == 1
    assert f"cannot serve HTTP on 127.0.0.1:{port}: Address already in use" in result.stderr
    assert not (tmp_path / "data").exists()  # bound before anything touched the disk
