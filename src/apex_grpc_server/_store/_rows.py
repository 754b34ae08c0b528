"""The store's schema and the rows it hands out."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

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

CHAT_COLUMNS = "id, user_id, title, chat_type, created_us, updated_us"
COMPLETION_COLUMNS = (
    "id, chat_id, completion_type, created_us, completed_us, user_prompt_text,"
    " completion_text, metadata, error_message"
)
JOB_COLUMNS = "id, status, created_us, updated_us, error, completion_id"


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

    @classmethod
    def from_sql(cls, row: Sequence[Any]) -> ChatRow:
        """The chat in a row of ``SELECT {CHAT_COLUMNS}``."""
        return cls(*row)


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

    @classmethod
    def from_sql(cls, row: Sequence[Any]) -> CompletionRow:
        """The completion in a row of ``SELECT {COMPLETION_COLUMNS}`` (metadata is JSON)."""
        values = list(row)
        values[7] = json.loads(values[7])
        return cls(*values)


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
