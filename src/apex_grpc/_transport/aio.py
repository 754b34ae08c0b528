"""The grpc.aio transport of AsyncApexClient: connections per event loop, made lazily.

An aio channel belongs to the loop that created it. The client may be built
outside any loop and used from several (``asyncio.run`` twice, a loop per
thread, a forked child), so the transport keeps one connection pool per loop,
opened the first time that loop makes a call, and remembers the last one
for speed.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from typing import Any

import grpc
import grpc.aio

from apex_grpc import _observe
from apex_grpc._calls.stream import StreamState
from apex_grpc._calls.unary import UnaryAttempts, record_success, settle
from apex_grpc._errors import ClientClosedError
from apex_grpc._methods import Req, Resp
from apex_grpc._observe import CallObservation
from apex_grpc._requests import Prepared
from apex_grpc._settings.client import ClientSettings
from apex_grpc._streaming.aio import AsyncChatCompletionStream
from apex_grpc._transport import process
from apex_grpc._transport.channels import (
    check_fork_support,
    closed_during_call,
    make_callables,
    open_aio_channel,
)
from apex_grpc._transport.pool import ConnectionPool, PooledOpener


class _LoopPool(ConnectionPool[grpc.aio.Channel]):
    """The connections of one event loop; idle extra ones are closed by a loop timer."""

    def __init__(self, settings: ClientSettings, loop: asyncio.AbstractEventLoop) -> None:
        self.generation = process.generation
        """The fork generation this pool was opened in (see `process`)."""
        self.loop = loop
        self._settings = settings
        self._timer: asyncio.TimerHandle | None = None
        super().__init__(
            self._connect,
            self._close_later,
            self._sweep_at,
            max_connections=settings.max_connections,
            stream_limit=settings.max_streams_per_connection,
            idle_timeout=settings.connection_idle_timeout,
        )

    def _connect(self, index: int) -> tuple[grpc.aio.Channel, dict[Any, Any]]:
        channel = open_aio_channel(self._settings, index)
        return channel, make_callables(channel)

    def _sweep_at(self, when: float) -> None:
        delay = max(when - self._clock(), 0.0)
        self._timer = self.loop.call_at(self.loop.time() + delay, self._sweep_now)

    def _sweep_now(self) -> None:
        self._timer = None
        next_check = self.sweep()
        if next_check is not None:
            self._sweep_at(next_check)

    def _close_later(self, channel: grpc.aio.Channel) -> None:
        self.loop.create_task(channel.close())

    def stop_timer(self) -> None:
        """No more sweeps (the client is closing)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class AsyncTransport:
    """Owns the async client's connections (a pool per event loop that used it)."""

    def __init__(self, settings: ClientSettings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._closed = False
        self._pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopPool] = (
            weakref.WeakKeyDictionary()
        )
        self._last: _LoopPool | None = None

    def pool(self) -> _LoopPool:
        """The running loop's connections (opened on its first call)."""
        if self._closed:
            raise ClientClosedError("the client is closed")
        loop = asyncio.get_running_loop()
        last = self._last
        if last is not None and last.loop is loop and last.generation == process.generation:
            return last
        return self._switch(loop)

    def _switch(self, loop: asyncio.AbstractEventLoop) -> _LoopPool:
        generation = process.generation
        with self._lock:
            pool = self._pools.get(loop)
            if pool is not None and pool.generation != generation:
                check_fork_support()
            if pool is None or pool.generation != generation:
                pool = _LoopPool(self._settings, loop)
                self._pools[loop] = pool
            self._last = pool
        return pool

    @property
    def channel(self) -> grpc.aio.Channel:
        """The running loop's first connection's channel."""
        return self.pool().primary.channel

    async def unary(self, prepared: Prepared[Req, Resp]) -> Resp:
        """Run a unary call; retries and the overall deadline follow its settings."""
        observer = _observe.observer
        if observer is None:
            return await self._unary(prepared, None)
        observation = observer.unary(prepared, self._settings)
        with observation.current():
            response = await self._unary(prepared, observation)
        observation.succeeded(response)
        return response

    async def _unary(
        self, prepared: Prepared[Req, Resp], observation: CallObservation | None
    ) -> Resp:
        pool = self.pool()
        method, request, call = prepared
        state = UnaryAttempts(method.path, call, write=method.write, observation=observation)
        detailed = state.watched
        while True:
            connection, ticket = pool.acquire()
            rpc = connection.callables[method](request, **state.attempt())
            try:
                response = await rpc
            except grpc.RpcError as error:
                pool.release(connection, ticket)
                if self._closed:
                    raise closed_during_call() from error
                delay = settle(state, error)
                if state.refused:
                    pool.refused(connection, ticket)
                await asyncio.sleep(delay)
                continue
            except asyncio.CancelledError:
                pool.release(connection, ticket)
                rpc.cancel()
                if self._closed and not _cancelling():  # close() cancelled the call, not us
                    raise closed_during_call() from None
                raise
            pool.release(connection, ticket)
            if response is None:  # grpc.aio's answer to a response it could not parse
                raise state.undecodable()
            if detailed:
                record_success(
                    state,
                    await rpc.initial_metadata(),
                    await rpc.trailing_metadata(),
                    await rpc.code(),
                    await rpc.details(),
                )
            return response  # type: ignore[no-any-return]

    def stream(self, prepared: Prepared[Any, Any]) -> AsyncChatCompletionStream:
        """Start a ChatCompletionStream call in the running loop."""
        pool = self.pool()
        observer = _observe.observer
        observation = None if observer is None else observer.stream(prepared, self._settings)
        opener = PooledOpener(pool, prepared, observation)
        return AsyncChatCompletionStream(opener, StreamState(prepared, observation))

    async def close(self) -> None:
        """Close every connection: this loop's now, other live loops' in their own loop."""
        with self._lock:
            self._closed = True
            pools = list(self._pools.items())
            self._pools.clear()
            self._last = None
        try:
            here: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        generation = process.generation
        for loop, pool in pools:
            if pool.generation != generation or loop.is_closed():
                continue
            channels = pool.close()
            if loop is here:
                pool.stop_timer()
                for channel in channels:
                    await channel.close()
            else:
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(pool.stop_timer)
                    for channel in channels:
                        asyncio.run_coroutine_threadsafe(channel.close(), loop)


def _cancelling() -> bool:
    """Whether the running task is being cancelled (rather than only its grpc call)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
