"""API-key checking (constant time) and the per-key user id.

A user id is an HMAC-SHA256 of the key with the database's secret (created
once by a schema migration, shared by every replica of a fleet): who sees an
id cannot test guesses of the key without the secret. Databases that held
rows before that migration keep the old unsalted ids (secret None), so their
users keep their chats.
"""

from __future__ import annotations

import hashlib
import hmac

import grpc

from apex_grpc_server._status import RpcAbort

MISSING = "missing authorization metadata: send 'authorization: Bearer <api key>'"
MALFORMED = "malformed authorization metadata: expected 'Bearer <api key>'"
INVALID = "invalid API key"


def user_id_for_key(key: str, secret: bytes | None) -> str:
    """A stable, non-reversible user id for an API key (the key itself is never stored).

    With ``secret``: an HMAC, not derivable from the key alone. None: the old
    unsalted hash, for databases whose rows were stored under it.
    """
    data = b"apex-grpc user\x00" + key.encode("utf-8")
    if secret is None:
        return hashlib.sha256(data).hexdigest()[:32]
    return hmac.new(secret, data, hashlib.sha256).hexdigest()[:32]


class Authenticator:
    """Checks ``authorization: Bearer <key>`` against the configured keys."""

    def __init__(
        self, keys: frozenset[str], *, secret: bytes | None, allow_any_key: bool = False
    ) -> None:
        self._keys = tuple(key.encode("utf-8") for key in sorted(keys))
        self._allow_any_key = allow_any_key
        self._secret = secret

    def authenticate(self, authorization: str | bytes | None) -> str:
        """Return the caller's user id, or raise UNAUTHENTICATED."""
        if authorization is None:
            raise RpcAbort(grpc.StatusCode.UNAUTHENTICATED, MISSING)
        if isinstance(authorization, bytes):  # pragma: no cover - grpc gives str for ASCII keys
            authorization = authorization.decode("utf-8", "replace")
        scheme, _, key = authorization.strip().partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise RpcAbort(grpc.StatusCode.UNAUTHENTICATED, MALFORMED)
        if not self._allow_any_key:
            candidate = key.encode("utf-8")
            matched = False
            for known in self._keys:  # every key is compared: no early exit
                matched |= hmac.compare_digest(candidate, known)
            if not matched:
                raise RpcAbort(grpc.StatusCode.UNAUTHENTICATED, INVALID)
        return user_id_for_key(key, self._secret)
