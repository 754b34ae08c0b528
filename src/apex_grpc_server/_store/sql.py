"""The SQL statements both backends run alike, written once (``%s`` placeholders).

PostgreSQL (psycopg) runs them as they are; SQLite through ``qmark``, which
swaps each ``%s`` for ``?``. What differs between the backends (search,
leases measured on the database's clock, row locks) stays in each backend.
"""

from __future__ import annotations

import json
from typing import Any

from apex_grpc_server._store.rows import (
    CHAT_COLUMNS,
    COMPLETION_COLUMNS,
    DEEP_RESEARCH_KEY,
    FINAL_STATUSES,
    JOB_COLUMNS,
    CompletionRow,
)


def qmark(sql: str) -> str:
    """``sql`` with SQLite's ``?`` placeholders instead of ``%s``."""
    return sql.replace("%s", "?")


TOUCH_CHAT = "UPDATE chats SET updated_us = %s WHERE id = %s AND user_id = %s"
TOUCH_CHAT_OF_COMPLETION = "UPDATE chats SET updated_us = %s WHERE id = %s"
SELECT_CHAT = f"SELECT {CHAT_COLUMNS} FROM chats WHERE id = %s AND user_id = %s"
INSERT_CHAT = f"INSERT INTO chats({CHAT_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s)"
SELECT_COMPLETIONS = (
    f"SELECT {COMPLETION_COLUMNS} FROM completions WHERE chat_id = %s AND user_id = %s"
    " ORDER BY created_us, rid"
)
SELECT_COMPLETION = f"SELECT {COMPLETION_COLUMNS} FROM completions WHERE id = %s AND user_id = %s"
SELECT_DEEP_RESEARCH = (
    f"SELECT {COMPLETION_COLUMNS} FROM completions"
    " WHERE user_id = %s AND deep_research ORDER BY created_us DESC, rid DESC"
)
INSERT_COMPLETION = (
    "INSERT INTO completions(id, chat_id, user_id, completion_type, created_us,"
    " completed_us, user_prompt_text, completion_text, metadata, error_message,"
    " deep_research) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, '', %s)"
)
EDIT_COMPLETION = (
    "UPDATE completions SET completion_text = coalesce(%s, completion_text),"
    " user_prompt_text = coalesce(%s, user_prompt_text), metadata = %s,"
    " deep_research = %s WHERE id = %s AND user_id = %s"
)
INSERT_JOB = (
    "INSERT INTO jobs(id, user_id, status, created_us, updated_us, request,"
    " completion_id) VALUES (%s, %s, 'pending', %s, %s, %s, %s)"
)
SELECT_JOB = f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = %s AND user_id = %s"
SELECT_CHUNKS = "SELECT seq_id, chunk FROM job_chunks WHERE job_id = %s ORDER BY seq_id"
INSERT_CHUNK = "INSERT INTO job_chunks(job_id, seq_id, chunk) VALUES (%s, %s, %s)"
DELETE_CHUNKS = "DELETE FROM job_chunks WHERE job_id = %s"
TOUCH_JOB = "UPDATE jobs SET updated_us = %s WHERE id = %s"
END_LEASE = "UPDATE jobs SET lease_owner = NULL, lease_expires_us = NULL WHERE id = %s"
SET_JOB_STATUS = "UPDATE jobs SET status = %s, error = %s, updated_us = %s WHERE id = %s"
SELECT_JOB_OWNER = "SELECT user_id, completion_id FROM jobs WHERE id = %s"
SELECT_JOB_COMPLETION = (
    "SELECT c.id, c.metadata FROM jobs AS j JOIN completions AS c"
    " ON c.id = j.completion_id WHERE j.id = %s"
)
MIRROR_JOB = (
    "UPDATE completions SET metadata = %s, completion_text = coalesce(%s, completion_text),"
    " error_message = coalesce(%s, error_message),"
    " completed_us = CASE WHEN %s THEN %s ELSE completed_us END WHERE id = %s"
)


def completion_params(row: CompletionRow, user_id: str) -> tuple[Any, ...]:
    """The parameters of INSERT_COMPLETION for a new ``row`` of ``user_id``."""
    return (
        row.id,
        row.chat_id,
        user_id,
        row.completion_type,
        row.created_us,
        row.completed_us,
        row.user_prompt_text,
        row.completion_text,
        json.dumps(row.metadata),
        DEEP_RESEARCH_KEY in row.metadata,
    )


def edit_params(
    text: str | None,
    prompt: str | None,
    metadata: dict[str, Any],
    completion_id: str,
    user_id: str,
) -> tuple[Any, ...]:
    """The parameters of EDIT_COMPLETION."""
    return (
        text,
        prompt,
        json.dumps(metadata),
        DEEP_RESEARCH_KEY in metadata,
        completion_id,
        user_id,
    )


def mirror_params(
    completion_id: str,
    metadata: dict[str, Any],
    status: str,
    text: str | None,
    error: str | None,
    stamp: int,
) -> tuple[Any, ...]:
    """The parameters of MIRROR_JOB: a job's ``status`` written into its completion."""
    return (json.dumps(metadata), text, error, status in FINAL_STATUSES, stamp, completion_id)
