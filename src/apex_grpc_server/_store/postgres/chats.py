"""Chats and their stored completions, in PostgreSQL.

The same operations as SQLite's (``_store.sqlite._chats``), safe with many
replicas writing at once: a chat's title/type change is one UPDATE, and a
completion's edit (a read-modify-write of its metadata) locks the row with
SELECT ... FOR UPDATE, so concurrent edits queue instead of losing updates.
A write into a chat holds the chat's row while it checks the chat's listing
(``lock_chat_of``), taking it before any completion's row.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from apex_grpc_server._store import sql
from apex_grpc_server._store.idempotency_keys import KeyRecord
from apex_grpc_server._store.interface import Check
from apex_grpc_server._store.postgres.idempotency_keys import remember
from apex_grpc_server._store.postgres.pool import Cursor, Database
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
from apex_grpc_server._store.words import query_words


class PostgresChats:
    """The ``chats`` table, with the completions each chat holds."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(
        self,
        user_id: str,
        title: str,
        chat_type: str,
        completion: NewCompletion,
        *,
        check: Check | None = None,
        key: KeyRecord | None = None,
    ) -> tuple[ChatRow, CompletionRow]:
        """A new chat with its first completion, atomically.

        Both rows go in one statement. Without a key to store or a
        deep-research listing to lock and check, that statement is the whole
        write, its own transaction: one round trip, no BEGIN/COMMIT (the check
        sees the new chat alone, so it runs first, and a refusal writes nothing).
        """
        stamp = now_us()
        chat = ChatRow(str(uuid.uuid4()), user_id, title, chat_type, stamp, stamp)
        row = CompletionRow.new(chat.id, completion, stamp)
        params = chat_params(chat) + sql.completion_params(row, user_id)
        if key is None and DEEP_RESEARCH_KEY not in row.metadata:
            if check is not None:
                check(Listings([row], None))
            async with self.db.read() as cur:
                await cur.execute(INSERT_CHAT_WITH_COMPLETION, params)
            return chat, row
        async with self.db.transaction() as cur:
            await cur.execute(INSERT_CHAT_WITH_COMPLETION, params)
            await run_check(cur, user_id, row, check, new_chat=True)
            await remember(cur, user_id, key, (chat, row))
        return chat, row

    async def add_completion(
        self,
        user_id: str,
        chat_id: str,
        completion: NewCompletion,
        *,
        check: Check | None = None,
        key: KeyRecord | None = None,
    ) -> CompletionRow | None:
        """Add a completion to one of the user's chats; None if there is no such chat."""
        stamp = now_us()
        async with self.db.transaction() as cur:
            await cur.execute(sql.TOUCH_CHAT, (stamp, chat_id, user_id))
            if not await cur.affected():
                return None
            row = await insert_completion(cur, user_id, chat_id, completion, stamp)
            await run_check(cur, user_id, row, check)
            await remember(cur, user_id, key, row)
            return row

    async def of_user(self, user_id: str, chat_type: str) -> list[ChatRow]:
        """The user's chats (of one type, if given), most recently updated first."""
        sql = f"SELECT {CHAT_COLUMNS} FROM chats WHERE user_id = %s"
        params: tuple[str, ...] = (user_id,)
        if chat_type:
            sql += " AND chat_type = %s"
            params += (chat_type,)
        sql += " ORDER BY updated_us DESC, created_us DESC, id DESC"
        async with self.db.read() as cur:
            await cur.execute(sql, params)
            return [ChatRow.from_sql(row) for row in await cur.fetchall()]

    async def get(self, user_id: str, chat_id: str) -> ChatRow | None:
        """One of the user's chats."""
        async with self.db.read() as cur:
            return await select_chat(cur, user_id, chat_id)

    async def completions(self, user_id: str, chat_id: str) -> list[CompletionRow] | None:
        """The completions of one of the user's chats, oldest first; None if no such chat."""
        async with self.db.transaction() as cur:
            if await select_chat(cur, user_id, chat_id) is None:
                return None
            return await select_completions(cur, user_id, chat_id)

    async def update(
        self,
        user_id: str,
        chat_id: str,
        title: str | None,
        chat_type: str | None,
        *,
        key: KeyRecord | None = None,
    ) -> ChatRow | None:
        """Change a chat's title and/or type in one statement; None if there is no such chat."""
        async with self.db.transaction() as cur:
            await cur.execute(
                "UPDATE chats SET title = coalesce(%s, title), chat_type = coalesce(%s, chat_type),"
                f" updated_us = %s WHERE id = %s AND user_id = %s RETURNING {CHAT_COLUMNS}",
                (title, chat_type, now_us(), chat_id, user_id),
            )
            row = await cur.fetchone()
            if row is None:
                return None
            chat = ChatRow.from_sql(row)
            await remember(cur, user_id, key, chat)
        return chat

    async def delete(
        self, user_id: str, chat_ids: list[str], *, key: KeyRecord | None = None
    ) -> list[str]:
        """Delete chats with their completions, all or nothing; returns the unknown ids."""
        return await delete_owned(self.db, "chats", user_id, chat_ids, key)

    async def search(self, user_id: str, text: str, limit: int = 100) -> list[str]:
        """Ids of the user's chats whose prompts or answers contain every word, best first.

        Words match as prefixes ("cosmo" finds "cosmonaut"), like SQLite's FTS5
        query; chats are ranked by their best-matching completion.
        """
        words = query_words(text)
        if not words:
            return []
        # query_words yields runs of letters, digits and underscores: no tsquery syntax.
        query = " & ".join(f"'{word}':*" for word in words)
        async with self.db.read() as cur:
            await cur.execute(
                "SELECT chat_id FROM completions, to_tsquery('apex_search', %s) AS q"
                " WHERE user_id = %s AND search @@ q GROUP BY chat_id"
                " ORDER BY max(ts_rank(search, q)) DESC, max(created_us) DESC LIMIT %s",
                (query, user_id, limit),
            )
            return [row[0] for row in await cur.fetchall()]


