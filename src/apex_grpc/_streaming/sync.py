"""The sync chat stream: an iterator of chunks that always cancels what it abandons."""

from __future__ import annotations

import time
from collections.abc import Iterator
from types import TracebackType

import grpc

from apex_grpc._calls.stream import Opener, StreamState
from apex_grpc._errors import ClientClosedError, Metadata, metadata_value
from apex_grpc._streaming.watchdog import Watchdog
from apex_grpc_proto.apex.v1 import apex_pb2 as pb


class ChatCompletionStream:
    """Chunks of a streamed chat completion, as they arrive.

    Iterate it (``for chunk in stream``) or use the helpers: `text()`,
    `until_done()`, `get_final_response()`. Abandoning it (`close()`, leaving
    a ``with`` block, or dropping the last reference) cancels the RPC, so the
    server stops generating. ``break`` out of a ``for`` only pauses, as with
    any iterator: the stream you still hold goes on where it stopped
    (``text()`` reads the rest) until you close or drop it.
    """

    def __init__(self, open_call: Opener, state: StreamState, watchdog: Watchdog | None) -> None:
        self._open = open_call
        self._state = state
        self._add = state.add
        self._closed = False
        self._call = open_call(state.timeout)
        self._watchdog = watchdog if state.watched else None
        self._watching = False

    def __iter__(self) -> Iterator[pb.ChatCompletionChunkResponse]:
        return self

    def __next__(self) -> pb.ChatCompletionChunkResponse:
        watchdog = self._watchdog
        if watchdog is not None:
            self._state.waiting_since = time.monotonic()
            if not self._watching:
                self._watch()
        while True:
            if self._closed:
                raise StopIteration
            try:
                chunk: pb.ChatCompletionChunkResponse = next(self._call)
            except StopIteration:
                self._open.release()
                self._state.ended(self._trailing())
                raise
            except grpc.RpcError as error:
                if self._retry_or_raise(error):
                    continue
                raise StopIteration from None  # the answer was whole: only its status was lost
            except ValueError as error:
                raise ClientClosedError(
                    f"the client was closed while streaming: {error}"
                ) from error
            if self._state.confirming:  # the first chunk of a resumed attempt
                self._confirm()
            self._add(chunk)
            if watchdog is not None:
                self._state.waiting_since = None
            return chunk

    def _retry_or_raise(self, error: grpc.RpcError) -> bool:
        """Reopen after `error` (True), or end the stream: False when it is whole anyway."""
        self._open.release()
        delay = self._state.retry_delay(error, self._open)
        if delay is None:
            if self._state.answered_anyway(error):
                return False
            self._state.fail(error)
        if delay:
            time.sleep(delay)
        self._state.reopened()
        self._add = self._state.add  # after a resume: adopting the continuation's chunks
        self._call = self._open(self._state.attempts.remaining())
        return True

    def _confirm(self) -> None:
        try:
            self._state.confirm(tuple(self._call.initial_metadata() or ()))
        except BaseException:
            self._call.cancel()
            self._open.release()
            raise

    def _watch(self) -> None:
        deadline = self._state.stall_deadline()
        if deadline is not None and self._watchdog is not None:
            self._watching = True
            self._watchdog.watch(self, deadline)

    def _watchdog_check(self, now: float) -> float | None:
        core = self._state
        if core.finished or self._closed:
            return None
        deadline = core.stall_deadline()
        if deadline is None:  # not waiting now: the next read registers again
            self._watching = False
            return None
        if deadline > now:
            return deadline
        core.stalled = True
        self._call.cancel()
        self._open.release()
        return None

    def _trailing(self) -> Metadata:
        try:
            return tuple(self._call.trailing_metadata() or ())
        except Exception:
            return ()

    # Helpers built on the accumulator

    def until_done(self) -> ChatCompletionStream:
        """Read the rest of the stream; returns the stream."""
        for _ in self:
            pass
        return self

    def text(self) -> str:
        """Read the rest of the stream and return the whole generated text."""
        return self.until_done()._state.accumulator.text()

    def get_final_response(self) -> pb.ChatCompletionResponse:
        """Read the rest and return the ChatCompletionResponse the chunks add up to."""
        return self.until_done()._state.accumulator.response()

    @property
    def chunk_count(self) -> int:
        """Chunks received so far."""
        return self._state.accumulator.chunk_count

    # Metadata

    def initial_metadata(self) -> Metadata:
        """The server's initial metadata (waits for it to arrive)."""
        return tuple(self._call.initial_metadata() or ())

    def trailing_metadata(self) -> Metadata:
        """The server's trailing metadata (waits for the stream to end)."""
        if not self._state.finished and not self._closed:
            self.until_done()
        return self._trailing()

    @property
    def request_id(self) -> str | None:
        """The server's request id (``x-request-id``), once headers arrived."""
        return metadata_value(self.initial_metadata())

    # Lifetime

    def close(self) -> None:
        """Stop reading; cancels the RPC if it is still running."""
        if not self._closed:
            self._closed = True
            if not self._state.finished:
                self._call.cancel()
                self._state.abandoned()
            self._open.release()

    def __enter__(self) -> ChatCompletionStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        call = self.__dict__.get("_call")
        if call is not None and not self._state.finished and not self._closed:
            call.cancel()
            self._open.release()
            self._state.abandoned()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "done" if self._state.finished else "open"
        return f"<ChatCompletionStream {state}, {self.chunk_count} chunks>"
