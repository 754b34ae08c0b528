"""The HTTP face's call context: what the per-call plumbing asks of a call, answered over HTTP.

The servicer and `_rpc.call_scope` read metadata, send headers, set trailers
and abort through a grpc.aio ``ServicerContext``. `HttpCallContext` answers the
same questions from a Connect request (`connectrpc.request.RequestContext`), so
an HTTP call runs through exactly the code a gRPC call runs through: metadata
are the request's headers, initial metadata become response headers, trailing
metadata the protocol's trailers, and an abort a `ConnectError` that connectrpc
writes in the caller's protocol (Connect error JSON with its HTTP status, or
gRPC-Web trailers).
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Sequence
from typing import Any, NoReturn

import grpc
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.request import RequestContext

from apex_grpc_server._status import PUSHBACK, MetadataPairs

RETRY_AFTER = "retry-after"
"""The standard HTTP retry hint (whole seconds), set beside ``grpc-retry-pushback-ms``."""

_CODES = {
    status: Code[status.name] for status in grpc.StatusCode if status.name in Code.__members__
}
_CODES[grpc.StatusCode.CANCELLED] = Code.CANCELED


def connect_code(status: grpc.StatusCode) -> Code:
    """The Connect code of a gRPC status (the same names; CANCELLED is spelt CANCELED)."""
    return _CODES.get(status, Code.UNKNOWN)


def _header_value(key: str, value: str | bytes) -> str:
    # Binary metadata travel base64-encoded in "-bin" headers, as in gRPC and Connect.
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii").rstrip("=")
    return value


def _metadata_value(key: str, value: str) -> str | bytes:
    if key.endswith("-bin"):
        try:
            return base64.b64decode(value + "=" * (-len(value) % 4))
        except binascii.Error:
            return value.encode()
    return value


class HttpCallContext:
    """A Connect request as the plumbing's call context (`_rpc.call_scope.Context`).

    ``user_id`` is the admitted caller (set by the admission interceptor before
    the body is read).
    """

    __slots__ = ("_metadata", "request", "user_id")

    def __init__(self, request: RequestContext[Any, Any]) -> None:
        self.request = request
        self.user_id = ""
        self._metadata: tuple[tuple[str, str | bytes], ...] = tuple(
            (key, _metadata_value(key, value)) for key, value in request.request_headers.allitems()
        )

    def invocation_metadata(self) -> Sequence[tuple[str, str | bytes]]:
        """The request's headers, names lower-case, "-bin" values decoded (as grpc gives them)."""
        return self._metadata

    async def send_initial_metadata(self, initial_metadata: MetadataPairs) -> None:
        """Response headers: connectrpc sends them with the first message (or the error)."""
        headers = self.request.response_headers
        for key, value in initial_metadata:
            headers.add(key, _header_value(key, value))

    def set_trailing_metadata(self, trailing_metadata: MetadataPairs) -> None:
        """Trailers: Connect unary ``trailer-*`` headers, the end of a stream, gRPC-Web trailers."""
        trailers = self.request.response_trailers
        for key, value in trailing_metadata:
            trailers.add(key, _header_value(key, value))

    async def abort(
        self, code: grpc.StatusCode, details: str = "", trailing_metadata: MetadataPairs = ()
    ) -> NoReturn:
        """End the call with `code` as the caller's protocol spells it (raises ConnectError).

        A retry hint (``grpc-retry-pushback-ms``) is also sent as a ``Retry-After``
        header, which HTTP clients and browsers (it is CORS-exposed) read.
        """
        self.set_trailing_metadata(trailing_metadata)
        for key, value in trailing_metadata:
            if key == PUSHBACK and str(value).isdigit():
                headers = self.request.response_headers
                headers[RETRY_AFTER] = str(math.ceil(int(value) / 1000))
                headers[PUSHBACK] = str(value)
        raise ConnectError(connect_code(code), details)

    def peer(self) -> str:
        """The client's address, as the log line shows it."""
        return f"http:{self.request.client_address or 'unknown'}"
