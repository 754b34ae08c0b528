"""Replicas of `apex-grpc serve` (echo engine) as child processes, for the fleet benchmarks.

Unlike bench/_server.py's in-process launcher, these run the real command line,
so SIGTERM drains a replica as it would a deployed one, and each replica logs
one INFO line per call: the logs say which replica served which call, when.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ._common import BENCH_KEY

ROOT = Path(__file__).resolve().parent.parent
CALL_LINE = re.compile(
    r"^(?P<at>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO apex_grpc_server: "
    r"/apex\.v1\.ApexService/(?P<method>\w+) (?P<code>\w+) (?P<ms>[\d.]+)ms"
)
"""The server's per-call log line (apex_grpc_server._logging.log_call, default format)."""


@dataclass(frozen=True)
class Served:
    """One call a replica logged."""

    method: str
    code: str
    started: float
    """Wall-clock time (time.time()) the call started: its logged end minus its duration."""
    ended: float
    """Wall-clock time it ended (logged with millisecond precision)."""


class Replica:
    """One ``python -m apex_grpc_server --engine echo`` process on 127.0.0.1."""

    def __init__(self, directory: Path, flags: Sequence[str]) -> None:
        self.directory = directory
        self.flags = tuple(flags)
        self.log_path = directory / "server.log"
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def target(self) -> str:
        """host:port of the replica."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> Replica:
        """Start the process and wait until it listens (it writes its port file then)."""
        port_file = self.directory / "port"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    *(sys.executable, "-m", "apex_grpc_server", "--engine", "echo"),
                    *("--host", "127.0.0.1", "--port", "0", "--port-file", str(port_file)),
                    *("--api-key", BENCH_KEY, "--data-dir", str(self.directory)),
                    *("--no-default-corpus", "--log-level", "INFO", *self.flags),
                ],
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text().strip():
            if self.process.poll() is not None or time.monotonic() > deadline:
                log_tail = self.log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"replica did not start: {log_tail}")
            time.sleep(0.02)
        self.port = int(port_file.read_text())
        return self

    def signal(self, number: signal.Signals) -> None:
        """Send `number` (SIGTERM: drain and stop; SIGKILL: gone at once)."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, number)

    def wait(self, seconds: float) -> int | None:
        """The exit code, waiting up to `seconds` for it (None: still running)."""
        assert self.process is not None
        try:
            return self.process.wait(seconds)
        except subprocess.TimeoutExpired:
            return None

    def calls(self) -> list[Served]:
        """Every call logged so far."""
        served = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            match = CALL_LINE.match(line)
            if match:
                # logging's asctime is local time, as datetime's naive timestamp() assumes.
                ended = datetime.strptime(match["at"], "%Y-%m-%d %H:%M:%S,%f").timestamp()
                started = ended - float(match["ms"]) / 1000
                served.append(Served(match["method"], match["code"], started, ended))
        return served

    def answered(self) -> list[Served]:
        """The chat calls answered OK so far."""
        return [c for c in self.calls() if c.code == "OK" and c.method.startswith("ChatCompletion")]

    def started_between(self, since: float, until: float = float("inf")) -> int:
        """Chat calls answered OK that started between the wall-clock times `since` and `until`.

        The log has millisecond timestamps: a call within a millisecond of either
        bound may fall on the other side.
        """
        return sum(1 for call in self.answered() if since <= call.started < until)


@contextmanager
def fleet(count: int, flags: Sequence[str]) -> Iterator[list[Replica]]:
    """`count` replicas with `flags`, started at once; killed on exit."""
    with tempfile.TemporaryDirectory(prefix="apex-fleet-") as tmp:
        replicas = []
        for number in range(count):
            (Path(tmp) / str(number)).mkdir()
            replicas.append(Replica(Path(tmp) / str(number), flags))
        try:
            with ThreadPoolExecutor(count) as pool:
                list(pool.map(Replica.start, replicas))
            yield replicas
        finally:
            for replica in replicas:
                replica.signal(signal.SIGKILL)
                if replica.process is not None:
                    replica.process.wait(10)


def ipv4_target(replicas: Sequence[Replica]) -> str:
    """The gRPC target naming every replica: ``ipv4:host:port,host:port,...``."""
    return "ipv4:" + ",".join(replica.target for replica in replicas)
