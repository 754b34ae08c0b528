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
    """``python -m apex_grpc_server`` with the echo engine on `host` (127.0.0.1 by default)."""

    def __init__(
        self,
        data_dir: Path,
        *extra: str,
        port: int = 0,
        log_level: str = "WARNING",
        host: str = "127.0.0.1",
    ) -> None:
        self.data_dir = data_dir
        self.extra = extra
        self.host = host
        self.port = port
        self.log_level = log_level
        self.log_path = data_dir / "server.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

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
                self.host,
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
                self.log_level,
                "--drain-delay",
                "0",
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=self.log_path.open("ab"),
        )
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text().strip():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start: {self.log()[-2000:]}")
            time.sleep(0.02)
        self.port = int(port_file.read_text())
        return self

    def kill(self) -> None:
        """SIGKILL: no goodbye, no graceful shutdown."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def terminate(self) -> None:
        """SIGTERM: the server drains and stops by itself (see `apex-grpc serve --drain-delay`)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        """What the server logged so far (one line per call at ``log_level="INFO"``)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def calls_logged(self, method: str = "") -> int:
        """Calls of the Apex service (of `method`, if given) this server logged so far."""
        marker = f"apex_grpc_server: /apex.v1.ApexService/{method}"
        return sum(1 for line in self.log().splitlines() if marker in line)
