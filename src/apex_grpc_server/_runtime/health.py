"""The standard health service (grpc.health.v1), with watches that end when the server closes.

Every health-checking client (apex-grpc's round_robin, Envoy, Kubernetes) holds a
Watch stream open for as long as it is connected. A stopping server waits for its
calls in flight, so it would wait for those watches until its grace period ran
out; the server ends them as it closes (their clients have already been told
NOT_SERVING). Imported only when grpcio-health-checking is installed.
"""

from __future__ import annotations

import asyncio
from typing import Any

from grpc_health.v1 import health, health_pb2

CHAT_HEALTH = "apex.v1.ApexService/chat"
"""The chat engine's health service name: NOT_SERVING while its process restarts, while the
rest of the service (stored chats, search, deep-research reads) answers on under "" and
apex.v1.ApexService."""


class DrainingHealth(health.aio.HealthServicer):  # type: ignore[misc]
    """grpc's asyncio health service whose Watch streams end on `close_watches()`."""

    def __init__(self) -> None:
        super().__init__()
        self._closed = asyncio.Event()

    async def Watch(self, request: Any, context: Any) -> None:
        """The standard Watch, ended (with OK) once the server closes."""
        watch = asyncio.ensure_future(super().Watch(request, context))
        closed = asyncio.ensure_future(self._closed.wait())
        try:
            await asyncio.wait([watch, closed], return_when=asyncio.FIRST_COMPLETED)
        finally:
            watch.cancel()
            closed.cancel()

    async def report(self, service: str, serving: bool) -> None:
        """Set ``service``'s status to SERVING or NOT_SERVING (told to its watchers)."""
        status = health_pb2.HealthCheckResponse
        await self.set(service, status.SERVING if serving else status.NOT_SERVING)

    async def report_engine(self, serving: bool) -> None:
        """Set CHAT_HEALTH; "" stays as it is.

        A replica whose engine restarts still serves stored chats, search and
        deep-research reads; failing "" would take those out of rotation too.
        """
        await self.report(CHAT_HEALTH, serving)

    def close_watches(self) -> None:
        """End every Watch stream, now and from now on."""
        self._closed.set()
