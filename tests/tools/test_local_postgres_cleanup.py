"""The throwaway PostgreSQL (tools/local_postgres.py) does not outlive the process that started it.

A test run that crashed (a segfault, SIGKILL) used to leave its cluster running, with
174 MB in /tmp. The cluster's watcher stops it and removes its directory once its owner
is gone; an owner that stops it itself leaves the watcher nothing to do.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tools.local_postgres import INSTALL_HINT, LocalPostgres, find_bin_dir

ROOT = Path(__file__).resolve().parents[2]
GONE_WITHIN_S = 10.0
"""An immediate stop takes well under a second; this is for a loaded machine."""

OWNER = """
import sys, time
from tools.local_postgres import LocalPostgres
pg = LocalPostgres(durable=False)
print(pg.directory, pg.port, flush=True)
time.sleep(600)
"""


@pytest.fixture(autouse=True)
def _needs_postgres() -> None:
    if find_bin_dir() is None:
        reason = f"PostgreSQL is not installed: {INSTALL_HINT}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(reason)


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def processes_using(directory: Path) -> list[str]:
    """The command lines of running processes that name `directory` (the postmaster does)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(directory) in command and "--watch" not in command:
            found.append(command)
    return found


def wait_until_gone(directory: Path, port: int) -> float:
    started = time.monotonic()
    while directory.exists() or listening(port) or processes_using(directory):
        elapsed = time.monotonic() - started
        assert elapsed < GONE_WITHIN_S, (
            f"after {elapsed:.1f} s: directory {directory.exists()}, port {listening(port)},"
            f" processes {processes_using(directory)}"
        )
        time.sleep(0.1)
    return time.monotonic() - started


def test_a_killed_owner_leaves_nothing_running_or_on_disk() -> None:
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        assert owner.stdout is not None
        where, port = owner.stdout.readline().split()
        directory = Path(where)
        assert directory.exists() and listening(int(port)) and processes_using(directory)
        owner.send_signal(signal.SIGKILL)
        owner.wait(10)
        wait_until_gone(directory, int(port))
    finally:
        owner.kill()
        owner.wait()


def test_stop_cleans_up_itself_and_ends_its_watcher() -> None:
    with LocalPostgres(durable=False) as pg:
        directory, port, watcher = pg.directory, pg.port, pg._watcher
        assert watcher is not None and watcher.poll() is None
    assert watcher.poll() == 0  # waited for, having found nothing to do
    assert not directory.exists() and not listening(port) and not processes_using(directory)
