"""The grpc.aio transport of AsyncApexClient: a channel per event loop, made lazily.

An aio channel belongs to the loop that created it. The client may be built
outside any loop and used from several (``asyncio.run`` twice, a loop per
thread, a forked child), so the transport opens one channel per loop the
first time that loop makes a call, and remembers the last one for speed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import weakref
from typing import Any

import grpc
import grpc.aio

from apex_grpc._errors import ClientClosedError
from apex_grpc._methods import Method, Req, Resp
from apex_grpc._requests import Prepared
from apex_grpc._retry import UnaryAttempts
from apex_grpc._settings.client import ClientSettings
from apex_grpc._streaming.aio import AsyncChatCompletionStream
from apex_grpc._streaming.state import StreamState, opener
from apex_grpc._transport.channels import (
    Callables,
    check_fork_support,
    make_callables,
    open_aio_channel,
)


class _LoopChannel:
    __slots__ = ("callables", "channel", "pid")

    def __init__(self, channel: grpc.aio.Channel, pid: int) -> None:
        self.channel = channel
        self.callables: Callables = make_callables(channel)
        self.pid = pid


class AsyncTransport:
    """Owns the async client's channels (one per event loop that used it)."""

    def __init__(self, settings: ClientSettings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._closed = False
        self._channels: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopChannel] = (
            weakref.WeakKeyDictionary()
        )
        self._last: tuple[asyncio.AbstractEventLoop, _LoopChannel] | None = None

    def _here(self) -> _LoopChannel:
        loop = asyncio.get_running_loop()
        last = self._last
        if last is not None and last[0] is loop and last[1].pid == os.getpid():
            return last[1]
        return self._switch(loop)

    def _switch(self, loop: asyncio.AbstractEventLoop) -> _LoopChannel:
        if self._closed:
            raise ClientClosedError("the client is closed")
        pid = os.getpid()
        with self._lock:
            state = self._channels.get(loop)
            if state is not None and state.pid != pid:
                check_fork_support()
            if state is None or state.pid != pid:
                state = _LoopChannel(open_aio_channel(self._settings), pid)
                self._channels[loop] = state
            self._last = (loop, state)
        return state

    def callable_for(self, method: Method[Req, Resp]) -> Any:
        """This loop's multi-callable for `method` (opens the loop's channel if needed)."""
        if self._closed:
            raise ClientClosedError("the client is closed")
        return self._here().callables[method]

    def channel(self) -> grpc.aio.Channel:
        """The running loop's channel."""
        return self._here().channel

    async def unary(self, prepared: Prepared[Req, Resp]) -> Resp:
        """Run a unary call; retries and the overall deadline follow its settings."""
        invoke = self.callable_for(prepared.method)
        request = prepared.request
        state = UnaryAttempts(prepared)
        while True:
            rpc = invoke(request, **state.attempt())
            try:
                response = await rpc
            except grpc.RpcError as error:
                await asyncio.sleep(state.failed(error))
                continue
            except asyncio.CancelledError:
                rpc.cancel()
                raise
            if state.detailed:
                state.succeeded(
                    await rpc.initial_metadata(),
                    await rpc.trailing_metadata(),
                    await rpc.code(),
                    await rpc.details(),
                )
            return response  # type: ignore[no-any-return]

    def stream(self, prepared: Prepared[Any, Any]) -> AsyncChatCompletionStream:
        """Start a ChatCompletionStream call in the running loop."""
        invoke = self.callable_for(prepared.method)
        return AsyncChatCompletionStream(opener(invoke, prepared), StreamState(prepared))

    async def close(self) -> None:
        """Close every channel: this loop's now, other live loops' in their own loop."""
        with self._lock:
            self._closed = True
            channels = list(self._channels.items())
            self._channels.clear()
            self._last = None
        try:
            here: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        pid = os.getpid()
        for loop, state in channels:
            if state.pid != pid or loop.is_closed():
                continue
            if loop is here:
                await state.channel.close()
            else:
                with contextlib.suppress(RuntimeError):
                    asyncio.run_coroutine_threadsafe(state.channel.close(), loop)
