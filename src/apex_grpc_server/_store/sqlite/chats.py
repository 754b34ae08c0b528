"""Chats and their stored completions, in SQLite.

Every read and write is scoped by the caller's user id: a row of another
user is indistinguishable from a missing one. Each operation is one
transaction (or one read) on the store's worker thread.
"""

from __future__ import annotations

import sqlite3
import uuid
from typing import Any

from apex_grpc_server._store import sql
from apex_grpc_server._store.idempotency_keys import KeyRecord
from apex_grpc_server._store.interface import Check
from apex_grpc_server._store.rows import (
    CHAT_COLUMNS,
    DEEP_RESEARCH_KEY,
    ChatRow,
    CompletionRow,
    Listings,
    NewCompletion,
    merge_patch,
    missing_ids,
    now_us,
)
from apex_grpc_server._store.sql import qmark
from apex_grpc_server._store.sqlite.connection import SqliteWorker, on_worker, transaction
from apex_grpc_server._store.sqlite.idempotency_keys import remember
from apex_grpc_server._store.words import query_words


class SqliteChats:
    """The ``chats`` table, with the completions each chat holds."""

    def __init__(self, worker: SqliteWorker) -> None:
        self.worker = worker

    @on_worker
    def create(
        self,
        conn: sqlite3.Connection,
        user_id: str,
        title: str,
        chat_type: str,
        completion: NewCompletion,
        *,
        check: Check | None = None,
        key: KeyRecord | None = None,
    ) -> tuple[ChatRow, CompletionRow]:
        """A new chat with its first completion, atomically."""
        stamp = now_us()
        with transaction(conn):
            chat = insert_chat(conn, user_id, title, chat_type, stamp)
            row = insert_completion(conn, user_id, chat.id, completion, stamp)
            run_check(conn, user_id, row, check, new_chat=True)
            remember(conn, user_id, key, (chat, row))
        return chat, row

    @on_worker
    def add_completion(
        self,
        conn: sqlite3.Connection,
        user_id: str,
        chat_id: str,
        completion: NewCompletion,
        *,
        check: Check | None = None,
        key: KeyRecord | None = None,
    ) -> CompletionRow | None:
        """Add a completion to one of the user's chats; None if there is no such chat."""
        stamp = now_us()
        with transaction(conn):
            updated = conn.execute(qmark(sql.TOUCH_CHAT), (stamp, chat_id, user_id)).rowcount
            if not updated:
                return None
            row = insert_completion(conn, user_id, chat_id, completion, stamp)
            run_check(conn, user_id, row, check)
            remember(conn, user_id, key, row)
            return row

    @on_worker
    def of_user(self, conn: sqlite3.Connection, user_id: str, chat_type: str) -> list[ChatRow]:
        """The user's chats (of one type, if given), most recently updated first."""
        sql = f"SELECT {CHAT_COLUMNS} FROM chats WHERE user_id = ?"
        params: tuple[str, ...] = (user_id,)
        if chat_type:
            sql += " AND chat_type = ?"
            params += (chat_type,)
        sql += " ORDER BY updated_us DESC, rowid DESC"
        return [ChatRow.from_sql(row) for row in conn.execute(sql, params)]

    @on_worker
    def get(self, conn: sqlite3.Connection, user_id: str, chat_id: str) -> ChatRow | None:
        """One of the user's chats."""
        return select_chat(conn, user_id, chat_id)

    @on_worker
    def completions(
        self, conn: sqlite3.Connection, user_id: str, chat_id: str
    ) -> list[CompletionRow] | None:
        """The completions of one of the user's chats, oldest first; None if no such chat."""
        if select_chat(conn, user_id, chat_id) is None:
            return None
        return select_completions(conn, user_id, chat_id)

    @on_worker
    def update(
        self,
        conn: sqlite3.Connection,
        user_id: str,
        chat_id: str,
        title: str | None,
        chat_type: str | None,
        *,
        key: KeyRecord | None = None,
    ) -> ChatRow | None:
        """Change a chat's title and/or type; None if there is no such chat."""
        with transaction(conn):
            updated = conn.execute(
                "UPDATE chats SET title = coalesce(?, title), chat_type = coalesce(?, chat_type),"
                " updated_us = ? WHERE id = ? AND user_id = ?",
                (title, chat_type, now_us(), chat_id, user_id),
            ).rowcount
            if not updated:
                return None
            chat = select_chat(conn, user_id, chat_id)
            remember(conn, user_id, key, chat)
        return chat

    @on_worker
    def delete(
        self,
        conn: sqlite3.Connection,
        user_id: str,
        chat_ids: list[str],
        *,
        key: KeyRecord | None = None,
    ) -> list[str]:
        """Delete chats with their completions, all or nothing; returns the unknown ids."""
        return delete_owned(conn, "chats", user_id, chat_ids, key)

    @on_worker
    def search(
        self, conn: sqlite3.Connection, user_id: str, text: str, limit: int = 100
    ) -> list[str]:
        """Ids of the user's chats whose prompts or answers contain every word, best first.

        Words match as prefixes ("cosmo" finds "cosmonaut").
        """
        words = query_words(text)
        if not words:
            return []
        match = " AND ".join(f'"{word}"*' for word in words)
        # No SQL LIMIT: one chat may hold any number of the best hits, so only the
        # loop below, counting distinct chats, knows when `limit` chats are found.
        rows = conn.execute(
            "SELECT c.chat_id FROM completions_fts JOIN completions AS c"
            " ON c.rid = completions_fts.rowid"
            " WHERE completions_fts MATCH ? AND c.user_id = ?"
            " ORDER BY bm25(completions_fts), c.created_us DESC",
            (match, user_id),
        )
        found: dict[str, None] = {}
        for (chat_id,) in rows:
            found.setdefault(chat_id)
            if len(found) == limit:
                break
        return list(found)


