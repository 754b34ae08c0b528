"""Deep-research jobs: their status, result chunks, and the completion that holds the answer."""

from __future__ import annotations

import json
import sqlite3
import uuid
from typing import Any

from apex_grpc_server._sqlite import SqliteWorker, on_worker, transaction
from apex_grpc_server._store._chats import insert_chat, insert_completion
from apex_grpc_server._store._rows import (
    DEEP_RESEARCH_KEY,
    JOB_COLUMNS,
    CompletionRow,
    JobRow,
    NewCompletion,
    now_us,
)

FINAL_STATUSES = ("completed", "failed")


class JobTable:
    """The ``jobs`` and ``job_chunks`` tables."""

    def __init__(self, worker: SqliteWorker) -> None:
        self.worker = worker

    @on_worker
    def create(
        self, conn: sqlite3.Connection, user_id: str, request: bytes, prompt: str, title: str
    ) -> tuple[JobRow, CompletionRow]:
        """A pending job, with the chat and completion that will hold its answer."""
        stamp = now_us()
        job_id = str(uuid.uuid4())
        metadata = {DEEP_RESEARCH_KEY: {"job_id": job_id, "status": "pending"}}
        with transaction(conn):
            chat = insert_chat(conn, user_id, title, "apex", stamp)
            completion = insert_completion(
                conn,
                user_id,
                chat.id,
                NewCompletion(prompt, "", "deep_research", metadata, completed=False),
                stamp,
            )
            conn.execute(
                "INSERT INTO jobs(id, user_id, status, created_us, updated_us, request,"
                " completion_id) VALUES (?, ?, 'pending', ?, ?, ?, ?)",
                (job_id, user_id, stamp, stamp, request, completion.id),
            )
        return JobRow(job_id, "pending", stamp, stamp, None, completion.id), completion

    @on_worker
    def get(self, conn: sqlite3.Connection, user_id: str, job_id: str) -> JobRow | None:
        """One of the user's jobs with its result chunks."""
        row = conn.execute(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ? AND user_id = ?", (job_id, user_id)
        ).fetchone()
        if row is None:
            return None
        chunks = conn.execute(
            "SELECT seq_id, chunk FROM job_chunks WHERE job_id = ? ORDER BY seq_id", (job_id,)
        ).fetchall()
        job_id, status, created_us, updated_us, error, completion_id = row
        return JobRow(job_id, status, created_us, updated_us, error, completion_id, tuple(chunks))

    @on_worker
    def add_chunk(self, conn: sqlite3.Connection, job_id: str, seq_id: int, chunk: str) -> None:
        """Append one result chunk."""
        with transaction(conn):
            conn.execute(
                "INSERT INTO job_chunks(job_id, seq_id, chunk) VALUES (?, ?, ?)",
                (job_id, seq_id, chunk),
            )
            conn.execute("UPDATE jobs SET updated_us = ? WHERE id = ?", (now_us(), job_id))

    @on_worker
    def set_status(
        self,
        conn: sqlite3.Connection,
        job_id: str,
        status: str,
        *,
        error: str | None = None,
        text: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Move a job to ``status``, mirrored in its completion's metadata.

        "completed" and "failed" end the job: its completion is then complete,
        with ``text`` as the answer, ``error`` as the error message and
        ``details`` merged into its deep-research metadata.
        """
        with transaction(conn):
            update_job(conn, job_id, status, error, text, details)

    @on_worker
    def interrupt_unfinished(self, conn: sqlite3.Connection, reason: str) -> int:
        """Fail every job still "pending" or "running" (after a restart); returns how many."""
        with transaction(conn):
            ids = [
                job_id
                for (job_id,) in conn.execute(
                    "SELECT id FROM jobs WHERE status IN ('pending', 'running')"
                ).fetchall()
            ]
            for job_id in ids:
                update_job(conn, job_id, "failed", reason, None, None)
        return len(ids)


def update_job(
    conn: sqlite3.Connection,
    job_id: str,
    status: str,
    error: str | None,
    text: str | None,
    details: dict[str, Any] | None,
) -> None:
    """Set a job's status and mirror it into its completion (see ``JobTable.set_status``)."""
    stamp = now_us()
    conn.execute(
        "UPDATE jobs SET status = ?, error = ?, updated_us = ? WHERE id = ?",
        (status, error, stamp, job_id),
    )
    row = conn.execute(
        "SELECT c.id, c.metadata FROM jobs AS j JOIN completions AS c"
        " ON c.id = j.completion_id WHERE j.id = ?",
        (job_id,),
    ).fetchone()
    if row is None:  # the chat was deleted meanwhile
        return
    metadata = json.loads(row[1])
    entry = dict(metadata.get(DEEP_RESEARCH_KEY) or {})
    entry.update(details or {})
    entry["status"] = status
    metadata[DEEP_RESEARCH_KEY] = entry
    conn.execute(
        "UPDATE completions SET metadata = ?, completion_text = coalesce(?, completion_text),"
        " error_message = coalesce(?, error_message),"
        " completed_us = CASE WHEN ? THEN ? ELSE completed_us END WHERE id = ?",
        (json.dumps(metadata), text, error, status in FINAL_STATUSES, stamp, row[0]),
    )
