"""The SQLite schema, as numbered migrations (see ``_store.migrations``)."""

from __future__ import annotations

import sqlite3

from apex_grpc_server._store.migrations import (
    SEARCH_PREFIX_CHARS,
    SEARCH_PREFIX_SUMMARY,
    USER_IDS_SCHEME,
    Migration,
    to_apply,
)
from apex_grpc_server._store.sqlite.connection import transaction


def _prefix(column: str) -> str:
    """The part of a text column search indexes (see SEARCH_PREFIX_CHARS)."""
    return f"substr({column}, 1, {SEARCH_PREFIX_CHARS})"


MIGRATIONS = (
    Migration(
        1,
        "chats, completions with FTS5 search, jobs and their chunks",
        (
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
            """CREATE TABLE IF NOT EXISTS chats (
  id TEXT PRIMARY KEY,
  user_id TEXT NOT NULL,
  title TEXT NOT NULL,
  chat_type TEXT NOT NULL,
  created_us INTEGER NOT NULL,
  updated_us INTEGER NOT NULL
)""",
            "CREATE INDEX IF NOT EXISTS chats_by_user ON chats(user_id, updated_us)",
            """CREATE TABLE IF NOT EXISTS completions (
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
)""",
            "CREATE INDEX IF NOT EXISTS completions_by_chat ON completions(chat_id, created_us)",
            "CREATE INDEX IF NOT EXISTS completions_by_user"
            " ON completions(user_id, deep_research, created_us)",
            """CREATE VIRTUAL TABLE IF NOT EXISTS completions_fts USING fts5(
  user_prompt_text, completion_text, content='completions', content_rowid='rid',
  tokenize='porter unicode61 remove_diacritics 2'
)""",
            """CREATE TRIGGER IF NOT EXISTS completions_ai AFTER INSERT ON completions BEGIN
  INSERT INTO completions_fts(rowid, user_prompt_text, completion_text)
  VALUES (new.rid, new.user_prompt_text, new.completion_text);
END""",
            """CREATE TRIGGER IF NOT EXISTS completions_ad AFTER DELETE ON completions BEGIN
  INSERT INTO completions_fts(completions_fts, rowid, user_prompt_text, completion_text)
  VALUES ('delete', old.rid, old.user_prompt_text, old.completion_text);
END""",
            """CREATE TRIGGER IF NOT EXISTS completions_au
AFTER UPDATE OF user_prompt_text, completion_text ON completions BEGIN
  INSERT INTO completions_fts(completions_fts, rowid, user_prompt_text, completion_text)
  VALUES ('delete', old.rid, old.user_prompt_text, old.completion_text);
  INSERT INTO completions_fts(rowid, user_prompt_text, completion_text)
  VALUES (new.rid, new.user_prompt_text, new.completion_text);
END""",
            """CREATE TABLE IF NOT EXISTS jobs (
  id TEXT PRIMARY KEY,
  user_id TEXT NOT NULL,
  status TEXT NOT NULL,
  created_us INTEGER NOT NULL,
  updated_us INTEGER NOT NULL,
  error TEXT,
  request BLOB NOT NULL,
  completion_id TEXT
)""",
            "CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs(status)",
            """CREATE TABLE IF NOT EXISTS job_chunks (
  job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
  seq_id INTEGER NOT NULL,
  chunk TEXT NOT NULL,
  PRIMARY KEY (job_id, seq_id)
) WITHOUT ROWID""",
        ),
    ),
    Migration(
        2,
        "job leases: the runner holding a job, and until when",
        (
            "ALTER TABLE jobs ADD COLUMN lease_owner TEXT",
            "ALTER TABLE jobs ADD COLUMN lease_expires_us INTEGER",
        ),
    ),
    Migration(
        3,
        "idempotency keys: a keyed write's request fingerprint and first answer",
        (
            """CREATE TABLE idempotency_keys (
  user_id TEXT NOT NULL,
  key TEXT NOT NULL,
  method TEXT NOT NULL,
  fingerprint TEXT NOT NULL,
  response BLOB NOT NULL,
  created_us INTEGER NOT NULL,
  PRIMARY KEY (user_id, key)
) WITHOUT ROWID""",
            "CREATE INDEX idempotency_keys_by_age ON idempotency_keys(created_us)",
        ),
    ),
    Migration(
        4,
        "user ids: a secret for HMAC user ids; databases holding rows keep the old ids",
        (
            "INSERT INTO meta(key, value) VALUES ('user_id_secret', lower(hex(randomblob(32))))",
            USER_IDS_SCHEME,
        ),
    ),
    Migration(
        5,
        SEARCH_PREFIX_SUMMARY,
        (
            "DROP TRIGGER completions_ai",
            "DROP TRIGGER completions_ad",
            "DROP TRIGGER completions_au",
            # An external-content index is told what to remove as it was told what to add:
            # rebuilt from the prefixes, then kept in step with them by the triggers.
            "INSERT INTO completions_fts(completions_fts) VALUES ('delete-all')",
            f"""INSERT INTO completions_fts(rowid, user_prompt_text, completion_text)
  SELECT rid, {_prefix("user_prompt_text")}, {_prefix("completion_text")} FROM completions""",
            f"""CREATE TRIGGER completions_ai AFTER INSERT ON completions BEGIN
  INSERT INTO completions_fts(rowid, user_prompt_text, completion_text)
  VALUES (new.rid, {_prefix("new.user_prompt_text")}, {_prefix("new.completion_text")});
END""",
            f"""CREATE TRIGGER completions_ad AFTER DELETE ON completions BEGIN
  INSERT INTO completions_fts(completions_fts, rowid, user_prompt_text, completion_text)
  VALUES ('delete', old.rid, {_prefix("old.user_prompt_text")}, {_prefix("old.completion_text")});
END""",
            f"""CREATE TRIGGER completions_au
AFTER UPDATE OF user_prompt_text, completion_text ON completions BEGIN
  INSERT INTO completions_fts(completions_fts, rowid, user_prompt_text, completion_text)
  VALUES ('delete', old.rid, {_prefix("old.user_prompt_text")}, {_prefix("old.completion_text")});
  INSERT INTO completions_fts(rowid, user_prompt_text, completion_text)
  VALUES (new.rid, {_prefix("new.user_prompt_text")}, {_prefix("new.completion_text")});
END""",
        ),
    ),
)


def schema_version(conn: sqlite3.Connection) -> int:
    """The database's schema version (0: an empty database)."""
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone():
        return 0
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return 0 if row is None else int(row[0])


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the database to the newest schema in one IMMEDIATE transaction; returns its version.

    The write lock is taken first, so two processes opening one file apply
    each migration once.
    """
    with transaction(conn):
        pending = to_apply(schema_version(conn), MIGRATIONS)
        for migration in pending:
            for statement in migration.statements:
                conn.execute(statement)
        version = len(MIGRATIONS)
        if pending:
            conn.execute(
                "INSERT INTO meta(key, value) VALUES ('schema_version', ?)"
                " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (str(version),),
            )
    return version
