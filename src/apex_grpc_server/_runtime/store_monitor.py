"""Whether the database answers: pinged every second, told to health and metrics on a change.

All replicas of a fleet share one PostgreSQL, so the overall health ("") stays
SERVING while it is down: failing it would take every replica out of rotation
at once, calls that need no database (chat, search) included. The database's
own state is the health service ``apex.v1.store`` (NOT_SERVING while it cannot
be reached) and the gauge ``apex_server_store_up``; calls that need it are
answered UNAVAILABLE meanwhile, which clients retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from apex_grpc_server._metrics.recorder import Metrics
from apex_grpc_server._store.interface import Storage, StoreUnavailable

logger = logging.getLogger("apex_grpc_server")

HEALTH_SERVICE = "apex.v1.store"
"""The health service name whose status is the database's (grpc.health.v1 Check / Watch)."""
PING_EVERY_S = 1.0
"""How often the database is pinged: a change is reported within about this long."""


class StoreMonitor:
    """Pings `store` every `every_s` on a task of its own; reports each change of state."""

    def __init__(
        self,
        store: Storage,
        metrics: Metrics,
        *,
        timeout_s: float,
        every_s: float = PING_EVERY_S,
    ) -> None:
        self.store = store
        self.health: Any = None
        """The server's health servicer (None when grpcio-health-checking is absent)."""
        self.metrics = metrics
        self.timeout_s = timeout_s
        self.every_s = every_s
        self.up: bool | None = None
        """Whether the last ping was answered (None before the first)."""
        self._task: asyncio.Task[None] | None = None

    async def start(self, health: Any) -> None:
        """Report the store up (it has just opened) and start pinging; to `health` too (or None)."""
        self.health = health
        await self._report(up=True)
        self._task = asyncio.create_task(self._run(), name="apex-grpc-store-monitor")

    async def close(self) -> None:
        """Stop pinging."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.every_s)
            try:
                await self.store.ping(self.timeout_s)
            except StoreUnavailable as error:
                if self.up is not False:
                    logger.warning("the database cannot be reached: %s", error)
                    await self._report(up=False)
            else:
                if self.up is False:
                    logger.warning("the database answers again")
                    await self._report(up=True)

    async def _report(self, *, up: bool) -> None:
        self.up = up
        self.metrics.store_up(up)
        if self.health is not None:
            await self.health.report(HEALTH_SERVICE, up)
