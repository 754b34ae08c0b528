"""The one exception request handlers raise to end a call with a status."""

from __future__ import annotations

from collections.abc import Sequence

import grpc

MetadataPairs = Sequence[tuple[str, str | bytes]]
PUSHBACK = "grpc-retry-pushback-ms"
"""Trailing metadata telling a client when to retry, in ms (gRFC A6)."""
SHOWN_CHARS = 40
"""Characters of a caller's value an error message repeats (then "..." and its length)."""
MAX_DETAILS_CHARS = 1024
"""The longest status message sent: grpc sends it as trailing metadata, which is limited
(8-16 KB); a longer one would reach the client as RESOURCE_EXHAUSTED instead."""


def shown(value: object) -> str:
    """A caller's value as an error message repeats it: its repr, cut to a short prefix.

    ``shown("x" * 100000)`` is ``'xxxx...' (100000 characters)``: enough to recognise it,
    never enough to make the message itself a problem.
    """
    if isinstance(value, str):
        if len(value) <= SHOWN_CHARS:
            return repr(value)
        return f"{value[:SHOWN_CHARS]!r}... ({len(value)} characters)"
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else f"{text[:SHOWN_CHARS]}... ({len(text)} characters)"


def _capped(details: str) -> str:
    if len(details) <= MAX_DETAILS_CHARS:
        return details
    return f"{details[:MAX_DETAILS_CHARS]}... ({len(details)} characters)"


class RpcAbort(Exception):
    """End the current call with ``code`` and ``details`` (and extra trailing metadata)."""

    def __init__(
        self, code: grpc.StatusCode, details: str, trailing_metadata: MetadataPairs = ()
    ) -> None:
        details = _capped(details)
        super().__init__(details)
        self.code = code
        self.details = details
        self.trailing_metadata = tuple(trailing_metadata)

    def __repr__(self) -> str:
        return f"RpcAbort({self.code.name}, {self.details!r})"


def retry_later(code: grpc.StatusCode, what: str, pushback_ms: int) -> RpcAbort:
    """``code`` for a call refused for now: ``what; retry in N ms``, and the PUSHBACK trailer
    a client waits by (UNAVAILABLE or RESOURCE_EXHAUSTED; apex-grpc's retry honours it)."""
    return RpcAbort(code, f"{what}; retry in {pushback_ms} ms", ((PUSHBACK, str(pushback_ms)),))


def invalid_argument(details: str) -> RpcAbort:
    """INVALID_ARGUMENT with a message that names the field."""
    return RpcAbort(grpc.StatusCode.INVALID_ARGUMENT, details)


def not_found(kind: str, ident: str) -> RpcAbort:
    """NOT_FOUND for an unknown (or someone else's) id, e.g. ``chat 'abc' not found``."""
    return RpcAbort(grpc.StatusCode.NOT_FOUND, f"{kind} {ident!r} not found")
