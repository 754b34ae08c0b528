"""Idempotency keys in PostgreSQL (see ``_store.idempotency_keys``): looked up, stored, swept.

Two replicas' first attempts of one key race on the primary key
(user_id, key): the second INSERT ... ON CONFLICT waits for the first's
transaction, then inserts nothing; that write raises KeyTaken with the
winner's record, and its transaction (the whole write) is rolled back.
"""

from __future__ import annotations

import time
from typing import Any

from apex_grpc_server._store import idempotency_keys as keys
from apex_grpc_server._store.postgres.pool import Database, PipelinedCursor


class PostgresKeys:
    """The ``idempotency_keys`` table."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.next_sweep = 0.0

    async def get(self, user_id: str, key: str) -> keys.Remembered | None:
        """The user's live record of ``key``, if any (expired records are deleted now and then)."""
        async with self.db.read() as cur:
            if time.monotonic() >= self.next_sweep:
                self.next_sweep = time.monotonic() + keys.SWEEP_EVERY_S
                await cur.execute(keys.SWEEP_KEYS, (keys.cutoff_us(),))
            await cur.execute(keys.SELECT_KEY, (user_id, key, keys.cutoff_us()))
            return keys.remembered(await cur.fetchone())


async def remember(
    cur: PipelinedCursor, user_id: str, record: keys.KeyRecord | None, result: Any
) -> None:
    """Store ``record`` of a write that returned ``result``, inside the write's transaction.

    The INSERT's row count is the one result it waits for: the write's own
    statements before it leave in the same flight (see ``Database.transaction``).
    Raises KeyTaken (the caller's transaction then rolls the write back) when
    the key was stored first by another write.
    """
    if record is None:
        return
    await cur.execute(keys.INSERT_KEY, keys.insert_params(user_id, record, result))
    if await cur.affected():
        return
    await cur.execute(keys.SELECT_KEY, (user_id, record.key, keys.cutoff_us()))
    found = keys.remembered(await cur.fetchone())
    assert found is not None  # the insert found a live record of this key
    raise keys.KeyTaken(found)
