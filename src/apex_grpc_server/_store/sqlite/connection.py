"""One SQLite connection owned by one worker thread, used from asyncio.

A database class holds a ``worker`` and writes each operation once, as a
plain method taking the connection; ``@on_worker`` turns it into an
awaitable method that runs on the worker thread::

    class Things:
        def __init__(self, worker: SqliteWorker) -> None:
            self.worker = worker

        @on_worker
        def count(self, conn: sqlite3.Connection, kind: str) -> int: ...

    n = await things.count("apples")   # conn is supplied on the worker thread
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import sqlite3
import threading
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


def connect(path: Path) -> sqlite3.Connection:
    """Open ``path`` in WAL mode with foreign keys on and explicit transactions."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


class SqliteWorker:
    """Runs every use of one connection on one dedicated thread.

    The event loop never blocks on the database, and the connection is never
    used from two threads at once.
    """

    def __init__(self, path: Path, name: str) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    @property
    def conn(self) -> sqlite3.Connection:
        """The connection (only valid on the worker thread)."""
        if self._conn is None:
            self._conn = connect(self.path)
        return self._conn

    def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn`` on the worker thread and wait for it (for synchronous callers)."""
        return self._executor.submit(fn, *args, **kwargs).result()

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn`` on the worker thread without blocking the event loop."""
        future = self._executor.submit(fn, *args, **kwargs)
        return await asyncio.wrap_future(future)

    def close(self) -> None:
        """Finish queued work and close the connection."""
        with self._lock:
            try:
                self._executor.submit(self._close).result()
            except RuntimeError:  # already shut down
                return
            self._executor.shutdown(wait=True)

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class HasWorker(Protocol):
    """An object whose operations run on one SqliteWorker."""

    worker: SqliteWorker


Owner = TypeVar("Owner", bound=HasWorker)


def on_worker(
    body: Callable[Concatenate[Owner, sqlite3.Connection, P], T],
) -> Callable[Concatenate[Owner, P], Coroutine[Any, Any, T]]:
    """Make ``body(self, conn, ...)`` an awaitable ``method(self, ...)`` run on ``self.worker``.

    The connection is only ever touched on the worker's thread; the event
    loop waits without blocking. ``inspect.signature`` shows the method as
    callers see it (no ``conn``).
    """

    @functools.wraps(body)
    async def method(self: Owner, /, *args: P.args, **kwargs: P.kwargs) -> T:
        worker = self.worker
        return await worker.run(lambda: body(self, worker.conn, *args, **kwargs))

    signature = inspect.signature(body)
    parameters = list(signature.parameters.values())
    method.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[parameters[0], *parameters[2:]]
    )
    return method
