"""A bounded first-come, first-served queue in front of an engine that runs N calls at a time.

The local model generates one answer at a time; every other call waits its
turn here. A waiting call leaves the queue the moment it is cancelled (grpc.aio
cancels the handler when the client cancels or its deadline passes) or its
own time budget runs out, and a call that left never runs. When the queue is
full, the call is refused at once with RESOURCE_EXHAUSTED and a
``grpc-retry-pushback-ms`` trailer: an estimate of when a place frees up, so a
client that honours pushback (apex-grpc's does) comes back then instead of
hammering, and refused callers are told staggered times instead of all
returning at once.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import time
from collections.abc import AsyncIterator, Callable

import grpc

from apex_grpc_server._status import RpcAbort, retry_later

FIRST_ESTIMATE_S = 1.0
"""Assumed length of a turn until one has been measured."""
SMOOTHING = 0.2
"""Weight of the newest turn in the moving average of turn lengths."""
JITTER = 0.2
"""Fraction of a pushback added at random, so returning callers do not arrive together: never
earlier than estimated (a caller back early is refused again and spends a retry)."""
PRIOR_MARGIN = 1.5
"""How much longer than the engine's own estimate a turn is assumed to take until one has been
measured (a server under load runs slower than its engine's nominal time)."""
MIN_PUSHBACK_MS = 10
MAX_PUSHBACK_MS = 60_000


class EngineQueue:
    """At most ``concurrency`` calls hold a turn; up to ``capacity`` more wait, in order.

    ``name`` appears in error messages ("the local engine is busy ...").
    ``clock`` is injectable for tests of the pushback estimate.
    """

    def __init__(
        self,
        concurrency: int,
        capacity: int,
        *,
        name: str = "engine",
        expected_turn_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency: must be >= 1, got {concurrency}")
        if capacity < 0:
            raise ValueError(f"capacity: must be >= 0, got {capacity}")
        self.concurrency = concurrency
        self.capacity = capacity
        self.name = name
        self._clock = clock
        self._rng = rng
        self._free = concurrency
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._turn_s = expected_turn_s * PRIOR_MARGIN if expected_turn_s else FIRST_ESTIMATE_S
        self._promised: collections.deque[float] = collections.deque()
        self.refused = 0
        """Calls refused because the queue was full (read by the server's metrics)."""

    @property
    def waiting(self) -> int:
        """Calls waiting for a turn now."""
        return len(self._waiters)

    @property
    def running(self) -> int:
        """Calls holding a turn now."""
        return self.concurrency - self._free

    @contextlib.asynccontextmanager
    async def turn(self, timeout_s: float | None = None) -> AsyncIterator[None]:
        """Hold one of the engine's turns for the body of the ``async with``.

        Raises RESOURCE_EXHAUSTED (with pushback) when the queue is full, and
        DEADLINE_EXCEEDED when ``timeout_s`` passes before the turn comes.
        """
        await self._acquire(timeout_s)
        started = self._clock()
        try:
            yield
        finally:
            elapsed = self._clock() - started
            self._turn_s += SMOOTHING * (elapsed - self._turn_s)
            self._hand_over()

    def retry_after_ms(self) -> int:
        """When a refused caller should come back, in ms; each refusal is told a later time.

        A place in the queue frees each time a turn ends, about every (recent
        turn length) / concurrency seconds; the k-th caller refused while
        earlier refusals are still pending is told k such intervals, made up to
        JITTER later at random. Until a turn has been measured, the engine's own
        estimate (with PRIOR_MARGIN) stands in, else FIRST_ESTIMATE_S.
        """
        now = self._clock()
        while self._promised and self._promised[0] <= now:
            self._promised.popleft()
        interval = self._turn_s / self.concurrency
        delay = interval * (len(self._promised) + 1)
        self._promised.append(now + delay)
        delay *= 1.0 + JITTER * self._rng()
        return max(MIN_PUSHBACK_MS, min(MAX_PUSHBACK_MS, round(delay * 1000)))

    async def _acquire(self, timeout_s: float | None) -> None:
        if self._free and not self._waiters:
            self._free -= 1
            return
        if len(self._waiters) >= self.capacity:
            self.refused += 1
            pushback = self.retry_after_ms()
            raise retry_later(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"the {self.name} is busy: {self.running} running and {len(self._waiters)}"
                " waiting (the queue's limit)",
                pushback,
            )
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(timeout_s):
                await waiter
        except TimeoutError:
            self._leave(waiter)
            raise RpcAbort(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"timeout: no turn on the {self.name} within {timeout_s:g} s",
            ) from None
        except BaseException:  # cancelled: the client went away or its deadline passed
            self._leave(waiter)
            raise

    def _leave(self, waiter: asyncio.Future[None]) -> None:
        """A waiter gives up; a turn it was handed at that very moment goes to the next."""
        if waiter.done() and not waiter.cancelled():
            self._hand_over()
        else:
            waiter.cancel()
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)

    def _hand_over(self) -> None:
        """A turn ends: give it to the first caller still waiting, else free it."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1
