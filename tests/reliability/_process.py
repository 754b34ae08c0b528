"""The local server as a real child process, so tests can kill it (SIGKILL) and restart it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

KEY = "reliability-key-5a6b7c"


class ServerProcess:
    """``python -m apex_grpc_server`` with the echo engine on 127.0.0.1."""

    def __init__(self, data_dir: Path, *extra: str, port: int = 0) -> None:
        self.data_dir = data_dir
        self.extra = extra
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> ServerProcess:
        port_file = self.data_dir / f"port-{time.monotonic_ns()}"
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "apex_grpc_server",
                "--engine",
                "echo",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--port-file",
                str(port_file),
                "--api-key",
                KEY,
                "--data-dir",
                str(self.data_dir),
                "--no-default-corpus",
                "--log-level",
                "WARNING",
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text().strip():
            if self.process.poll() is not None or time.monotonic() > deadline:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"server did not start: {err[-2000:]}")
            time.sleep(0.02)
        self.port = int(port_file.read_text())
        return self

    def kill(self) -> None:
        """SIGKILL: no goodbye, no graceful shutdown."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.process is not None and self.process.stderr is not None:
            self.process.stderr.close()