class PostgresCompletions:
    """The ``completions`` table, addressed by completion id."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, user_id: str, completion_id: str) -> CompletionRow | None:
        """One of the user's completions."""
        async with self.db.read() as cur:
            return await select_completion(cur, user_id, completion_id)

    async def update(
        self,
        user_id: str,
        completion_id: str,
        *,
        text: str | None = None,
        prompt: str | None = None,
        metadata_patch: dict[str, Any] | None = None,
        check: Check | None = None,
        key: KeyRecord | None = None,
    ) -> CompletionRow | None:
        """Change a completion, its row locked; metadata merges key by key (null removes).

        `check` sees the listings as they would be; an exception it raises undoes the change.
        """
        async with self.db.transaction() as cur:
            await lock_chat_of(cur, user_id, completion_id)
            current = await select_completion(cur, user_id, completion_id, lock=True)
            if current is None:
                return None
            metadata = merge_patch(current.metadata, metadata_patch)
            await cur.execute(
                sql.EDIT_COMPLETION, sql.edit_params(text, prompt, metadata, completion_id, user_id)
            )
            await cur.execute(sql.TOUCH_CHAT_OF_COMPLETION, (now_us(), current.chat_id))
            row = await select_completion(cur, user_id, completion_id)
            assert row is not None  # updated just now, in this transaction
            await run_check(cur, user_id, row, check)
            await remember(cur, user_id, key, row)
            return row

    async def delete(
        self, user_id: str, completion_ids: list[str], *, key: KeyRecord | None = None
    ) -> list[str]:
        """Delete completions, all or nothing; returns the unknown ids."""
        return await delete_owned(self.db, "completions", user_id, completion_ids, key)

    async def deep_research(self, user_id: str) -> list[CompletionRow]:
        """The user's completions with deep-research metadata, newest first."""
        async with self.db.read() as cur:
            return await select_deep_research(cur, user_id)


# Statements shared by several operations (they run inside the caller's transaction).


async def select_chat(cur: Cursor, user_id: str, chat_id: str) -> ChatRow | None:
    """The user's chat ``chat_id``, if any."""
    await cur.execute(sql.SELECT_CHAT, (chat_id, user_id))
    row = await cur.fetchone()
    return None if row is None else ChatRow.from_sql(row)


async def select_completions(cur: Cursor, user_id: str, chat_id: str) -> list[CompletionRow]:
    """The completions of a chat, oldest first."""
    await cur.execute(sql.SELECT_COMPLETIONS, (chat_id, user_id))
    return [CompletionRow.from_sql(row) for row in await cur.fetchall()]


async def select_deep_research(cur: Cursor, user_id: str) -> list[CompletionRow]:
    """The user's deep-research entries, newest first."""
    await cur.execute(sql.SELECT_DEEP_RESEARCH, (user_id,))
    return [CompletionRow.from_sql(row) for row in await cur.fetchall()]


