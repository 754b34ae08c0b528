"""Connection scaling: which connection to one target the next call goes on, with no I/O.

An HTTP/2 connection carries a limited number of concurrent streams
(MAX_CONCURRENT_STREAMS: 100 on most front ends and load balancers). grpc
queues calls past that limit on the same connection, or, when they arrive
before the server's settings, has them refused (REFUSED_STREAM). The pool
spreads calls instead: the next call goes to the least-loaded connection
with room; when every connection is full a new one is opened, up to
`max_connections`; past that the least-loaded connection takes it (grpc
queues it there). Extra connections that stay idle are closed again. The
limit per connection starts at `stream_limit` and is lowered when the server
refuses a stream: the calls still in flight that went on that connection
before the refused one are what the server took. (Refusals happen to the
streams a burst sends on a new connection before the server's settings
arrive; after that grpc queues what is past the limit on that connection,
so set `stream_limit` to the server's limit where it is known.)

Channels to one target share a connection unless their arguments differ, so
connection n > 0 is opened with one more channel argument. Opening and
closing channels is injected; the transports (grpcio and grpc.aio) supply
them. A client that never exceeds the limit uses exactly one connection.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from apex_grpc._observe import CallObservation
    from apex_grpc._requests import Prepared

Channel = TypeVar("Channel")

CONNECTION_INDEX_ARG = "apex_grpc.connection_index"
"""The channel argument that makes connection n > 0 a connection of its own."""


class Connection(Generic[Channel]):
    """One channel (one HTTP/2 connection per resolved address) and its calls in flight."""

    __slots__ = ("callables", "channel", "idle_since", "index", "issued", "tickets")

    def __init__(self, index: int, channel: Channel, callables: dict[Any, Any]) -> None:
        self.index = index
        self.channel = channel
        self.callables = callables
        """The channel's multi-callable per RPC method."""
        self.tickets: dict[int, None] = {}
        """The calls in flight, by the order they were given this connection."""
        self.issued = 0
        self.idle_since: float | None = None

    def take(self) -> int:
        """Count one more call in flight; returns its ticket (its place in line)."""
        ticket = self.issued
        self.issued = ticket + 1
        self.tickets[ticket] = None
        self.idle_since = None
        return ticket

    @property
    def in_flight(self) -> int:
        """Calls in flight on this connection."""
        return len(self.tickets)

    def __repr__(self) -> str:
        return f"<Connection {self.index}: {self.in_flight} in flight>"


