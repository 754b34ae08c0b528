"""Versioned schema migrations: the rule both backends apply, without I/O.

Each backend lists its migrations numbered 1, 2, ... (the same numbers mean
the same change on both). Opening a database reads its version and applies
every newer migration in order, inside one transaction with the new
version, so a database is always at exactly one version. SQLite keeps the
version in ``meta.schema_version`` (version 1 is the schema from before
migrations existed); PostgreSQL in ``schema_migrations``, under an advisory
lock so that replicas starting together apply each migration once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema change: its number, what it does, and its statements in order."""

    version: int
    summary: str
    statements: tuple[str, ...]


USER_IDS_SCHEME = (
    "INSERT INTO meta(key, value) SELECT 'user_ids', CASE WHEN EXISTS"
    " (SELECT 1 FROM chats) OR EXISTS (SELECT 1 FROM jobs)"
    " THEN 'sha256-legacy' ELSE 'hmac-sha256' END"
)
"""Migration 4 in both backends: a database that already holds rows keeps its old user ids."""


SEARCH_PREFIX_CHARS = 65_536
"""Migration 5 in both backends: search indexes the first this many characters of a prompt
and of its answer; the texts are stored whole. PostgreSQL's tsvector cannot exceed 1 MB
(a 1 MB prompt of distinct words failed the write); 2 x 64 Ki characters stay under it
even in 4-byte characters, and SQLite's FTS5 index is cut at the same place so that search
finds the same chats on both."""
SEARCH_PREFIX_SUMMARY = (
    f"search: index the first {SEARCH_PREFIX_CHARS} characters of a prompt and of its answer"
)


class SchemaTooNew(RuntimeError):
    """The database was migrated by a newer apex-grpc than this one."""


def to_apply(current: int, migrations: Sequence[Migration]) -> list[Migration]:
    """The migrations a database at version ``current`` still needs, in order."""
    numbers = [migration.version for migration in migrations]
    if numbers != list(range(1, len(numbers) + 1)):
        raise ValueError(f"migrations must be numbered 1..n in order, got {numbers}")
    if current > len(migrations):
        raise SchemaTooNew(
            f"the database's schema is version {current}, newer than this apex-grpc's "
            f"{len(migrations)}: upgrade apex-grpc (pip install -U apex-grpc)"
        )
    return list(migrations[current:])