async def run_check(
    cur: Cursor,
    user_id: str,
    written: CompletionRow,
    check: Check | None,
    *,
    new_chat: bool = False,
) -> None:
    """Show ``check`` the listings holding the ``written`` completion, as they now read.

    `new_chat`: the completion is the first of a chat this transaction created,
    which lists it alone (no query: a round trip costs a write about 0.1 ms).

    A deep-research entry first waits for the user's other writes of one (see
    ``lock_deep_research``), so that the listing it checks holds all of theirs.
    """
    if check is None:
        return
    deep = DEEP_RESEARCH_KEY in written.metadata
    if deep:
        await lock_deep_research(cur, user_id)
    check(
        Listings(
            [written] if new_chat else await select_completions(cur, user_id, written.chat_id),
            await select_deep_research(cur, user_id) if deep else None,
        )
    )


async def lock_chat_of(cur: Cursor, user_id: str, completion_id: str) -> None:
    """Lock the row of the chat holding the user's completion until the transaction ends.

    Every write that changes a chat's listing holds this lock while it checks the
    listing (``add_completion``'s UPDATE of the chat takes the same, FOR NO KEY
    UPDATE), so two writes into one chat on two replicas queue: the second
    checks a listing holding the first's completion. Writes take the chat's row
    before its completions' rows (as a chat's deletion does, its completions
    going with it) and before ``lock_deep_research``, so they never deadlock.
    """
    await cur.execute(
        "SELECT 1 FROM chats WHERE id = (SELECT chat_id FROM completions"
        " WHERE id = %s AND user_id = %s) FOR NO KEY UPDATE",
        (completion_id, user_id),
    )


async def lock_deep_research(cur: Cursor, user_id: str) -> None:
    """Hold the user's deep-research listing until the transaction ends.

    That listing spans chats, so no row lock covers it: two writes of entries in
    different chats (on two replicas) would each check it in a snapshot without
    the other's entry, both pass and together push it past the limit. This
    transaction-scoped advisory lock queues them; under READ COMMITTED the
    statements after it see what the write before it committed. (SQLite needs
    none: it has one writer at a time.)
    """
    await cur.execute("SELECT pg_advisory_xact_lock(%s)", (deep_research_lock_key(user_id),))


def deep_research_lock_key(user_id: str) -> int:
    """The advisory lock key (a signed 64-bit int) of one user's deep-research listing."""
    digest = hashlib.sha256(f"apex-grpc deep-research listing {user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def select_completion(
    cur: Cursor, user_id: str, completion_id: str, *, lock: bool = False
) -> CompletionRow | None:
    """The user's completion ``completion_id``, if any (row-locked until commit with ``lock``)."""
    await cur.execute(
        sql.SELECT_COMPLETION + (" FOR UPDATE" if lock else ""), (completion_id, user_id)
    )
    row = await cur.fetchone()
    return None if row is None else CompletionRow.from_sql(row)


INSERT_CHAT_WITH_COMPLETION = f"WITH chat AS ({sql.INSERT_CHAT}) {sql.INSERT_COMPLETION}"
"""A new chat and its first completion in one statement (the completion's chat
is checked at the statement's end, so it finds the chat inserted beside it)."""


def chat_params(chat: ChatRow) -> tuple[str | int, ...]:
    """The parameters of INSERT_CHAT for a new ``chat``."""
    return (chat.id, chat.user_id, chat.title, chat.chat_type, chat.created_us, chat.updated_us)


async def insert_chat(cur: Cursor, user_id: str, title: str, chat_type: str, stamp: int) -> ChatRow:
    """Insert a new, empty chat."""
    chat = ChatRow(str(uuid.uuid4()), user_id, title, chat_type, stamp, stamp)
    await cur.execute(sql.INSERT_CHAT, chat_params(chat))
    return chat


async def insert_completion(
    cur: Cursor, user_id: str, chat_id: str, completion: NewCompletion, stamp: int
) -> CompletionRow:
    """Insert a completion into an existing chat."""
    row = CompletionRow.new(chat_id, completion, stamp)
    await cur.execute(sql.INSERT_COMPLETION, sql.completion_params(row, user_id))
    return row


async def delete_owned(
    db: Database, table: str, user_id: str, ids: list[str], key: KeyRecord | None
) -> list[str]:
    """Delete the user's rows of ``table`` by id, all or nothing; returns the unknown ids."""
    async with db.transaction() as cur:
        await cur.execute(
            f"SELECT id FROM {table} WHERE id = ANY(%s) AND user_id = %s FOR UPDATE",
            (ids, user_id),
        )
        missing = missing_ids(ids, {row[0] for row in await cur.fetchall()})
        if not missing:
            await cur.execute(
                f"DELETE FROM {table} WHERE id = ANY(%s) AND user_id = %s", (ids, user_id)
            )
            await remember(cur, user_id, key, missing)
    return missing
