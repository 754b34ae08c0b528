"""Idempotent writes: the ``idempotency-key`` metadata, checked, and a repeat answered once.

Every write RPC may carry ``idempotency-key: <key>`` (1-128 printable ASCII
characters, the same on each retry of one logical call). ``once`` looks the
key up before any work (the engine is never asked twice), runs the write
with a ``KeyRecord`` the store keeps in the write's transaction, and answers
a repeat, or the loser of two racing first attempts, with the first answer
(trailing metadata ``idempotent-replayed: true``). A key reused with another
RPC or another request is INVALID_ARGUMENT, as Stripe's API does. Calls
without the key run as they always did. Keys expire after
``_store.idempotency_keys.KEY_TTL_S`` (24 h).
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import TypeVar

from google.protobuf.message import Message

from apex_grpc_server._rpc.call_scope import CallContext
from apex_grpc_server._status import invalid_argument, shown
from apex_grpc_server._store import ConnectionLost, Storage, StoreUnavailable
from apex_grpc_server._store.idempotency_keys import KeyRecord, KeyTaken, Remembered

HEADER = "idempotency-key"
"""The request metadata holding a write's idempotency key."""
REPLAYED = "idempotent-replayed"
"""Trailing metadata ``true`` on an answer replayed from an earlier attempt."""
MAX_KEY_CHARS = 128

T = TypeVar("T")
R = TypeVar("R", bound=Message)


def key_of(metadata: dict[str, str | bytes]) -> str | None:
    """The call's idempotency key, or None; a malformed one is INVALID_ARGUMENT."""
    value = metadata.get(HEADER)
    if value is None:
        return None
    if (
        isinstance(value, bytes)
        or not 1 <= len(value) <= MAX_KEY_CHARS
        or not all(" " <= char <= "~" for char in value)
    ):
        raise invalid_argument(
            f"{HEADER}: must be 1 to {MAX_KEY_CHARS} printable ASCII characters, got {shown(value)}"
        )
    return value


def fingerprint(request: Message) -> str:
    """The sha256 of a request's bytes: a repeat must send the same request."""
    return hashlib.sha256(request.SerializeToString(deterministic=True)).hexdigest()


async def once(
    store: Storage,
    call: CallContext,
    request: Message,
    reply_type: type[R],
    write: Callable[[KeyRecord | None], Awaitable[T]],
    reply: Callable[[T], R],
) -> R:
    """``reply(await write(key))``, done once per idempotency key of the caller.

    ``write`` does the whole call's work (engine included) and hands the key
    to its one store write; ``reply`` builds the answer from the write's result.

    A write whose database connection broke (ConnectionLost) may have
    committed: with a key, the call may run again (the key is looked up first,
    so a committed write replays); without one, it must not, and the call ends
    UNAVAILABLE as a plain StoreUnavailable (the caller decides, knowing its
    write may have happened).
    """
    key = key_of(call.metadata)
    if key is None:
        try:
            return reply(await write(None))
        except ConnectionLost as lost:
            raise StoreUnavailable(
                f"{lost}: this write may have been stored; send an {HEADER} to retry it safely"
            ) from None
    method = reply_type.DESCRIPTOR.name.removesuffix("Response")
    digest = fingerprint(request)
    first = await store.keys.get(call.user_id, key)
    if first is None:
        record = KeyRecord(key, method, digest, lambda result: reply(result).SerializeToString())
        try:
            return reply(await write(record))
        except KeyTaken as taken:  # a concurrent first attempt stored it; ours was undone
            first = taken.remembered
    return _replay(call, first, method, digest, reply_type)


def _replay(
    call: CallContext, first: Remembered, method: str, digest: str, reply_type: type[R]
) -> R:
    if first.method != method:
        raise invalid_argument(
            f"{HEADER}: this key was used for {first.method}, not {method}:"
            " send a new key for a new request"
        )
    if first.fingerprint != digest:
        raise invalid_argument(
            f"{HEADER}: this key was used with a different {method} request:"
            " send a new key for a new request, the same request to retry"
        )
    call.trailing.append((REPLAYED, "true"))
    return reply_type.FromString(first.response)
