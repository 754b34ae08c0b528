"""One server per data directory: an exclusive lock on ``server.pid`` inside it.

Two servers on one data directory would share its SQLite files unknowingly (and,
before deep-research jobs had leases, the second failed the first's running
jobs). The lock is the kernel's (flock): it is released however the holder ends,
even by SIGKILL, so a stale file never blocks a restart. The file holds the
holder's PID, for the error message.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

LOCK_FILE = "server.pid"


class DataDirectoryInUse(OSError):
    """Another running server holds the data directory."""


class DataDirectoryLock:
    """An exclusive hold on one data directory, for as long as this server runs."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the directory, or raise DataDirectoryInUse naming the PID that holds it."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise DataDirectoryInUse(
                f"the data directory {self.path.parent} is in use by another apex-grpc server "
                f"(PID {holder}); stop it, or give this one its own --data-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        """Give the directory up (idempotent)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)