class SqliteCompletions:
    """The ``completions`` table, addressed by completion id."""

    def __init__(self, worker: SqliteWorker) -> None:
        self.worker = worker

    @on_worker
    def get(
        self, conn: sqlite3.Connection, user_id: str, completion_id: str
    ) -> CompletionRow | None:
        """One of the user's completions."""
        return select_completion(conn, user_id, completion_id)

    @on_worker
    def update(
        self,
        conn: sqlite3.Connection,
        user_id: str,
        completion_id: str,
        *,
        text: str | None = None,
        prompt: str | None = None,
        metadata_patch: dict[str, Any] | None = None,
        check: Check | None = None,
        key: KeyRecord | None = None,
    ) -> CompletionRow | None:
        """Change a completion; metadata merges key by key (a null value removes the key).

        `check` sees the listings as they would be; an exception it raises undoes the change.
        """
        with transaction(conn):
            current = select_completion(conn, user_id, completion_id)
            if current is None:
                return None
            metadata = merge_patch(current.metadata, metadata_patch)
            conn.execute(
                qmark(sql.EDIT_COMPLETION),
                sql.edit_params(text, prompt, metadata, completion_id, user_id),
            )
            conn.execute(qmark(sql.TOUCH_CHAT_OF_COMPLETION), (now_us(), current.chat_id))
            row = select_completion(conn, user_id, completion_id)
            assert row is not None  # updated just now, in this transaction
            run_check(conn, user_id, row, check)
            remember(conn, user_id, key, row)
        return row

    @on_worker
    def delete(
        self,
        conn: sqlite3.Connection,
        user_id: str,
        completion_ids: list[str],
        *,
        key: KeyRecord | None = None,
    ) -> list[str]:
        """Delete completions, all or nothing; returns the unknown ids."""
        return delete_owned(conn, "completions", user_id, completion_ids, key)

    @on_worker
    def deep_research(self, conn: sqlite3.Connection, user_id: str) -> list[CompletionRow]:
        """The user's completions with deep-research metadata, newest first."""
        return select_deep_research(conn, user_id)


# Statements shared by several operations (they run inside the caller's transaction).


def select_chat(conn: sqlite3.Connection, user_id: str, chat_id: str) -> ChatRow | None:
    """The user's chat ``chat_id``, if any."""
    row = conn.execute(qmark(sql.SELECT_CHAT), (chat_id, user_id)).fetchone()
    return None if row is None else ChatRow.from_sql(row)


def select_completions(conn: sqlite3.Connection, user_id: str, chat_id: str) -> list[CompletionRow]:
    """The completions of a chat, oldest first."""
    rows = conn.execute(qmark(sql.SELECT_COMPLETIONS), (chat_id, user_id))
    return [CompletionRow.from_sql(row) for row in rows]


def select_deep_research(conn: sqlite3.Connection, user_id: str) -> list[CompletionRow]:
    """The user's deep-research entries, newest first."""
    rows = conn.execute(qmark(sql.SELECT_DEEP_RESEARCH), (user_id,))
    return [CompletionRow.from_sql(row) for row in rows]


def run_check(
    conn: sqlite3.Connection,
    user_id: str,
    written: CompletionRow,
    check: Check | None,
    *,
    new_chat: bool = False,
) -> None:
    """Show ``check`` the listings holding the ``written`` completion, as they now read.

    `new_chat`: the completion is the first of a chat this transaction created,
    which lists it alone (as the PostgreSQL backend, it reads nothing for it).
    """
    if check is None:
        return
    deep = DEEP_RESEARCH_KEY in written.metadata
    check(
        Listings(
            [written] if new_chat else select_completions(conn, user_id, written.chat_id),
            select_deep_research(conn, user_id) if deep else None,
        )
    )


def select_completion(
    conn: sqlite3.Connection, user_id: str, completion_id: str
) -> CompletionRow | None:
    """The user's completion ``completion_id``, if any."""
    row = conn.execute(qmark(sql.SELECT_COMPLETION), (completion_id, user_id)).fetchone()
    return None if row is None else CompletionRow.from_sql(row)


def insert_chat(
    conn: sqlite3.Connection, user_id: str, title: str, chat_type: str, stamp: int
) -> ChatRow:
    """Insert a new, empty chat."""
    chat = ChatRow(str(uuid.uuid4()), user_id, title, chat_type, stamp, stamp)
    conn.execute(qmark(sql.INSERT_CHAT), (chat.id, user_id, title, chat_type, stamp, stamp))
    return chat


def insert_completion(
    conn: sqlite3.Connection,
    user_id: str,
    chat_id: str,
    completion: NewCompletion,
    stamp: int,
) -> CompletionRow:
    """Insert a completion into an existing chat."""
    row = CompletionRow.new(chat_id, completion, stamp)
    conn.execute(qmark(sql.INSERT_COMPLETION), sql.completion_params(row, user_id))
    return row


def delete_owned(
    conn: sqlite3.Connection, table: str, user_id: str, ids: list[str], key: KeyRecord | None
) -> list[str]:
    """Delete the user's rows of ``table`` by id, all or nothing; returns the unknown ids."""
    with transaction(conn):
        found = {
            ident
            for ident in set(ids)
            if conn.execute(
                f"SELECT 1 FROM {table} WHERE id = ? AND user_id = ?", (ident, user_id)
            ).fetchone()
        }
        missing = missing_ids(ids, found)
        if not missing:
            conn.executemany(
                f"DELETE FROM {table} WHERE id = ? AND user_id = ?",
                [(ident, user_id) for ident in ids],
            )
            remember(conn, user_id, key, missing)
    return missing
