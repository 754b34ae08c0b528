"""Read what is left of a refused request's body, up to a bound, so HTTP/1.1 clients get the answer.

The HTTP face refuses a call (a wrong key, a draining server) before reading its
body, as the gRPC face does. Over HTTP/2 that costs nothing; over HTTP/1.1 the
server (hypercorn) closes the connection as soon as the answer is complete,
while the client is still writing to it, and the client may see the reset
(EPIPE) instead of the 401. So before the last piece of an answer leaves, up to
`DRAIN_LIMIT` bytes of the unread body are read and dropped: a small refused
request gets its answer, a large one is still never buffered (its connection
closes after that much).
"""

from __future__ import annotations

import asyncio
import contextlib

from apex_grpc_server._http.cors import App, Message, Receive, Scope, Send

DRAIN_LIMIT = 256 * 1024
"""Bytes of an unread request body the server reads (and drops) after answering."""
DRAIN_TIMEOUT_S = 1.0
"""How long it waits for them."""


class DrainUnreadBody:
    """ASGI middleware: before an HTTP/1 answer ends, read and drop the rest of a small body."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the application; drain what it left unread before its answer's last message."""
        if scope["type"] != "http" or scope.get("http_version") not in ("1.0", "1.1"):
            await self.app(scope, receive, send)
            return
        ended = False

        async def tracked() -> Message:
            nonlocal ended
            message = await receive()
            if message["type"] == "http.disconnect" or not message.get("more_body", False):
                ended = True
            return message

        async def drained_send(message: Message) -> None:
            nonlocal ended
            last = message["type"] == "http.response.body" and not message.get("more_body", False)
            if last and not ended:
                ended = True
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(_drain(receive), DRAIN_TIMEOUT_S)
            await send(message)

        await self.app(scope, tracked, drained_send)


async def _drain(receive: Receive) -> None:
    read = 0
    while read <= DRAIN_LIMIT:
        message = await receive()
        if message["type"] != "http.request":
            return
        read += len(message.get("body", b""))
        if not message.get("more_body", False):
            return
