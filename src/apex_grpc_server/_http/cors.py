"""CORS for the HTTP face: only the origins ``--cors-origin`` names may call it from a page.

Without an allowed origin a browser page on another origin cannot call the
server (no ``Access-Control-Allow-Origin`` is ever sent); curl and servers are
not browsers and are not affected. A preflight (``OPTIONS`` with
``Access-Control-Request-Method``) from an allowed origin is answered 204 with
the methods and the request headers asked for; from any other origin 403.
Responses to an allowed origin expose the headers Connect and gRPC-Web clients
read (status, trailers, the request id, the retry hint).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

ANY_ORIGIN = "*"
"""``--cors-origin '*'``: every origin (for a public, key-protected server)."""
EXPOSED = (
    "connect-content-encoding, connect-accept-encoding, grpc-status, grpc-message,"
    " grpc-status-details-bin, grpc-retry-pushback-ms, retry-after, x-request-id,"
    " trailer-x-request-id, trailer-grpc-retry-pushback-ms, x-grpc-test-echo-initial"
)
"""Response headers a page's script may read (Connect-ES and gRPC-Web read these)."""
ALLOWED_METHODS = "POST, GET"
PREFLIGHT_MAX_AGE_S = "7200"
DEFAULT_ALLOWED_HEADERS = (
    "content-type, connect-protocol-version, connect-timeout-ms, authorization,"
    " grpc-timeout, x-grpc-web, x-user-agent, idempotency-key"
)
"""Allowed in a preflight that names no ``Access-Control-Request-Headers``."""


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value)
    return None


class Cors:
    """ASGI middleware adding CORS for `origins` around `app`."""

    def __init__(self, app: App, origins: tuple[str, ...]) -> None:
        self.app = app
        self.any_origin = ANY_ORIGIN in origins
        self.origins = frozenset(o.encode() for o in origins if o != ANY_ORIGIN)

    def allowed(self, origin: bytes) -> bool:
        """Whether a page from `origin` may call the server."""
        return self.any_origin or origin in self.origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer a preflight, or pass the request on with CORS headers added to its response."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        origin = _header(scope, b"origin")
        if origin is None:
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS" and _header(scope, b"access-control-request-method"):
            await self._preflight(scope, origin, send)
            return
        if not self.allowed(origin):
            await self.app(scope, receive, send)  # the browser keeps the answer from the page
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", ()),
                    (b"access-control-allow-origin", origin),
                    (b"access-control-expose-headers", EXPOSED.encode()),
                    (b"vary", b"Origin"),
                ]
            await send(message)

        await self.app(scope, receive, send_with_cors)

    async def _preflight(self, scope: Scope, origin: bytes, send: Send) -> None:
        if not self.allowed(origin):
            await _empty(send, 403, [(b"vary", b"Origin")])
            return
        asked = _header(scope, b"access-control-request-headers")
        await _empty(
            send,
            204,
            [
                (b"access-control-allow-origin", origin),
                (b"access-control-allow-methods", ALLOWED_METHODS.encode()),
                (b"access-control-allow-headers", asked or DEFAULT_ALLOWED_HEADERS.encode()),
                (b"access-control-max-age", PREFLIGHT_MAX_AGE_S.encode()),
                (b"vary", b"Origin"),
            ],
        )


async def _empty(send: Send, status: int, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"", "more_body": False})
