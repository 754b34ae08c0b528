"""Idempotency keys: what a keyed write stores beside its rows, and the rule for a repeat.

A write RPC may carry ``idempotency-key`` metadata (the same key on every
retry of one logical call). The service looks the key up first
(``Storage.keys.get``) and replays the stored answer of a repeat; a first
attempt hands its ``KeyRecord`` to the store's write, which stores the key,
the request's fingerprint and the serialized answer (``KeyRecord.respond``
run on the write's result) in the same transaction as the rows. When two
first attempts race, the loser's insert of the key finds the winner's: its
whole write is rolled back and ``KeyTaken`` carries the winner's record.
Records expire after ``KEY_TTL_S``: a lookup ignores older ones, an insert
replaces them, and ``sweep`` deletes them now and then.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from apex_grpc_server._store.rows import now_us

KEY_TTL_S = 24 * 3600
"""How long a write's idempotency key is remembered (a repeat after that is a new write)."""
SWEEP_EVERY_S = 60.0
"""At most one delete of expired keys per store this often (lookups ignore them anyway)."""


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """A keyed write's key, its RPC, its request's fingerprint, and how to serialize its answer."""

    key: str
    method: str
    fingerprint: str
    respond: Callable[[Any], bytes]
    """The answer to store, from the write's result; runs inside the write's transaction."""


@dataclass(frozen=True, slots=True)
class Remembered:
    """A stored key's first write: its RPC, request fingerprint and serialized answer."""

    method: str
    fingerprint: str
    response: bytes


class KeyTaken(Exception):
    """Another write of the same user stored this key first; this write was undone."""

    def __init__(self, remembered: Remembered) -> None:
        super().__init__("idempotency key already used")
        self.remembered = remembered


def cutoff_us() -> int:
    """Keys stored before this instant have expired."""
    return now_us() - KEY_TTL_S * 1_000_000


SELECT_KEY = (
    "SELECT method, fingerprint, response FROM idempotency_keys"
    " WHERE user_id = %s AND key = %s AND created_us >= %s"
)
# An expired record of the same key is replaced; a live one stays and the insert counts 0 rows.
INSERT_KEY = (
    "INSERT INTO idempotency_keys(user_id, key, method, fingerprint, response, created_us)"
    " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (user_id, key) DO UPDATE SET"
    " method = excluded.method, fingerprint = excluded.fingerprint,"
    " response = excluded.response, created_us = excluded.created_us"
    " WHERE idempotency_keys.created_us < %s"
)
SWEEP_KEYS = "DELETE FROM idempotency_keys WHERE created_us < %s"


def insert_params(user_id: str, record: KeyRecord, result: Any) -> tuple[Any, ...]:
    """The parameters of INSERT_KEY for ``record`` of a write that returned ``result``."""
    stamp = now_us()
    return (
        user_id,
        record.key,
        record.method,
        record.fingerprint,
        record.respond(result),
        stamp,
        stamp - KEY_TTL_S * 1_000_000,
    )


def remembered(row: tuple[Any, ...] | None) -> Remembered | None:
    """A SELECT_KEY row as a ``Remembered``."""
    return None if row is None else Remembered(row[0], row[1], bytes(row[2]))