class ConnectionPool(Generic[Channel]):
    """The connections of one client to its target (one pool per event loop for aio).

    `open_connection(index)` returns a channel and its callables;
    `close_channel(channel)` closes one; `schedule_sweep(when)` arranges one
    call of `sweep` at monotonic time `when`. They are called with the pool's
    lock held unless noted; opening happens under the lock so that a burst
    of callers opens one connection, not one each.
    """

    def __init__(
        self,
        open_connection: Callable[[int], tuple[Channel, dict[Any, Any]]],
        close_channel: Callable[[Channel], None],
        schedule_sweep: Callable[[float], None],
        *,
        max_connections: int,
        stream_limit: int,
        idle_timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._open_connection = open_connection
        self._close_channel = close_channel
        self._schedule_sweep = schedule_sweep
        self._sweep_pending = False
        """A sweep is scheduled, or will be by the caller of the running one (under the lock)."""
        self.max_connections = max_connections
        self.stream_limit = stream_limit
        """Calls in flight per connection before the next call goes elsewhere (learned)."""
        self.idle_timeout = idle_timeout
        self._clock = clock
        self._lock = threading.Lock()
        channel, callables = open_connection(0)
        self.primary: Connection[Channel] = Connection(0, channel, callables)
        self.connections: list[Connection[Channel]] = [self.primary]
        self.opened = 1
        """Connections opened over the pool's life (the primary included)."""

    def acquire(self) -> tuple[Connection[Channel], int]:
        """The connection the next call goes on, and the call's ticket there.

        The call counts as in flight on that connection until `release`.
        """
        with self._lock:
            primary = self.primary
            if len(primary.tickets) < self.stream_limit and len(self.connections) == 1:
                return primary, primary.take()  # the common case: one connection with room
            chosen = min(self.connections, key=_load)
            if (
                chosen.in_flight >= self.stream_limit
                and len(self.connections) < self.max_connections
            ):
                chosen = self._open(len(self.connections))
            return chosen, chosen.take()

    def release(self, connection: Connection[Channel], ticket: int) -> None:
        """The call with `ticket` on `connection` ended (done, failed, cancelled, abandoned)."""
        with self._lock:
            if connection.tickets.pop(ticket, 0) is None and not connection.tickets:
                connection.idle_since = self._clock()

    def refused(self, connection: Connection[Channel], ticket: int) -> None:
        """The server refused the stream of `ticket` on `connection` (after `release`).

        The calls still in flight there that came before it are what the
        server took; the limit comes down to that, so later calls go to
        other connections.
        """
        with self._lock:
            took = sum(1 for earlier in connection.tickets if earlier < ticket)
            self.stream_limit = max(1, min(self.stream_limit, took))

    def sweep(self) -> float | None:
        """Close extra connections idle for `idle_timeout`.

        Returns when to sweep again (monotonic time), for the caller to
        schedule, or None when no extra connection is left to watch: the next
        extra connection schedules a sweep again.
        """
        now = self._clock()
        closing: list[Connection[Channel]] = []
        next_check: float | None = None
        with self._lock:
            for connection in self.connections[1:]:
                since = connection.idle_since
                due = (now if connection.in_flight or since is None else since) + self.idle_timeout
                if due <= now:
                    closing.append(connection)
                else:
                    next_check = due if next_check is None else min(next_check, due)
            if closing:
                self.connections = [c for c in self.connections if c not in closing]
            self._sweep_pending = next_check is not None
        for connection in closing:  # outside the lock: closing may wait for grpc
            self._close_channel(connection.channel)
        return next_check

    def close(self) -> list[Channel]:
        """Forget every connection; returns their channels for the caller to close."""
        with self._lock:
            channels = [connection.channel for connection in self.connections]
            self.connections = []
        return channels

    def _open(self, index: int) -> Connection[Channel]:
        # Indexes stay unique, so a reopened slot never shares a closed one's arguments.
        channel, callables = self._open_connection(self.opened)
        self.opened += 1
        connection = Connection(index, channel, callables)
        self.connections.append(connection)
        if not self._sweep_pending:  # one sweep at a time watches every extra connection
            self._sweep_pending = True
            self._schedule_sweep(self._clock() + self.idle_timeout)
        return connection

    def __repr__(self) -> str:
        loads = ", ".join(str(c.in_flight) for c in self.connections)
        return f"<ConnectionPool limit={self.stream_limit} in flight per connection: [{loads}]>"


def _load(connection: Connection[Any]) -> tuple[int, int]:
    return connection.in_flight, connection.index


class PooledOpener:
    """Opens each attempt of one server-streaming call on a connection of the pool.

    An attempt's slot is given back once, whichever comes first: grpc
    reporting its RPC over (done callbacks fire on every end for grpc.aio,
    and when a sync stream is read to its end), or the stream saying it is
    done with it (`release`: on close, on a stall, when it is dropped, when
    it reads its end). `release_when_done=False` registers no done callback:
    for a sync stream on a SingleThreadedUnaryStream channel, whose callback
    could only fire when the stream reads its end, which releases anyway.
    """

    __slots__ = (
        "attempt",
        "held",
        "last",
        "method",
        "observation",
        "pool",
        "release_when_done",
        "request",
        "settings",
    )
    # held: attempt number -> (connection, ticket); last: the same for the latest attempt.

    def __init__(
        self,
        pool: ConnectionPool[Any],
        prepared: Prepared[Any, Any],
        observation: CallObservation | None = None,
        *,
        release_when_done: bool = True,
    ) -> None:
        self.pool = pool
        self.release_when_done = release_when_done
        self.observation = observation
        """The call's tracing (`apex_grpc._observe`): its span is current as each attempt opens."""
        self.method = prepared.method
        self.request = prepared.request
        self.settings = prepared.settings
        self.attempt = 0
        self.held: dict[int, tuple[Connection[Any], int]] = {}
        """The connection and ticket of each attempt not yet given back (popping is atomic)."""
        self.last: tuple[Connection[Any], int] | None = None

    def __call__(self, timeout: float | None) -> Any:
        """Start one attempt with `timeout` seconds; returns the grpc call."""
        if self.attempt:
            self.release()
        pool = self.pool
        held = pool.acquire()
        connection = held[0]
        self.attempt += 1
        attempt = self.attempt
        self.held[attempt] = held
        self.last = held
        invoke = connection.callables[self.method]
        try:
            if self.observation is None:
                call = invoke(self.request, **self.settings.grpc_arguments(timeout))
            else:
                with self.observation.current():
                    call = invoke(self.request, **self.settings.grpc_arguments(timeout))
        except BaseException:
            self._give_back(attempt)
            raise
        if self.release_when_done:
            call.add_done_callback(lambda _call: self._give_back(attempt))
        return call

    def release(self) -> None:
        """The stream is done with its current attempt (idempotent)."""
        self._give_back(self.attempt)

    def refused(self) -> None:
        """The last attempt was refused by the server (REFUSED_STREAM); after `release`."""
        if self.last is not None:
            self.pool.refused(*self.last)

    def continue_with(self, prepared: Prepared[Any, Any]) -> None:
        """Later attempts send `prepared` (a stream's continuation) instead.

        They go on the pool's least-loaded connection as any attempt; grpc's load
        balancing there (``round_robin``) picks a backend whose connection is up, the
        broken one having been reported down by the failure that led here.
        """
        self.request = prepared.request
        self.settings = prepared.settings

    def _give_back(self, attempt: int) -> None:
        held = self.held.pop(attempt, None)
        if held is not None:
            self.pool.release(*held)
