"""The demo's server, in a child process: if it dies (a native crash), the demo can say so.

``python -m apex_grpc_server`` (``apex-grpc serve``) on a free port of
127.0.0.1, its log in a file; the demo waits for the port file, and at any
time can ask whether the server is still up and, once it is not, for a
report: its exit signal or status, its last log lines, and what to do.
$APEX_GRPC_DEMO_SERVER replaces ``python -m apex_grpc_server`` (the tests'
server that crashes); the serve flags follow it.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

SERVER_ENV = "APEX_GRPC_DEMO_SERVER"
START_TIMEOUT_S = 300.0
LOG_LINES = 10


def check_command() -> str:
    """The set-up's engine check (tools/engine_check.py), as a line to run from here."""
    tool = Path(__file__).resolve().parents[2] / "tools" / "engine_check.py"
    try:
        shown = tool.relative_to(Path.cwd())
    except ValueError:
        shown = tool
    return shlex.join([sys.executable, str(shown)])


class ServerDied(RuntimeError):
    """The server process ended before it was serving; the message is the report."""


def exit_text(returncode: int) -> str:
    """``killed by SIGSEGV (signal 11)`` or ``exit status 2``."""
    if returncode >= 0:
        return f"exit status {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = "a signal"
    return f"killed by {name} (signal {-returncode})"


class ServerProcess:
    """``apex-grpc serve`` in a child process of its own session, for the demo."""

    def __init__(self, engine: str, key: str, max_new_tokens: int, data_dir: Path) -> None:
        self.engine = engine
        self.log_path = data_dir / "server.log"
        self._port_file = data_dir / "server.port"
        base = os.environ.get(SERVER_ENV)
        command = shlex.split(base) if base else [sys.executable, "-m", "apex_grpc_server"]
        command += [
            "--host", "127.0.0.1", "--port", "0", "--port-file", str(self._port_file),
            "--engine", engine, "--api-key", key, "--data-dir", str(data_dir / "data"),
            "--max-new-tokens", str(max_new_tokens),
            # The demo's own server: no load balancer to wait for, little to drain.
            "--drain-delay", "0", "--grace-period", "1",
        ]  # fmt: skip
        # Only the flags above: no database, keys or model of the user's APEX_GRPC_* settings.
        env = {k: v for k, v in os.environ.items() if not k.startswith("APEX_GRPC_")}
        with self.log_path.open("wb") as log:
            # Its own session: Ctrl-C reaches the demo, which then stops the server.
            self._process = subprocess.Popen(
                command,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.target = self._wait_until_serving()

    def _wait_until_serving(self) -> str:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._port_file.is_file() and self._port_file.read_text().strip():
                return f"127.0.0.1:{int(self._port_file.read_text())}"
            if self._process.poll() is not None:
                raise ServerDied(self.report("before it was serving"))
            time.sleep(0.05)
        self.stop()
        raise ServerDied(f"the server was not serving after {START_TIMEOUT_S:.0f} s")

    def alive(self) -> bool:
        """Whether the server process is still running."""
        return self._process.poll() is None

    def log_tail(self) -> list[str]:
        """The last lines of the server's log."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return []
        return text.rstrip().splitlines()[-LOG_LINES:]

    def report(self, when: str) -> str:
        """What happened to the server that ended, its last log lines, and what to do."""
        code = self._process.wait()
        lines = [f"The local server died {when}: {exit_text(code)}."]
        tail = self.log_tail()
        if tail:
            lines.append(f"Its last log lines ({self.log_path.name}):")
            lines += [f"    {line}" for line in tail]
        if code < 0 and self.engine == "local":
            lines.append(
                "A native crash in the local engine (llama.cpp) is the likely cause: its build"
                " may use CPU instructions or kernels that fail on this machine. Check it, and"
                f" rebuild it with conservative flags if it crashes, with: {check_command()}"
                " (run by `make venv`); or run the demo on the echo engine:"
                " python examples/demo --engine echo"
            )
        elif code < 0:
            lines.append("It crashed: run `apex-grpc serve` by hand to see more.")
        else:
            lines.append("Its log says why; run `apex-grpc serve` by hand to see more.")
        return "\n".join(lines)

    def stop(self, grace_s: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after `grace_s`; nothing is left running."""
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
