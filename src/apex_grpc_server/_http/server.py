"""The HTTP face's ASGI server and its lifecycle inside the gRPC server's start and stop.

Hypercorn serves the application on the server's own event loop (one process,
one loop, the same servicer): HTTP/1.1 (what ``fetch`` streams over) and HTTP/2
cleartext, both by prior knowledge and by upgrade. Its socket comes bound
from `bind_http`.

Why hypercorn: of the ASGI servers on PyPI it is the one that serves HTTP/1.1
and HTTP/2 cleartext (and ASGI trailers, so even plain gRPC) on the server's own
event loop from a socket bound beforehand (port 0 read back; a busy port fails
first). uvicorn serves HTTP/1.1 only; granian's embedded server is experimental
and binds in Rust. Measured here (Connect JSON unary, sequential, one keep-alive
HTTP/1.1 connection, 5 interleaved rounds on a loaded 2-core machine):
uvicorn + httptools 2,234 calls/s, uvicorn + h11 1,701, granian (embedded)
1,497, hypercorn 1,447. Against gRPC on the same server hypercorn's face still
answers more unary calls a second than grpc.aio does (`python -m bench --only http`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import Any

from hypercorn.asyncio import serve
from hypercorn.config import Config

from apex_grpc_server._config import ServerConfig
from apex_grpc_server._http.app import ApexConnectApp
from apex_grpc_server._http.cors import Cors
from apex_grpc_server._http.drain import DrainUnreadBody
from apex_grpc_server._rpc.routes import ApexRoutes

logger = logging.getLogger("apex_grpc_server.http")

MAX_CONCURRENT_STREAMS = 1000
MIN_GRACE_S = 0.05
"""The shortest wait for calls in flight on stop (a stop without grace still closes cleanly)."""
"""HTTP/2 streams per connection (hypercorn's default, 100, would queue a busy browser's)."""


class HttpFace:
    """The running HTTP face: serves `routes` (and `health`'s Check) on `sock` until `stop`."""

    def __init__(
        self, config: ServerConfig, routes: ApexRoutes, sock: socket.socket, health: Any
    ) -> None:
        self.port: int = sock.getsockname()[1]
        app = ApexConnectApp(routes, health, max_message_bytes=config.max_message_bytes)
        self._app = Cors(DrainUnreadBody(app), config.cors_origins)
        self._config = Config()
        self._config.bind = [f"fd://{sock.detach()}"]
        self._config.errorlog = logger
        self._config.accesslog = None
        self._config.h2_max_concurrent_streams = MAX_CONCURRENT_STREAMS
        self._config.graceful_timeout = config.grace_period_s
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start serving (returns at once; the listening socket is already bound)."""
        self._task = asyncio.ensure_future(
            serve(self._app, self._config, shutdown_trigger=self._stopping.wait, mode="asgi")  # type: ignore[arg-type]
        )
        await asyncio.sleep(0)
        logger.info(
            "serving apex.v1.ApexService over HTTP (Connect, gRPC-Web) on port %d", self.port
        )

    async def stop(self, grace: float) -> None:
        """Stop accepting; calls in flight get `grace` seconds, then the connections close."""
        task, self._task = self._task, None
        if task is None:
            return
        # Idle keep-alive connections close at once; a zero timeout would cancel them instead.
        self._config.graceful_timeout = max(grace, MIN_GRACE_S)
        self._stopping.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), grace + 1)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
