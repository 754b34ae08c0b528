"""What the service layer may ask of storage: the one interface both backends implement.

``Storage.chats``, ``.completions`` and ``.jobs`` are awaited by the service
(``_rpc/servicer.py``) and the deep-research runner (``_research/jobs.py``), which
never know whether SQLite (one file, one server) or PostgreSQL (a fleet of
replicas) answers. Every read and write is scoped by the caller's user id; a
row of another user is indistinguishable from a missing one. Every write is
one transaction, committed before the call returns (so before the RPC
answers). A write given a ``key`` (``_store.idempotency_keys.KeyRecord``) stores it in
the same transaction once the write succeeded, and raises ``KeyTaken``
(the write undone) when another write stored that key first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from apex_grpc_server._store.idempotency_keys import KeyRecord, Remembered
from apex_grpc_server._store.rows import (
    ChatRow,
    ClaimedJob,
    CompletionRow,
    JobRow,
    Listings,
    NewCompletion,
)

DEFAULT_WAIT_S = 2.0
"""``ServerConfig.store_wait_s``'s default: a call refused by a busy or unreachable database
hears so in seconds (UNAVAILABLE, or RESOURCE_EXHAUSTED with a retry hint; clients retry
both), and a restart of PostgreSQL (well under a second) fits in one wait."""


class StoreUnavailable(Exception):
    """The database cannot be reached now; the operation did nothing, and a retry may succeed.

    The service answers it UNAVAILABLE (the client retries that), and it never
    holds a password.
    """


class ConnectionLost(StoreUnavailable):
    """The database connection broke during the operation: a write may or may not have committed.

    A read, or a write whose idempotency key makes a repeat safe, is run once
    more by the service on a fresh connection; an unkeyed write is not.
    """


class StoreBusy(StoreUnavailable):
    """The database is reachable, but no connection (or a lock) was free for the whole wait.

    Answered RESOURCE_EXHAUSTED with ``grpc-retry-pushback-ms`` of ``retry_after_ms``.
    """

    def __init__(self, message: str, retry_after_ms: int) -> None:
        super().__init__(message)
        self.retry_after_ms = retry_after_ms


Check = Callable[[Listings], None]
"""Sees the listings a write changes as the write would leave them; raising undoes the write.

Every write that stores a completion's text or metadata takes one, so that nothing is stored
that a listing could no longer send back.
"""


class ChatStore(Protocol):
    """Chats and the completions they hold."""

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
        """A new chat with its first completion, atomically."""
        ...

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
        ...

    async def of_user(self, user_id: str, chat_type: str) -> list[ChatRow]:
        """The user's chats (of one type, if given), most recently updated first."""
        ...

    async def get(self, user_id: str, chat_id: str) -> ChatRow | None:
        """One of the user's chats."""
        ...

    async def completions(self, user_id: str, chat_id: str) -> list[CompletionRow] | None:
        """The completions of one of the user's chats, oldest first; None if no such chat."""
        ...

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
        ...

    async def delete(
        self, user_id: str, chat_ids: list[str], *, key: KeyRecord | None = None
    ) -> list[str]:
        """Delete chats with their completions, all or nothing; returns the unknown ids."""
        ...

    async def search(self, user_id: str, text: str, limit: int = 100) -> list[str]:
        """Ids of the user's chats whose prompts or answers hold every word as a prefix."""
        ...


class CompletionStore(Protocol):
    """Completions addressed by id."""

    async def get(self, user_id: str, completion_id: str) -> CompletionRow | None:
        """One of the user's completions."""
        ...

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
        """Change a completion with its row locked; metadata merges key by key."""
        ...

    async def delete(
        self, user_id: str, completion_ids: list[str], *, key: KeyRecord | None = None
    ) -> list[str]:
        """Delete completions, all or nothing; returns the unknown ids."""
        ...

    async def deep_research(self, user_id: str) -> list[CompletionRow]:
        """The user's completions with deep-research metadata, newest first."""
        ...


class JobStore(Protocol):
    """Deep-research jobs, their leases and result chunks.

    A runner ``claim``s jobs (pending ones, and running ones whose lease ran
    out); each claim gets a fresh token, and every later write of that run
    (``renew``, ``add_chunk``, ``finish``) happens only while the job's
    lease is still held by that token, returning False once it is not.
    """

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
        ...

    async def get(self, user_id: str, job_id: str) -> JobRow | None:
        """One of the user's jobs with its result chunks."""
        ...

    async def claim(self, owner: str, lease_s: float, limit: int) -> list[ClaimedJob]:
        """Take up to ``limit`` claimable jobs, oldest first, for ``lease_s`` seconds.

        A job taken over loses the chunks of its earlier run in the same
        transaction: it restarts from scratch.
        """
        ...

    async def renew(self, job_id: str, token: str, lease_s: float) -> bool:
        """Extend the lease by ``lease_s`` from now; False if ``token`` no longer holds it."""
        ...

    async def add_chunk(self, job_id: str, token: str, seq_id: int, chunk: str) -> bool:
        """Append one result chunk; False (nothing written) if ``token`` lost the lease."""
        ...

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
        """Move a claimed job to ``status``, mirrored in its completion's metadata.

        "completed" and "failed" end the job and its completion (``text`` the
        answer, ``error`` the error message, ``details`` merged into the
        deep-research metadata); ``check`` sees the listings holding that
        completion as they would read. False (nothing written) if ``token`` lost the lease.
        """
        ...

    async def release(self, tokens: list[str]) -> int:
        """End these leases now so that any runner may take the jobs over; returns how many."""
        ...


class KeyStore(Protocol):
    """Idempotency keys of writes (stored by the writes themselves)."""

    async def get(self, user_id: str, key: str) -> Remembered | None:
        """The user's live (unexpired) record of ``key``, if any."""
        ...


class Storage(Protocol):
    """A database of chats, completions and jobs (SQLite or PostgreSQL)."""

    @property
    def chats(self) -> ChatStore:
        """Chats and the completions in them."""
        ...

    @property
    def completions(self) -> CompletionStore:
        """Completions by id."""
        ...

    @property
    def jobs(self) -> JobStore:
        """Deep-research jobs and their leases."""
        ...

    @property
    def user_id_secret(self) -> bytes | None:
        """The secret API keys' user ids are an HMAC with (None: the old unsalted ids)."""
        ...

    @property
    def keys(self) -> KeyStore:
        """Idempotency keys of writes."""
        ...

    async def ping(self, timeout_s: float) -> None:
        """Raise StoreUnavailable unless the database answers a trivial query within `timeout_s`."""
        ...

    async def close(self) -> None:
        """Close the database (its connections); committed writes stay."""
        ...
