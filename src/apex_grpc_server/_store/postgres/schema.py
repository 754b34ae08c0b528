"""The PostgreSQL schema, as numbered migrations (see ``_store.migrations``).

Columns mirror SQLite's so that rows read alike. Chat search uses a stored
tsvector of prompt and answer with a GIN index; its text-search
configuration ``apex_search`` stems English words like SQLite's porter
tokenizer and, like it, keeps stopwords (the query side drops them).
"""

from __future__ import annotations

from psycopg import AsyncConnection

from apex_grpc_server._store.migrations import (
    SEARCH_PREFIX_CHARS,
    SEARCH_PREFIX_SUMMARY,
    USER_IDS_SCHEME,
    Migration,
    to_apply,
)

MIGRATION_LOCK = 0x61706578_67727063  # "apexgrpc": pg_advisory_xact_lock key
"""Replicas starting together serialise their migrations on this advisory lock."""

MIGRATIONS = (
    Migration(
        1,
        "chats, completions with full-text search, jobs and their chunks",
        (
            "CREATE TEXT SEARCH DICTIONARY apex_stem (TEMPLATE = snowball, Language = english)",
            "CREATE TEXT SEARCH CONFIGURATION apex_search (COPY = pg_catalog.english)",
            "ALTER TEXT SEARCH CONFIGURATION apex_search ALTER MAPPING FOR"
            " asciiword, asciihword, hword_asciipart, word, hword, hword_part WITH apex_stem",
            """CREATE TABLE chats (
  id TEXT PRIMARY KEY,
  user_id TEXT NOT NULL,
  title TEXT NOT NULL,
  chat_type TEXT NOT NULL,
  created_us BIGINT NOT NULL,
  updated_us BIGINT NOT NULL
)""",
            "CREATE INDEX chats_by_user ON chats(user_id, updated_us)",
            """CREATE TABLE completions (
  rid BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  chat_id TEXT NOT NULL REFERENCES chats(id) ON DELETE CASCADE,
  user_id TEXT NOT NULL,
  completion_type TEXT NOT NULL,
  created_us BIGINT NOT NULL,
  completed_us BIGINT,
  user_prompt_text TEXT NOT NULL,
  completion_text TEXT NOT NULL,
  metadata TEXT NOT NULL,
  error_message TEXT NOT NULL,
  deep_research BOOLEAN NOT NULL,
  search tsvector GENERATED ALWAYS AS (
    to_tsvector('apex_search'::regconfig, user_prompt_text || ' ' || completion_text)
  ) STORED
)""",
            "CREATE INDEX completions_by_chat ON completions(chat_id, created_us)",
            "CREATE INDEX completions_by_user ON completions(user_id, deep_research, created_us)",
            "CREATE INDEX completions_search ON completions USING GIN (search)",
            """CREATE TABLE jobs (
  id TEXT PRIMARY KEY,
  user_id TEXT NOT NULL,
  status TEXT NOT NULL,
  created_us BIGINT NOT NULL,
  updated_us BIGINT NOT NULL,
  error TEXT,
  request BYTEA NOT NULL,
  completion_id TEXT
)""",
            "CREATE INDEX jobs_by_status ON jobs(status)",
            """CREATE TABLE job_chunks (
  job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
  seq_id INTEGER NOT NULL,
  chunk TEXT NOT NULL,
  PRIMARY KEY (job_id, seq_id)
)""",
        ),
    ),
    Migration(
        2,
        "job leases: the runner holding a job, and until when",
        (
            "ALTER TABLE jobs ADD COLUMN lease_owner TEXT",
            "ALTER TABLE jobs ADD COLUMN lease_expires_us BIGINT",
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
  response BYTEA NOT NULL,
  created_us BIGINT NOT NULL,
  PRIMARY KEY (user_id, key)
)""",
            "CREATE INDEX idempotency_keys_by_age ON idempotency_keys(created_us)",
        ),
    ),
    Migration(
        4,
        "user ids: a secret for HMAC user ids; databases holding rows keep the old ids",
        (
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
            # gen_random_uuid draws from PostgreSQL's strong random source: 244 random bits.
            "INSERT INTO meta(key, value) VALUES ('user_id_secret',"
            " replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''))",
            USER_IDS_SCHEME,
        ),
    ),
    Migration(
        5,
        SEARCH_PREFIX_SUMMARY,
        (
            "DROP INDEX completions_search",
            "ALTER TABLE completions DROP COLUMN search",
            f"""ALTER TABLE completions ADD COLUMN search tsvector GENERATED ALWAYS AS (
    to_tsvector('apex_search'::regconfig, left(user_prompt_text, {SEARCH_PREFIX_CHARS})
      || ' ' || left(completion_text, {SEARCH_PREFIX_CHARS}))
  ) STORED""",
            "CREATE INDEX completions_search ON completions USING GIN (search)",
        ),
    ),
)


async def migrate(conn: AsyncConnection[tuple[object, ...]]) -> int:
    """Bring the database to the newest schema in one transaction; returns its version.

    The advisory lock is taken first: a replica that waited on it finds the
    migrations already applied and applies nothing.
    """
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
            " summary TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        cursor = await conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations")
        row = await cursor.fetchone()
        current = int(row[0]) if row else 0  # type: ignore[call-overload]
        for migration in to_apply(current, MIGRATIONS):
            for statement in migration.statements:
                await conn.execute(statement)
            await conn.execute(
                "INSERT INTO schema_migrations(version, summary) VALUES (%s, %s)",
                (migration.version, migration.summary),
            )
    return len(MIGRATIONS)
