"""Chats, stored completions and deep-research jobs in one SQLite database (WAL mode).

Every read and write is scoped by the caller's user id: a row of another
user is indistinguishable from a missing one. Each method is one
transaction, run on the store's worker thread.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apex_grpc_server._search import query_words
from apex_grpc_server._sqlite import SqliteWorker, transaction

SCHEMA_VERSION = 1
DEEP_RESEARCH_KEY = "deep_researcher"
"""The metadata key that marks a stored completion as a deep-research entry."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS chats (
  id TEXT PRIMARY KEY,
  user_id TEXT NOT NULL,
  title TEXT NOT NULL,
  chat_type TEXT NOT NULL,
  created_us INTEGER NOT NULL,
  updated_us INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS chats_by_user ON chats(user_id, updated_us);
CREATE TABLE IF NOT EXISTS completions (
  rid INTEGER PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  chat_id TEXT NOT NULL REFERENCES chats(id) ON DELETE CASCADE,
  user_id TEXT NOT NULL,
  completion_type TEXT NOT NULL,
  created_us INTEGER NOT NULL,
  completed_us INTEGER,
  user_prompt_text TEXT NOT NULL,
  completion_text TEXT NOT NULL,
  metadata TEXT NOT NULL,
  error_message TEXT NOT NULL,
  deep_research INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS completions_by_chat ON completions(chat_id, created_us);
CREATE INDEX IF NOT EXISTS completions_by_user ON completions(user_id, deep_research, created_us);
CREATE VIRTUAL TABLE IF NOT EXISTS completions_fts USING fts5(
  user_prompt_text, completion_text, content='completions', content_rowid='rid',
  tokenize='porter unicode61 remove_diacritics 2'
);
CREATE TRIGGER IF NOT EXISTS completions_ai AFTER INSERT ON completions BEGIN
  INSERT INTO completions_fts(rowid, user_prompt_text, completion_text)
  VALUES (new.rid, new.user_prompt_text, new.completion_text);
END;
CREATE TRIGGER IF NOT EXISTS completions_ad AFTER DELETE ON completions BEGIN
  INSERT INTO completions_fts(completions_fts, rowid, user_prompt_text, completion_text)
  VALUES ('delete', old.rid, old.user_prompt_text, old.completion_text);
END;
CREATE TRIGGER IF NOT EXISTS completions_au
AFTER UPDATE OF user_prompt_text, completion_text ON completions BEGIN
  INSERT INTO completions_fts(completions_fts, rowid, user_prompt_text, completion_text)
  VALUES ('delete', old.rid, old.user_prompt_text, old.completion_text);
  INSERT INTO completions_fts(rowid, user_prompt_text, completion_text)
  VALUES (new.rid, new.user_prompt_text, new.completion_text);
END;
CREATE TABLE IF NOT EXISTS jobs (
  id TEXT PRIMARY KEY,
  user_id TEXT NOT NULL,
  status TEXT NOT NULL,
  created_us INTEGER NOT NULL,
  updated_us INTEGER NOT NULL,
  error TEXT,
  request BLOB NOT NULL,
  completion_id TEXT
);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs(status);
CREATE TABLE IF NOT EXISTS job_chunks (
  job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
  seq_id INTEGER NOT NULL,
  chunk TEXT NOT NULL,
  PRIMARY KEY (job_id, seq_id)
) WITHOUT ROWID;
"""

_CHAT_COLUMNS = "id, user_id, title, chat_type, created_us, updated_us"
_COMPLETION_COLUMNS = (
    "id, chat_id, completion_type, created_us, completed_us, user_prompt_text,"
    " completion_text, metadata, error_message"
)
_JOB_COLUMNS = "id, status, created_us, updated_us, error, completion_id"


def now_us() -> int:
    """Now, in microseconds since the epoch."""
    return time.time_ns() // 1000


@dataclass(frozen=True, slots=True)
class ChatRow:
    """A stored chat."""

    id: str
    user_id: str
    title: str
    chat_type: str
    created_us: int
    updated_us: int


@dataclass(frozen=True, slots=True)
class CompletionRow:
    """A stored prompt and its answer."""

    id: str
    chat_id: str
    completion_type: str
    created_us: int
    completed_us: int | None
    user_prompt_text: str
    completion_text: str
    metadata: dict[str, Any]
    error_message: str


@dataclass(frozen=True, slots=True)
class JobRow:
    """A deep-research job and its result chunks so far."""

    id: str
    status: str
    created_us: int
    updated_us: int
    error: str | None
    completion_id: str | None
    chunks: tuple[tuple[int, str], ...] = ()


@dataclass(frozen=True, slots=True)
class NewCompletion:
    """A completion to store."""

    prompt: str
    text: str
    completion_type: str
    metadata: dict[str, Any]
    completed: bool = True


def default_title(prompt: str, words: int = 8, limit: int = 60) -> str:
    """A chat title from the first words of a prompt."""
    parts = prompt.split()
    title = " ".join(parts[:words])
    if len(title) > limit:
        title = title[: limit - 1].rstrip() + "…"
    elif len(parts) > words:
        title += "…"
    return title or "Untitled chat"


def _chat(row: Sequence[Any]) -> ChatRow:
    return ChatRow(*row)


def _completion(row: Sequence[Any]) -> CompletionRow:
    values = list(row)
    values[7] = json.loads(values[7])
    return CompletionRow(*values)


class Store:
    """The server's database: ``apex.sqlite3`` in the data directory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._worker = SqliteWorker(path, "apex-grpc-store")
        self._worker.call(self._open)

    def _open(self) -> None:
        conn = self._worker.conn
        conn.executescript(SCHEMA)
        with transaction(conn):
            conn.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )

    def close(self) -> None:
        """Close the database."""
        self._worker.close()

    # Chats -----------------------------------------------------------------

    async def create_chat(
        self, user_id: str, title: str, chat_type: str, completion: NewCompletion
    ) -> tuple[ChatRow, CompletionRow]:
        """A new chat with its first completion, atomically."""
        return await self._worker.run(self._create_chat, user_id, title, chat_type, completion)

    def _create_chat(
        self, user_id: str, title: str, chat_type: str, completion: NewCompletion
    ) -> tuple[ChatRow, CompletionRow]:
        conn = self._worker.conn
        stamp = now_us()
        with transaction(conn):
            chat = self._insert_chat(conn, user_id, title, chat_type, stamp)
            row = self._insert_completion(conn, user_id, chat.id, completion, stamp)
        return chat, row

    def _insert_chat(
        self, conn: sqlite3.Connection, user_id: str, title: str, chat_type: str, stamp: int
    ) -> ChatRow:
        chat = ChatRow(str(uuid.uuid4()), user_id, title, chat_type, stamp, stamp)
        conn.execute(
            f"INSERT INTO chats({_CHAT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
            (chat.id, user_id, title, chat_type, stamp, stamp),
        )
        return chat

    def _insert_completion(
        self,
        conn: sqlite3.Connection,
        user_id: str,
        chat_id: str,
        completion: NewCompletion,
        stamp: int,
    ) -> CompletionRow:
        row = CompletionRow(
            id=str(uuid.uuid4()),
            chat_id=chat_id,
            completion_type=completion.completion_type,
            created_us=stamp,
            completed_us=stamp if completion.completed else None,
            user_prompt_text=completion.prompt,
            completion_text=completion.text,
            metadata=completion.metadata,
            error_message="",
        )
        conn.execute(
            "INSERT INTO completions(id, chat_id, user_id, completion_type, created_us,"
            " completed_us, user_prompt_text, completion_text, metadata, error_message,"
            " deep_research) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, '', ?)",
            (
                row.id,
                chat_id,
                user_id,
                row.completion_type,
                stamp,
                row.completed_us,
                row.user_prompt_text,
                row.completion_text,
                json.dumps(row.metadata),
                DEEP_RESEARCH_KEY in row.metadata,
            ),
        )
        return row

    async def add_completion(
        self, user_id: str, chat_id: str, completion: NewCompletion
    ) -> CompletionRow | None:
        """Add a completion to one of the user's chats; None if there is no such chat."""
        return await self._worker.run(self._add_completion, user_id, chat_id, completion)

    def _add_completion(
        self, user_id: str, chat_id: str, completion: NewCompletion
    ) -> CompletionRow | None:
        conn = self._worker.conn
        stamp = now_us()
        with transaction(conn):
            updated = conn.execute(
                "UPDATE chats SET updated_us = ? WHERE id = ? AND user_id = ?",
                (stamp, chat_id, user_id),
            ).rowcount
            if not updated:
                return None
            return self._insert_completion(conn, user_id, chat_id, completion, stamp)

    async def chats(self, user_id: str, chat_type: str) -> list[ChatRow]:
        """The user's chats (of one type, if given), most recently updated first."""
        return await self._worker.run(self._chats, user_id, chat_type)

    def _chats(self, user_id: str, chat_type: str) -> list[ChatRow]:
        sql = f"SELECT {_CHAT_COLUMNS} FROM chats WHERE user_id = ?"
        params: tuple[str, ...] = (user_id,)
        if chat_type:
            sql += " AND chat_type = ?"
            params += (chat_type,)
        sql += " ORDER BY updated_us DESC, rowid DESC"
        return [_chat(row) for row in self._worker.conn.execute(sql, params)]

    async def chat(self, user_id: str, chat_id: str) -> ChatRow | None:
        """One of the user's chats."""
        return await self._worker.run(self._chat, user_id, chat_id)

    def _chat(self, user_id: str, chat_id: str) -> ChatRow | None:
        row = self._worker.conn.execute(
            f"SELECT {_CHAT_COLUMNS} FROM chats WHERE id = ? AND user_id = ?", (chat_id, user_id)
        ).fetchone()
        return None if row is None else _chat(row)

    async def chat_completions(self, user_id: str, chat_id: str) -> list[CompletionRow] | None:
        """The completions of one of the user's chats, oldest first; None if no such chat."""
        return await self._worker.run(self._chat_completions, user_id, chat_id)

    def _chat_completions(self, user_id: str, chat_id: str) -> list[CompletionRow] | None:
        conn = self._worker.conn
        if self._chat(user_id, chat_id) is None:
            return None
        rows = conn.execute(
            f"SELECT {_COMPLETION_COLUMNS} FROM completions WHERE chat_id = ? AND user_id = ?"
            " ORDER BY created_us, rid",
            (chat_id, user_id),
        )
        return [_completion(row) for row in rows]

    async def update_chat(
        self, user_id: str, chat_id: str, title: str | None, chat_type: str | None
    ) -> ChatRow | None:
        """Change a chat's title and/or type; None if there is no such chat."""
        return await self._worker.run(self._update_chat, user_id, chat_id, title, chat_type)

    def _update_chat(
        self, user_id: str, chat_id: str, title: str | None, chat_type: str | None
    ) -> ChatRow | None:
        conn = self._worker.conn
        with transaction(conn):
            updated = conn.execute(
                "UPDATE chats SET title = coalesce(?, title), chat_type = coalesce(?, chat_type),"
                " updated_us = ? WHERE id = ? AND user_id = ?",
                (title, chat_type, now_us(), chat_id, user_id),
            ).rowcount
        return self._chat(user_id, chat_id) if updated else None

    async def delete_chats(self, user_id: str, chat_ids: list[str]) -> list[str]:
        """Delete chats with their completions, all or nothing; returns the unknown ids."""
        return await self._worker.run(self._delete, "chats", user_id, chat_ids)

    async def delete_completions(self, user_id: str, completion_ids: list[str]) -> list[str]:
        """Delete completions, all or nothing; returns the unknown ids."""
        return await self._worker.run(self._delete, "completions", user_id, completion_ids)

    def _delete(self, table: str, user_id: str, ids: list[str]) -> list[str]:
        conn = self._worker.conn
        with transaction(conn):
            missing = [
                ident
                for ident in ids
                if conn.execute(
                    f"SELECT 1 FROM {table} WHERE id = ? AND user_id = ?", (ident, user_id)
                ).fetchone()
                is None
            ]
            if not missing:
                conn.executemany(
                    f"DELETE FROM {table} WHERE id = ? AND user_id = ?",
                    [(ident, user_id) for ident in ids],
                )
        return missing

    async def search_chats(self, user_id: str, text: str, limit: int = 100) -> list[str]:
        """Ids of the user's chats whose prompts or answers contain every word, best first.

        Words match as prefixes ("cosmo" finds "cosmonaut").
        """
        return await self._worker.run(self._search_chats, user_id, text, limit)

    def _search_chats(self, user_id: str, text: str, limit: int) -> list[str]:
        words = query_words(text)
        if not words:
            return []
        match = " AND ".join(f'"{word}"*' for word in words)
        rows = self._worker.conn.execute(
            "SELECT c.chat_id FROM completions_fts JOIN completions AS c"
            " ON c.rid = completions_fts.rowid"
            " WHERE completions_fts MATCH ? AND c.user_id = ?"
            " ORDER BY bm25(completions_fts), c.created_us DESC LIMIT ?",
            (match, user_id, limit * 10),
        )
        found: dict[str, None] = {}
        for (chat_id,) in rows:
            found.setdefault(chat_id)
            if len(found) == limit:
                break
        return list(found)

    # Completions -----------------------------------------------------------

    async def completion(self, user_id: str, completion_id: str) -> CompletionRow | None:
        """One of the user's completions."""
        return await self._worker.run(self._completion, user_id, completion_id)

    def _completion(self, user_id: str, completion_id: str) -> CompletionRow | None:
        row = self._worker.conn.execute(
            f"SELECT {_COMPLETION_COLUMNS} FROM completions WHERE id = ? AND user_id = ?",
            (completion_id, user_id),
        ).fetchone()
        return None if row is None else _completion(row)

    async def update_completion(
        self,
        user_id: str,
        completion_id: str,
        *,
        text: str | None = None,
        prompt: str | None = None,
        metadata_patch: dict[str, Any] | None = None,
    ) -> CompletionRow | None:
        """Change a completion; metadata merges key by key (a null value removes the key)."""
        return await self._worker.run(
            self._update_completion, user_id, completion_id, text, prompt, metadata_patch
        )

    def _update_completion(
        self,
        user_id: str,
        completion_id: str,
        text: str | None,
        prompt: str | None,
        metadata_patch: dict[str, Any] | None,
    ) -> CompletionRow | None:
        conn = self._worker.conn
        with transaction(conn):
            current = self._completion(user_id, completion_id)
            if current is None:
                return None
            metadata = _merge(current.metadata, metadata_patch)
            conn.execute(
                "UPDATE completions SET completion_text = coalesce(?, completion_text),"
                " user_prompt_text = coalesce(?, user_prompt_text), metadata = ?,"
                " deep_research = ? WHERE id = ? AND user_id = ?",
                (
                    text,
                    prompt,
                    json.dumps(metadata),
                    DEEP_RESEARCH_KEY in metadata,
                    completion_id,
                    user_id,
                ),
            )
            conn.execute(
                "UPDATE chats SET updated_us = ? WHERE id = ?", (now_us(), current.chat_id)
            )
        return self._completion(user_id, completion_id)

    async def deep_research_completions(self, user_id: str) -> list[CompletionRow]:
        """The user's completions with deep-research metadata, newest first."""
        return await self._worker.run(self._deep_research_completions, user_id)

    def _deep_research_completions(self, user_id: str) -> list[CompletionRow]:
        rows = self._worker.conn.execute(
            f"SELECT {_COMPLETION_COLUMNS} FROM completions"
            " WHERE user_id = ? AND deep_research ORDER BY created_us DESC, rid DESC",
            (user_id,),
        )
        return [_completion(row) for row in rows]

    # Deep-research jobs ----------------------------------------------------

    async def create_job(
        self, user_id: str, request: bytes, prompt: str, title: str
    ) -> tuple[JobRow, CompletionRow]:
        """A pending job, with the chat and completion that will hold its answer."""
        return await self._worker.run(self._create_job, user_id, request, prompt, title)

    def _create_job(
        self, user_id: str, request: bytes, prompt: str, title: str
    ) -> tuple[JobRow, CompletionRow]:
        conn = self._worker.conn
        stamp = now_us()
        job_id = str(uuid.uuid4())
        metadata = {DEEP_RESEARCH_KEY: {"job_id": job_id, "status": "pending"}}
        with transaction(conn):
            chat = self._insert_chat(conn, user_id, title, "apex", stamp)
            completion = self._insert_completion(
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

    async def job(self, user_id: str, job_id: str) -> JobRow | None:
        """One of the user's jobs with its result chunks."""
        return await self._worker.run(self._job, user_id, job_id)

    def _job(self, user_id: str, job_id: str) -> JobRow | None:
        conn = self._worker.conn
        row = conn.execute(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ? AND user_id = ?", (job_id, user_id)
        ).fetchone()
        if row is None:
            return None
        chunks = conn.execute(
            "SELECT seq_id, chunk FROM job_chunks WHERE job_id = ? ORDER BY seq_id", (job_id,)
        ).fetchall()
        job_id, status, created_us, updated_us, error, completion_id = row
        return JobRow(job_id, status, created_us, updated_us, error, completion_id, tuple(chunks))

    async def set_job_status(self, job_id: str, status: str) -> None:
        """Move a job to ``status`` (mirrored in its completion's metadata)."""
        await self._worker.run(self._finish_job, job_id, status, None, None, None)

    async def add_job_chunk(self, job_id: str, seq_id: int, chunk: str) -> None:
        """Append one result chunk."""
        await self._worker.run(self._add_job_chunk, job_id, seq_id, chunk)

    def _add_job_chunk(self, job_id: str, seq_id: int, chunk: str) -> None:
        conn = self._worker.conn
        with transaction(conn):
            conn.execute(
                "INSERT INTO job_chunks(job_id, seq_id, chunk) VALUES (?, ?, ?)",
                (job_id, seq_id, chunk),
            )
            conn.execute("UPDATE jobs SET updated_us = ? WHERE id = ?", (now_us(), job_id))

    async def finish_job(
        self,
        job_id: str,
        status: str,
        *,
        error: str | None = None,
        text: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        """End a job as "completed" or "failed", and complete its stored completion."""
        await self._worker.run(self._finish_job, job_id, status, error, text, details)

    def _finish_job(
        self,
        job_id: str,
        status: str,
        error: str | None,
        text: str | None,
        details: dict[str, Any] | None,
    ) -> None:
        conn = self._worker.conn
        with transaction(conn):
            self._finish_job_in(conn, job_id, status, error, text, details)

    def _finish_job_in(
        self,
        conn: sqlite3.Connection,
        job_id: str,
        status: str,
        error: str | None,
        text: str | None,
        details: dict[str, Any] | None,
    ) -> None:
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
        final = status in ("completed", "failed")
        conn.execute(
            "UPDATE completions SET metadata = ?, completion_text = coalesce(?, completion_text),"
            " error_message = coalesce(?, error_message),"
            " completed_us = CASE WHEN ? THEN ? ELSE completed_us END WHERE id = ?",
            (json.dumps(metadata), text, error, final, stamp, row[0]),
        )

    async def interrupt_jobs(self, reason: str) -> int:
        """Fail every job still "pending" or "running" (after a restart); returns how many."""
        return await self._worker.run(self._interrupt_jobs, reason)

    def _interrupt_jobs(self, reason: str) -> int:
        conn = self._worker.conn
        with transaction(conn):
            ids = [
                job_id
                for (job_id,) in conn.execute(
                    "SELECT id FROM jobs WHERE status IN ('pending', 'running')"
                ).fetchall()
            ]
            for job_id in ids:
                self._finish_job_in(conn, job_id, "failed", reason, None, None)
        return len(ids)


def _merge(metadata: dict[str, Any], patch: dict[str, Any] | None) -> dict[str, Any]:
    """Top-level JSON merge patch: keys in ``patch`` replace, null values delete."""
    if not patch:
        return metadata
    merged = dict(metadata)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged
