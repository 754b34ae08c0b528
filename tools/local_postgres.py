"""A throwaway PostgreSQL server for tests, examples and benchmarks.

``LocalPostgres`` runs ``initdb`` into a fresh directory under /tmp and
``pg_ctl start`` on a free 127.0.0.1 port (its unix socket in the same
directory), trust auth on loopback only; ``stop()`` shuts it down fast and
removes the directory::

    with LocalPostgres() as pg:
        url = pg.create_database("apex_test")   # postgresql://postgres@127.0.0.1:PORT/apex_test

As root (as CI runs) the server runs as the ``postgres`` user: PostgreSQL
refuses to run as root. The binaries are ``initdb``/``pg_ctl`` on PATH, else
the newest /usr/lib/postgresql/*/bin (Debian's layout).

It does not outlive its owner: a small watcher process (this file run with
``--watch``) holds the read end of a pipe whose write end only the owner holds.
When the owner ends without ``stop()`` (a crash, SIGKILL, a segfault in a test
run), the kernel closes the write end, the watcher reads end-of-file, stops
PostgreSQL (``pg_ctl stop -m immediate``) and removes the directory.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from types import TracebackType

INSTALL_HINT = "apt-get install postgresql"
"""How to get the binaries on Debian/Ubuntu (postgresql-15 on bookworm)."""

SUPERUSER = "postgres"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_STOPPED = b"stopped"
"""What the owner writes to its watcher once it stopped PostgreSQL itself."""


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL binaries are not installed, or the server did not start."""


def find_bin_dir() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl``, or None when PostgreSQL is absent."""
    initdb = shutil.which("initdb")
    if initdb is not None and shutil.which("pg_ctl") is not None:
        return Path(initdb).resolve().parent
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else 0,
    )
    for bin_dir in reversed(candidates):
        if (bin_dir / "initdb").exists() and (bin_dir / "pg_ctl").exists():
            return bin_dir
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalPostgres:
    """A private PostgreSQL cluster on 127.0.0.1, started on construction.

    ``durable=False`` (tests) turns fsync off; the default keeps every commit on disk.
    """

    def __init__(self, bin_dir: Path | None = None, *, durable: bool = True) -> None:
        found = bin_dir or find_bin_dir()
        if found is None:
            raise PostgresUnavailable(
                f"PostgreSQL is not installed (initdb/pg_ctl not found): {INSTALL_HINT}"
            )
        self.bin_dir = found
        # durable=False turns fsync off: commits still wait for the WAL write
        # (synchronous_commit stays on) but not for the disk, which makes tests
        # that create a database each several times faster. Benchmarks keep it on.
        self.durable = durable
        self.directory = Path(tempfile.mkdtemp(prefix="apex-grpc-pg-"))
        self.port = _free_port()
        self._as_user = os.geteuid() == 0
        if self._as_user:
            # The postgres user must be able to enter the directory and own its data.
            shutil.chown(self.directory, SUPERUSER, SUPERUSER)
        self.data = self.directory / "data"
        self._started = False
        self._watcher: subprocess.Popen[bytes] | None = None
        try:
            self._watcher = self._watch()
            self._start()
        except BaseException:
            self.stop()
            raise

    @property
    def url(self) -> str:
        """The URL of the ``postgres`` database (the superuser, no password)."""
        return self.database_url(SUPERUSER)

    def database_url(self, name: str) -> str:
        """The URL of database ``name`` on this server."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{name}"

    def create_database(self, name: str) -> str:
        """Create database ``name`` (a plain identifier) and return its URL."""
        if not _NAME.fullmatch(name):
            raise ValueError(f"database name: expected a plain identifier, got {name!r}")
        self._run(
            "psql", "-q", "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER,
            "-d", SUPERUSER, "-v", "ON_ERROR_STOP=1", "-c", f'CREATE DATABASE "{name}"',
        )  # fmt: skip
        return self.database_url(name)

    def stop(self) -> None:
        """Fast shutdown (disconnects clients) and remove the directory; idempotent."""
        if self._started:
            self._started = False
            subprocess.run(
                self._command("pg_ctl", "stop", "-D", str(self.data), "-m", "fast", "-w"),
                check=False,
                capture_output=True,
            )
        shutil.rmtree(self.directory, ignore_errors=True)
        watcher, self._watcher = self._watcher, None
        if watcher is not None and watcher.stdin is not None:
            try:
                watcher.stdin.write(_STOPPED)
                watcher.stdin.close()
            except OSError:  # the watcher is gone: nothing left for it to do anyway
                pass
            watcher.wait()

    def __enter__(self) -> LocalPostgres:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _start(self) -> None:
        self._run(
            "initdb", "-D", str(self.data), "-U", SUPERUSER, "--auth=trust",
            "--encoding=UTF8", "--locale=C", "--no-sync",
        )  # fmt: skip
        self.start_server()

    def start_server(self) -> None:
        """Start the server (again, after `stop_server`) on the same port and data."""
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port}"
            f" -c unix_socket_directories={self.directory}"
            " -c max_connections=200 -c synchronous_commit=on"
            f" -c fsync={'on' if self.durable else 'off'}"
        )
        self._run(
            "pg_ctl", "start", "-D", str(self.data), "-w", "-t", "60",
            "-l", str(self.directory / "log"), "-o", options,
        )  # fmt: skip
        self._started = True

    @property
    def running(self) -> bool:
        """Whether the server is up (started, and not stopped with `stop_server` or `stop`)."""
        return self._started

    def stop_server(self) -> None:
        """Shut the server down fast (every session ended), keeping its data for `start_server`."""
        self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "fast", "-w")
        self._started = False

    def restart(self) -> None:
        """``pg_ctl restart -m fast``: every session is ended, as an operator's restart does."""
        self._run(
            "pg_ctl", "restart", "-D", str(self.data), "-m", "fast", "-w", "-t", "60",
            "-l", str(self.directory / "log"),
        )  # fmt: skip

    def _watch(self) -> subprocess.Popen[bytes]:
        """Start the watcher that stops PostgreSQL and removes the directory if this process
        ends without `stop()`. In a session of its own: a Ctrl-C or a kill of the owner's
        process group does not end it before it has cleaned up."""
        stop = self._command("pg_ctl", "stop", "-D", str(self.data), "-m", "immediate", "-w")
        return subprocess.Popen(
            [
                sys.executable,
                os.path.abspath(__file__),
                "--watch",
                str(self.directory),
                "--",
                *stop,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def _command(self, program: str, *args: str) -> list[str]:
        command = [str(self.bin_dir / program), *args]
        return ["runuser", "-u", SUPERUSER, "--", *command] if self._as_user else command

    def _run(self, program: str, *args: str) -> None:
        result = subprocess.run(
            self._command(program, *args), capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            log = self.directory / "log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise PostgresUnavailable(
                f"{program} failed ({result.returncode}): {result.stderr.strip()}\n{tail}"
            )


def _watcher_main(directory: str, stop: list[str]) -> None:
    """Wait for the owner's pipe to end; unless the owner wrote that it stopped PostgreSQL
    itself, stop it at once and remove `directory`."""
    if sys.stdin.buffer.read() == _STOPPED:
        return
    subprocess.run(stop, check=False, capture_output=True)
    shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) < 4 or sys.argv[1] != "--watch" or sys.argv[3] != "--":
        sys.exit("usage: local_postgres.py --watch DIRECTORY -- STOP-COMMAND...")
    _watcher_main(sys.argv[2], sys.argv[4:])
