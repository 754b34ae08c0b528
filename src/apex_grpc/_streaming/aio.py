"""The async chat stream: an async iterator of chunks that always cancels what it abandons.

grpc.aio never cancels a call object that is dropped (grpc issue 43462), so
this class does it itself: on ``break`` + garbage collection, `close()`,
leaving ``async with``, and cancellation of the task that is reading.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import TracebackType

import grpc
import grpc.aio

from apex_grpc._calls.stream import Opener, StreamState
from apex_grpc._errors import ClientClosedError, Metadata, metadata_value
from apex_grpc_proto.apex.v1 import apex_pb2 as pb


class AsyncChatCompletionStream:
    """Chunks of a streamed chat completion, as they arrive (``async for``).

    Helpers: ``await stream.text()``, ``await stream.until_done()``,
    ``await stream.get_final_response()``. Abandoning it (``await
    stream.close()``, leaving ``async with``, dropping the last reference, or
    cancelling the task that reads it) cancels the RPC; ``break`` out of an
    ``async for`` only pauses, as in the sync stream.
    """

    def __init__(self, open_call: Opener, state: StreamState) -> None:
        self._open = open_call
        self._state = state
        self._add = state.add
        self._closed = False
        self._loop = asyncio.get_running_loop()
        self._limited = state.watched
        self._start(state.timeout)

    def _start(self, timeout: float | None) -> None:
        self._call = self._open(timeout)
        # The call's own async iterator is grpc's cheapest way to read messages.
        self._messages = self._call.__aiter__()
        self._next = self._messages.__anext__

    def __aiter__(self) -> AsyncIterator[pb.ChatCompletionChunkResponse]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[pb.ChatCompletionChunkResponse]:
        """What ``async for`` runs: `__anext__` while a retry or a timer may still apply,
        then, past the first chunk of an unlimited stream, grpc's iterator directly."""
        core = self._state
        while True:
            while self._needs_care():
                try:
                    yield await self.__anext__()
                except StopAsyncIteration:
                    return
            add = self._add
            try:
                async for chunk in self._messages:
                    add(chunk)
                    yield chunk
                    if self._closed:
                        return
            except grpc.RpcError as error:
                if await self._retry_or_raise(error):
                    continue  # resumed: its first chunk is confirmed by `__anext__`
                return  # the answer was whole: only its status was lost
            except asyncio.CancelledError:
                self._call.cancel()
                raise
            core.ended(await self._trailing())
            return

    def _needs_care(self) -> bool:
        core = self._state
        return self._limited or not core.accumulator.chunk_count or self._closed or core.confirming

    async def __anext__(self) -> pb.ChatCompletionChunkResponse:
        core = self._state
        while True:
            if self._closed:
                raise StopAsyncIteration
            call = self._call
            try:
                limit = core.wait_limit() if self._limited else None
                if limit is None:
                    chunk = await self._next()
                else:
                    async with asyncio.timeout(limit):
                        chunk = await self._next()
            except StopAsyncIteration:
                core.ended(await self._trailing())
                raise
            except grpc.RpcError as error:
                if await self._retry_or_raise(error):
                    continue
                raise StopAsyncIteration from None  # the answer was whole; its status lost
            except TimeoutError:
                call.cancel()
                self._open.release()
                core.stalled = True
                raise core.stall_error() from None
            except asyncio.CancelledError:
                call.cancel()
                raise
            except grpc.aio.UsageError as error:
                raise ClientClosedError(f"the stream can no longer be read: {error}") from error
            if core.confirming:  # the first chunk of a resumed attempt
                await self._confirm()
            self._add(chunk)
            return chunk  # type: ignore[no-any-return]

    async def _retry_or_raise(self, error: grpc.RpcError) -> bool:
        """Reopen after `error` (True), or end the stream: False when it is whole anyway."""
        self._open.release()
        core = self._state
        delay = core.retry_delay(error, self._open)
        if delay is None:
            if core.answered_anyway(error):
                return False
            core.fail(error)
        if delay:
            await asyncio.sleep(delay)
        core.reopened()
        self._add = core.add  # after a resume: adopting the continuation's chunks
        self._start(core.attempts.remaining())
        return True

    async def _confirm(self) -> None:
        try:
            self._state.confirm(tuple(await self._call.initial_metadata() or ()))
        except BaseException:
            self._call.cancel()
            self._open.release()
            raise

    async def _trailing(self) -> Metadata:
        try:
            return tuple(await self._call.trailing_metadata() or ())
        except Exception:
            return ()

    # Helpers built on the accumulator

    async def until_done(self) -> AsyncChatCompletionStream:
        """Read the rest of the stream; returns the stream."""
        async for _ in self:
            pass
        return self

    async def text(self) -> str:
        """Read the rest of the stream and return the whole generated text."""
        return (await self.until_done())._state.accumulator.text()

    async def get_final_response(self) -> pb.ChatCompletionResponse:
        """Read the rest and return the ChatCompletionResponse the chunks add up to."""
        return (await self.until_done())._state.accumulator.response()

    @property
    def chunk_count(self) -> int:
        """Chunks received so far."""
        return self._state.accumulator.chunk_count

    # Metadata

    async def initial_metadata(self) -> Metadata:
        """The server's initial metadata (waits for it to arrive)."""
        return tuple(await self._call.initial_metadata() or ())

    async def trailing_metadata(self) -> Metadata:
        """The server's trailing metadata (waits for the stream to end)."""
        if not self._state.finished and not self._closed:
            await self.until_done()
        return await self._trailing()

    async def request_id(self) -> str | None:
        """The server's request id (``x-request-id``), once headers arrived."""
        return metadata_value(await self.initial_metadata())

    # Lifetime

    async def close(self) -> None:
        """Stop reading; cancels the RPC if it is still running."""
        self._cancel()

    async def aclose(self) -> None:
        """The same as `close()`."""
        self._cancel()

    def _cancel(self) -> None:
        if not self._closed:
            self._closed = True
            if not self._state.finished:
                self._call.cancel()
                self._state.abandoned()
            self._open.release()

    async def __aenter__(self) -> AsyncChatCompletionStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._cancel()

    def __del__(self) -> None:
        call = self.__dict__.get("_call")
        if call is None or self._state.finished or self._closed:
            return
        self._state.abandoned()
        loop = self._loop
        if loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            call.cancel()
        else:
            loop.call_soon_threadsafe(call.cancel)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "done" if self._state.finished else "open"
        return f"<AsyncChatCompletionStream {state}, {self.chunk_count} chunks>"
