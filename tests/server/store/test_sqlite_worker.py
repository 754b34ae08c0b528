"""The store's operations: each written once, run on the SQLite worker thread, awaited."""

from __future__ import annotations

import inspect
import sqlite3
import threading

import pytest

from apex_grpc_server._store import NewCompletion
from apex_grpc_server._store.sqlite.connection import SqliteWorker, on_worker
from apex_grpc_server._store.sqlite.store import SqliteStore

pytestmark = pytest.mark.oldest


class Probe:
    def __init__(self, worker: SqliteWorker) -> None:
        self.worker = worker

    @on_worker
    def where(self, conn: sqlite3.Connection, tag: str, *, twice: bool = False) -> str:
        """Which thread ran me."""
        assert conn is self.worker.conn
        name = threading.current_thread().name
        return f"{tag}:{name}" * (2 if twice else 1)


async def test_on_worker_runs_the_body_on_the_worker_thread(tmp_path) -> None:
    worker = SqliteWorker(tmp_path / "probe.sqlite3", "probe-worker")
    try:
        result = await Probe(worker).where("x", twice=True)
    finally:
        worker.close()
    assert result.startswith("x:probe-worker") and result.count("x:") == 2
    # Callers see the method as they call it: no connection parameter.
    assert (
        str(inspect.signature(Probe.where))
        == "(self, tag: 'str', *, twice: 'bool' = False) -> 'str'"
    )
    assert Probe.where.__doc__ == "Which thread ran me."
    assert inspect.iscoroutinefunction(Probe.where)


async def test_store_tables_share_one_database(tmp_path) -> None:
    store = SqliteStore(tmp_path / "apex.sqlite3")
    try:
        chat, first = await store.chats.create("u1", "t", "apex", NewCompletion("p", "a", "b", {}))
        job, completion = await store.jobs.create("u1", b"req", "question", "title")
        (claim,) = await store.jobs.claim("runner", 30, 1)
        assert await store.jobs.add_chunk(job.id, claim.token, 0, "chunk")
        assert await store.jobs.finish(
            job.id, claim.token, "completed", text="answer", details={"n": 1}
        )
        assert await store.completions.get("u2", first.id) is None  # another user's row
        finished = await store.completions.get("u1", completion.id)
        assert finished is not None and finished.completion_text == "answer"
        assert finished.metadata["deep_researcher"] == {
            "job_id": job.id,
            "status": "completed",
            "n": 1,
        }
        assert [c.id for c in await store.chats.of_user("u1", "")][-1] == chat.id
        stored = await store.jobs.get("u1", job.id)
        assert stored is not None and stored.chunks == ((0, "chunk"),)
    finally:
        await store.close()
