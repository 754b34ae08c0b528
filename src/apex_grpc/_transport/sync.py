"""The grpcio transport of ApexClient: its connections, and calls with retries and deadlines."""

from __future__ import annotations

import threading
import time
from typing import Any

import grpc

from apex_grpc import _observe
from apex_grpc._calls.stream import StreamState
from apex_grpc._calls.unary import UnaryAttempts, record_success, settle
from apex_grpc._errors import ClientClosedError
from apex_grpc._methods import Req, Resp
from apex_grpc._observe import CallObservation
from apex_grpc._requests import Prepared
from apex_grpc._settings.client import ClientSettings
from apex_grpc._streaming.sync import ChatCompletionStream
from apex_grpc._streaming.watchdog import Watchdog
from apex_grpc._transport import process
from apex_grpc._transport.channels import (
    check_fork_support,
    closed_during_call,
    make_callables,
    open_sync_channel,
)
from apex_grpc._transport.pool import ConnectionPool, PooledOpener


class _ProcessPool(ConnectionPool[grpc.Channel]):
    """The connections of one process; idle extra ones are closed by the watchdog thread."""

    def __init__(self, settings: ClientSettings, watchdog: Watchdog) -> None:
        self.generation = process.generation
        """The fork generation this pool was opened in (see `process`)."""
        self._settings = settings
        self._watchdog = watchdog
        super().__init__(
            self._connect,
            _close_channel,
            self._sweep_at,
            max_connections=settings.max_connections,
            stream_limit=settings.max_streams_per_connection,
            idle_timeout=settings.connection_idle_timeout,
        )

    def _connect(self, index: int) -> tuple[grpc.Channel, dict[Any, Any]]:
        channel = open_sync_channel(self._settings, index)
        return channel, make_callables(channel)

    def _sweep_at(self, when: float) -> None:
        self._watchdog.watch(self, when)

    def _watchdog_check(self, now: float) -> float | None:
        """Called by the watchdog: close idle extra connections, say when to look again
        (never, once the pool is closed: it has no connections left to watch)."""
        return self.sweep()


class SyncTransport:
    """Owns the client's connections (a pool per process: opened again in a forked child)."""

    def __init__(self, settings: ClientSettings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._closed = False
        self.watchdog = Watchdog()
        self._pool = _ProcessPool(settings, self.watchdog)

    def pool(self) -> _ProcessPool:
        """The connections calls go on (checks for a fork and for a closed client)."""
        if self._closed:
            raise ClientClosedError("the client is closed")
        pool = self._pool
        if pool.generation != process.generation:
            # After a fork the parent's channels are unusable in the child; they are
            # left untouched (closing them could disturb the parent) and replaced.
            check_fork_support()
            with self._lock:
                if self._pool.generation != process.generation:
                    self._pool = _ProcessPool(self._settings, self.watchdog)
                pool = self._pool
        return pool

    @property
    def channel(self) -> grpc.Channel:
        """The first connection's grpc channel (for connectivity checks and advanced use)."""
        return self.pool().primary.channel

    def unary(self, prepared: Prepared[Req, Resp]) -> Resp:
        """Run a unary call; retries and the overall deadline follow its settings."""
        observer = _observe.observer
        if observer is None:
            return self._unary(prepared, None)
        observation = observer.unary(prepared, self._settings)
        with observation.current():
            response = self._unary(prepared, observation)
        observation.succeeded(response)
        return response

    def _unary(self, prepared: Prepared[Req, Resp], observation: CallObservation | None) -> Resp:
        pool = self.pool()
        method, request, call = prepared
        state = UnaryAttempts(method.path, call, write=method.write, observation=observation)
        detailed = state.watched
        while True:
            connection, ticket = pool.acquire()
            try:
                invoke = connection.callables[method]
                if not detailed:
                    return invoke(request, **state.attempt())  # type: ignore[no-any-return]
                response, rpc = invoke.with_call(request, **state.attempt())
                record_success(
                    state,
                    rpc.initial_metadata(),
                    rpc.trailing_metadata(),
                    rpc.code(),
                    rpc.details(),
                )
                return response  # type: ignore[no-any-return]
            except grpc.RpcError as error:
                if self._closed:
                    raise closed_during_call() from error
                delay = settle(state, error)
            except ValueError as error:  # grpcio: "Cannot invoke RPC: Channel closed!"
                if self._closed:
                    raise closed_during_call() from error
                raise
            finally:
                pool.release(connection, ticket)
            if state.refused:
                pool.refused(connection, ticket)
            time.sleep(delay)

    def stream(self, prepared: Prepared[Any, Any]) -> ChatCompletionStream:
        """Start a ChatCompletionStream call."""
        pool = self.pool()
        observer = _observe.observer
        observation = None if observer is None else observer.stream(prepared, self._settings)
        opener = PooledOpener(
            pool,
            prepared,
            observation,
            release_when_done=not self._settings.single_threaded_streams,
        )
        return ChatCompletionStream(opener, StreamState(prepared, observation), self.watchdog)

    def close(self) -> None:
        """Close every connection; in-flight calls are cancelled."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.watchdog.stop()
        if self._pool.generation == process.generation:
            for channel in self._pool.close():
                channel.close()


def _close_channel(channel: grpc.Channel) -> None:
    channel.close()
