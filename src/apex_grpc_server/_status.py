"""The one exception request handlers raise to end a call with a status."""

from __future__ import annotations

from collections.abc import Sequence

import grpc

MetadataPairs = Sequence[tuple[str, str | bytes]]
PUSHBACK = "grpc-retry-pushback-ms"
"""Trailing metadata telling a client when to retry, in ms (gRFC A6)."""


class RpcAbort(Exception):
    """End the current call with ``code`` and ``details`` (and extra trailing metadata)."""

    def __init__(
        self, code: grpc.StatusCode, details: str, trailing_metadata: MetadataPairs = ()
    ) -> None:
        super().__init__(details)
        self.code = code
        self.details = details
        self.trailing_metadata = tuple(trailing_metadata)

    def __repr__(self) -> str:
        return f"RpcAbort({self.code.name}, {self.details!r})"


def invalid_argument(details: str) -> RpcAbort:
    """INVALID_ARGUMENT with a message that names the field."""
    return RpcAbort(grpc.StatusCode.INVALID_ARGUMENT, details)


def not_found(kind: str, ident: str) -> RpcAbort:
    """NOT_FOUND for an unknown (or someone else's) id, e.g. ``chat 'abc' not found``."""
    return RpcAbort(grpc.StatusCode.NOT_FOUND, f"{kind} {ident!r} not found")
