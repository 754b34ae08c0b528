"""Deep-research jobs in PostgreSQL: status, leases, result chunks, the answer's completion.

A fleet's replicas all run a job runner; a job is run by exactly one of
them at a time. ``claim`` takes pending jobs and running jobs whose lease
ran out with SELECT ... FOR UPDATE SKIP LOCKED (two runners never wait on,
or take, the same row), gives each a fresh lease token and removes the
chunks of an earlier run in the same transaction. Every later write of the
run locks the job row and checks the token still holds an unexpired lease.
Lease times come from the database's clock, so replicas' clocks need not agree.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from apex_grpc_server._store import sql
from apex_grpc_server._store.idempotency_keys import KeyRecord
from apex_grpc_server._store.interface import Check
from apex_grpc_server._store.postgres.chats import (
    insert_chat,
    insert_completion,
    lock_chat_of,
    run_check,
    select_completion,
)
from apex_grpc_server._store.postgres.idempotency_keys import remember
from apex_grpc_server._store.postgres.pool import Cursor, Database
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

DB_NOW_US = "(extract(epoch FROM clock_timestamp()) * 1000000)::bigint"
"""Now on the database's clock, in microseconds (the clock every lease is measured by)."""


class PostgresJobs:
    """The ``jobs`` and ``job_chunks`` tables."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(
        self,
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
        async with self.db.transaction() as cur:
            chat = await insert_chat(cur, user_id, title, "apex", stamp)
            completion = await insert_completion(
                cur,
                user_id,
                chat.id,
                NewCompletion(prompt, "", "deep_research", metadata, completed=False),
                stamp,
            )
            await cur.execute(
                sql.INSERT_JOB, (job_id, user_id, stamp, stamp, request, completion.id)
            )
            job = JobRow(job_id, "pending", stamp, stamp, None, completion.id)
            await run_check(cur, user_id, completion, check, new_chat=True)
            await remember(cur, user_id, key, job)
        return job, completion

    async def get(self, user_id: str, job_id: str) -> JobRow | None:
        """One of the user's jobs with its result chunks."""
        async with self.db.transaction() as cur:
            await cur.execute(sql.SELECT_JOB, (job_id, user_id))
            row = await cur.fetchone()
            if row is None:
                return None
            await cur.execute(sql.SELECT_CHUNKS, (job_id,))
            chunks = tuple((seq, chunk) for seq, chunk in await cur.fetchall())
        job_id, status, created_us, updated_us, error, completion_id = row
        return JobRow(job_id, status, created_us, updated_us, error, completion_id, chunks)

    async def claim(self, owner: str, lease_s: float, limit: int) -> list[ClaimedJob]:
        """Take up to ``limit`` pending or lease-expired jobs, oldest first (see JobStore)."""
        claimed: list[ClaimedJob] = []
        async with self.db.transaction() as cur:
            await cur.execute(
                "SELECT id, user_id, request FROM jobs WHERE status = 'pending'"
                f" OR (status = 'running' AND coalesce(lease_expires_us, 0) <= {DB_NOW_US})"
                " ORDER BY created_us, id LIMIT %s FOR UPDATE SKIP LOCKED",
                (limit,),
            )
            for job_id, user_id, request in await cur.fetchall():
                token = f"{owner}/{uuid.uuid4()}"
                await cur.execute(sql.DELETE_CHUNKS, (job_id,))
                await cur.execute(
                    "UPDATE jobs SET lease_owner = %s,"
                    f" lease_expires_us = {DB_NOW_US} + %s WHERE id = %s",
                    (token, round(lease_s * 1e6), job_id),
                )
                await update_job(cur, job_id, "running", None, None, None)
                claimed.append(ClaimedJob(job_id, user_id, bytes(request), token))
        return claimed

    async def renew(self, job_id: str, token: str, lease_s: float) -> bool:
        """Extend the lease from now; False if ``token`` no longer holds it."""
        async with self.db.transaction() as cur:
            await cur.execute(
                f"UPDATE jobs SET lease_expires_us = {DB_NOW_US} + %s"
                " WHERE id = %s AND lease_owner = %s AND status = 'running'"
                f" AND lease_expires_us > {DB_NOW_US}",
                (round(lease_s * 1e6), job_id, token),
            )
            return bool(await cur.affected())

    async def add_chunk(self, job_id: str, token: str, seq_id: int, chunk: str) -> bool:
        """Append one result chunk while ``token`` holds the lease."""
        async with self.db.transaction() as cur:
            if not await holds(cur, job_id, token):
                return False
            await cur.execute(sql.INSERT_CHUNK, (job_id, seq_id, chunk))
            await cur.execute(sql.TOUCH_JOB, (now_us(), job_id))
        return True

    async def finish(
        self,
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
        async with self.db.transaction() as cur:
            if not await holds(cur, job_id, token):
                return False
            answer = await answer_of(cur, job_id) if check is not None else None
            if answer is not None:  # before update_job locks the completion (see lock_chat_of)
                await lock_chat_of(cur, *answer)
            await update_job(cur, job_id, status, error, text, details)
            if status in FINAL_STATUSES:
                await cur.execute(sql.END_LEASE, (job_id,))
            if answer is not None:
                written = await select_completion(cur, *answer)
                if written is not None:  # None: its chat was deleted meanwhile
                    await run_check(cur, answer[0], written, check)
        return True

    async def release(self, tokens: list[str]) -> int:
        """End these leases now; returns how many were still held."""
        async with self.db.transaction() as cur:
            await cur.execute(
                f"UPDATE jobs SET lease_expires_us = {DB_NOW_US} WHERE lease_owner = ANY(%s)"
                f" AND status = 'running' AND lease_expires_us > {DB_NOW_US}",
                (tokens,),
            )
            return await cur.affected()


async def holds(cur: Cursor, job_id: str, token: str) -> bool:
    """Whether ``token`` holds the job's lease; locks the job row until the transaction ends."""
    await cur.execute(
        "SELECT 1 FROM jobs WHERE id = %s AND lease_owner = %s AND status = 'running'"
        f" AND lease_expires_us > {DB_NOW_US} FOR UPDATE",
        (job_id, token),
    )
    return await cur.fetchone() is not None


async def answer_of(cur: Cursor, job_id: str) -> tuple[str, str]:
    """The user and the completion that hold a job's answer."""
    await cur.execute(sql.SELECT_JOB_OWNER, (job_id,))
    owner = await cur.fetchone()
    assert owner is not None  # the job row is locked by holds()
    return owner[0], owner[1]


async def update_job(
    cur: Cursor,
    job_id: str,
    status: str,
    error: str | None,
    text: str | None,
    details: dict[str, Any] | None,
) -> None:
    """Set a job's status and mirror it into its completion (see ``JobStore.finish``)."""
    stamp = now_us()
    await cur.execute(sql.SET_JOB_STATUS, (status, error, stamp, job_id))
    await cur.execute(sql.SELECT_JOB_COMPLETION + " FOR UPDATE OF c", (job_id,))
    row = await cur.fetchone()
    if row is None:  # the chat was deleted meanwhile
        return
    metadata = job_metadata(json.loads(row[1]), status, details)
    await cur.execute(
        sql.MIRROR_JOB, sql.mirror_params(row[0], metadata, status, text, error, stamp)
    )
