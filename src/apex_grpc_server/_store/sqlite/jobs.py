"""Deep-research jobs in SQLite: status, leases, result chunks, and the answer's completion.

The lease rules are PostgreSQL's (``_store.postgres._jobs``); here a claim is
one IMMEDIATE transaction, which holds SQLite's single write lock.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from typing import Any

from apex_grpc_server._store import sql
from apex_grpc_server._store.idempotency_keys import KeyRecord
from apex_grpc_server._store.interface import Check
from apex_grpc_server._store.rows import (
    DEEP_RESEARCH_KEY,
    FINAL_STATUSES,
    ClaimedJob,
    CompletionRow,
    JobRow,
    NewCompletion,
    job_metadata,
    now_us,
)
from apex_grpc_server._store.sql import qmark
from apex_grpc_server._store.sqlite.chats import (
    insert_chat,
    insert_completion,
    run_check,
    select_completion,
)
from apex_grpc_server._store.sqlite.connection import SqliteWorker, on_worker, transaction
from apex_grpc_server._store.sqlite.idempotency_keys import remember


class SqliteJobs:
    """The ``jobs`` and ``job_chunks`` tables."""

    def __init__(self, worker: SqliteWorker) -> None:
        self.worker = worker

    @on_worker
    def create(
        self,
        conn: sqlite3.Connection,
        user_id: str,
        request: bytes,
        prompt: str,
        title: str,
        *,
        check: Check | None = None,
        key: KeyRecord | None = None,
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
                qmark(sql.INSERT_JOB), (job_id, user_id, stamp, stamp, request, completion.id)
            )
            job = JobRow(job_id, "pending", stamp, stamp, None, completion.id)
            run_check(conn, user_id, completion, check, new_chat=True)
            remember(conn, user_id, key, job)
        return job, completion

    @on_worker
    def get(self, conn: sqlite3.Connection, user_id: str, job_id: str) -> JobRow | None:
        """One of the user's jobs with its result chunks."""
        row = conn.execute(qmark(sql.SELECT_JOB), (job_id, user_id)).fetchone()
        if row is None:
            return None
        chunks = conn.execute(qmark(sql.SELECT_CHUNKS), (job_id,)).fetchall()
        job_id, status, created_us, updated_us, error, completion_id = row
        return JobRow(job_id, status, created_us, updated_us, error, completion_id, tuple(chunks))

    @on_worker
    def claim(
        self, conn: sqlite3.Connection, owner: str, lease_s: float, limit: int
    ) -> list[ClaimedJob]:
        """Take up to ``limit`` pending or lease-expired jobs, oldest first (see JobStore)."""
        stamp = now_us()
        claimed: list[ClaimedJob] = []
        with transaction(conn):
            rows = conn.execute(
                "SELECT id, user_id, request FROM jobs WHERE status = 'pending'"
                " OR (status = 'running' AND coalesce(lease_expires_us, 0) <= ?)"
                " ORDER BY created_us, id LIMIT ?",
                (stamp, limit),
            ).fetchall()
            for job_id, user_id, request in rows:
                token = f"{owner}/{uuid.uuid4()}"
                conn.execute(qmark(sql.DELETE_CHUNKS), (job_id,))
                conn.execute(
                    "UPDATE jobs SET lease_owner = ?, lease_expires_us = ? WHERE id = ?",
                    (token, stamp + round(lease_s * 1e6), job_id),
                )
                update_job(conn, job_id, "running", None, None, None)
                claimed.append(ClaimedJob(job_id, user_id, bytes(request), token))
        return claimed

    @on_worker
    def renew(self, conn: sqlite3.Connection, job_id: str, token: str, lease_s: float) -> bool:
        """Extend the lease from now; False if ``token`` no longer holds it."""
        stamp = now_us()
        with transaction(conn):
            return bool(
                conn.execute(
                    "UPDATE jobs SET lease_expires_us = ? WHERE id = ? AND lease_owner = ?"
                    " AND status = 'running' AND lease_expires_us > ?",
                    (stamp + round(lease_s * 1e6), job_id, token, stamp),
                ).rowcount
            )

    @on_worker
    def add_chunk(
        self, conn: sqlite3.Connection, job_id: str, token: str, seq_id: int, chunk: str
    ) -> bool:
        """Append one result chunk while ``token`` holds the lease."""
        with transaction(conn):
            if not holds(conn, job_id, token):
                return False
            conn.execute(qmark(sql.INSERT_CHUNK), (job_id, seq_id, chunk))
            conn.execute(qmark(sql.TOUCH_JOB), (now_us(), job_id))
        return True

    @on_worker
    def finish(
        self,
        conn: sqlite3.Connection,
        job_id: str,
        token: str,
        status: str,
        *,
        error: str | None = None,
        text: str | None = None,
        details: dict[str, Any] | None = None,
        check: Check | None = None,
    ) -> bool:
        """Move a claimed job to ``status`` while ``token`` holds the lease (see JobStore)."""
        with transaction(conn):
            if not holds(conn, job_id, token):
                return False
            update_job(conn, job_id, status, error, text, details)
            if status in FINAL_STATUSES:
                conn.execute(qmark(sql.END_LEASE), (job_id,))
            if check is not None:
                user_id, completion_id = conn.execute(
                    qmark(sql.SELECT_JOB_OWNER), (job_id,)
                ).fetchone()
                written = select_completion(conn, user_id, completion_id)
                if written is not None:  # None: its chat was deleted meanwhile
                    run_check(conn, user_id, written, check)
        return True

    @on_worker
    def release(self, conn: sqlite3.Connection, tokens: list[str]) -> int:
        """End these leases now; returns how many were still held."""
        stamp = now_us()
        with transaction(conn):
            return sum(
                conn.execute(
                    "UPDATE jobs SET lease_expires_us = ? WHERE lease_owner = ?"
                    " AND status = 'running' AND lease_expires_us > ?",
                    (stamp, token, stamp),
                ).rowcount
                for token in tokens
            )


def holds(conn: sqlite3.Connection, job_id: str, token: str) -> bool:
    """Whether ``token`` holds the job's lease now (inside the caller's transaction)."""
    return (
        conn.execute(
            "SELECT 1 FROM jobs WHERE id = ? AND lease_owner = ? AND status = 'running'"
            " AND lease_expires_us > ?",
            (job_id, token, now_us()),
        ).fetchone()
        is not None
    )


def update_job(
    conn: sqlite3.Connection,
    job_id: str,
    status: str,
    error: str | None,
    text: str | None,
    details: dict[str, Any] | None,
) -> None:
    """Set a job's status and mirror it into its completion (see ``JobStore.finish``)."""
    stamp = now_us()
    conn.execute(qmark(sql.SET_JOB_STATUS), (status, error, stamp, job_id))
    row = conn.execute(qmark(sql.SELECT_JOB_COMPLETION), (job_id,)).fetchone()
    if row is None:  # the chat was deleted meanwhile
        return
    metadata = job_metadata(json.loads(row[1]), status, details)
    conn.execute(
        qmark(sql.MIRROR_JOB), sql.mirror_params(row[0], metadata, status, text, error, stamp)
    )
