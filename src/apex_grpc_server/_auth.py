"""API-key checking (constant time) and the per-key user id."""

from __future__ import annotations

import hashlib
import hmac

import grpc

from apex_grpc_server._status import RpcAbort

MISSING = "missing authorization metadata: send 'authorization: Bearer <api key>'"
MALFORMED = "malformed authorization metadata: expected 'Bearer <api key>'"
INVALID = "invalid API key"


def user_id_for_key(key: str) -> str:
    """A stable, non-reversible user id for an API key (the key itself is never stored)."""
    return hashlib.sha256(b"apex-grpc user\x00" + key.encode("utf-8")).hexdigest()[:32]


class Authenticator:
    """Checks ``authorization: Bearer <key>`` against the configured keys."""

    def __init__(self, keys: frozenset[str], *, allow_any_key: bool = False) -> None:
        self._keys = tuple(key.encode("utf-8") for key in sorted(keys))
        self._allow_any_key = allow_any_key

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
        return user_id_for_key(key)
