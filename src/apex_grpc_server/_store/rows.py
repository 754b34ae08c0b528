"""The rows both storage backends hand out, and the pure rules they share."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

SCHEMA_VERSION = 5
"""The newest schema version of both backends (their migrations are numbered alike)."""
DEEP_RESEARCH_KEY = "deep_researcher"
"""The metadata key that marks a stored completion as a deep-research entry."""


CHAT_COLUMNS = "id, user_id, title, chat_type, created_us, updated_us"
COMPLETION_COLUMNS = (
    "id, chat_id, completion_type, created_us, completed_us, user_prompt_text,"
    " completion_text, metadata, error_message"
)
JOB_COLUMNS = "id, status, created_us, updated_us, error, completion_id"
FINAL_STATUSES = ("completed", "failed")
"""A job in one of these has ended; its completion is then complete."""


SELECT_USER_IDS = "SELECT key, value FROM meta WHERE key IN ('user_ids', 'user_id_secret')"
"""The meta rows saying how API keys become user ids in this database (migration 4)."""


def user_id_secret(meta: dict[str, str]) -> bytes | None:
    """The secret user ids are an HMAC with; None: the database keeps the old unsalted ids.

    A database that already held chats or jobs when it was migrated to version 4
    keeps the ids its rows were stored under (``user_ids = sha256-legacy``); a new
    one gets HMAC ids (``hmac-sha256``) with its own random secret.
    """
    if meta.get("user_ids") == "hmac-sha256":
        return bytes.fromhex(meta["user_id_secret"])
    return None


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

    @classmethod
    def new(cls, chat_id: str, completion: NewCompletion, stamp: int) -> CompletionRow:
        """The row a new completion gets in chat ``chat_id`` at ``stamp`` (a fresh id)."""
        return cls(
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


@dataclass(frozen=True, slots=True)
class Listings:
    """The listings a write changes, as they would read after it (see ``_interface.Check``)."""

    chat: list[CompletionRow]
    """The written chat's completions, oldest first (GetStoredChatCompletions)."""
    deep_research: list[CompletionRow] | None
    """The user's deep-research entries (GetCompletionsWithDeepResearcherEntry); None when
    the write added nothing to that listing."""


def default_title(prompt: str, words: int = 8, limit: int = 60) -> str:
    """A chat title from the first words of a prompt."""
    parts = prompt.split()
    title = " ".join(parts[:words])
    if len(title) > limit:
        title = title[: limit - 1].rstrip() + "…"
    elif len(parts) > words:
        title += "…"
    return title or "Untitled chat"


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """A job a runner has claimed: it runs it while ``token`` still holds the lease."""

    id: str
    user_id: str
    request: bytes
    token: str


def merge_patch(metadata: dict[str, Any], patch: dict[str, Any] | None) -> dict[str, Any]:
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


def job_metadata(
    metadata: dict[str, Any], status: str, details: dict[str, Any] | None
) -> dict[str, Any]:
    """A job's completion metadata once the job is in ``status``, with ``details`` merged."""
    entry = dict(metadata.get(DEEP_RESEARCH_KEY) or {})
    entry.update(details or {})
    entry["status"] = status
    return {**metadata, DEEP_RESEARCH_KEY: entry}


def missing_ids(ids: list[str], found: set[str]) -> list[str]:
    """The ids of ``ids`` not in ``found``, in order (what an all-or-nothing delete reports)."""
    return [ident for ident in ids if ident not in found]
