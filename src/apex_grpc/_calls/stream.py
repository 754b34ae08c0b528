"""What a chat stream decides, apart from how it waits: shared by sync and async streams.

`StreamState` holds the accumulator, the retry state, the first-chunk / idle
limits, and turns failures into typed errors. Before its first chunk a stream
is retried as any call; after it, a retry would repeat output, so a stream cut
in a way another replica could finish (UNAVAILABLE: a lost connection, a
replica gone, a drain) is *resumed* instead: the next attempt asks the server
to continue the answer from the text received so far (`continuation`), and
its chunks are made to look like the rest of the first attempt's (one id, no
second role).
"""

from __future__ import annotations

import logging
import time
from typing import Any, NoReturn, Protocol

import grpc

from apex_grpc._errors import (
    APIError,
    Metadata,
    StreamInterruptedError,
    StreamTimeoutError,
    from_rpc_error,
    metadata_value,
)
from apex_grpc._logging import log_attempt, logger
from apex_grpc._methods import CHAT_COMPLETION_STREAM
from apex_grpc._observe import StreamObservation
from apex_grpc._requests import Prepared
from apex_grpc._requests.chat import CONTINUE_HEADER, continuation
from apex_grpc._retry import Attempts, final_error
from apex_grpc._streaming.accumulator import ChatCompletionAccumulator
from apex_grpc_proto.apex.v1 import apex_pb2 as pb

METHOD = CHAT_COMPLETION_STREAM.path

MAX_RESUMES = 10
"""Resumes one stream may make. Each follows an attempt that delivered at least one chunk
(an attempt that delivers none is a retry, spending the policy's retries), so only a
fleet failing over and over mid-answer reaches it."""

RESUMABLE = grpc.StatusCode.UNAVAILABLE
"""The failure after the first chunk that another replica can finish: the connection or
the server went away (a kill, a reset, a drain's cancel). Any other status is the
answer's own (a budget, a refusal) and would fail the same way again."""


class Opener(Protocol):
    """Starts the attempts of one streaming RPC (the transport's pooled opener)."""

    def __call__(self, timeout: float | None) -> Any:
        """Start one attempt with the given timeout; returns the grpc call."""

    def release(self) -> None:
        """The stream is done with its current attempt (gives its connection slot back)."""

    def refused(self) -> None:
        """The last attempt was refused by the server before it saw it (after `release`)."""

    def continue_with(self, prepared: Prepared[Any, Any]) -> None:
        """Later attempts send this call instead (the continuation of the answer)."""


class StreamState:
    """The I/O-free state of one ChatCompletionStream call."""

    __slots__ = (
        "_attempts",
        "_observed_add",
        "accumulator",
        "add",
        "chunks_at_open",
        "confirming",
        "finished",
        "first_chunk_timeout",
        "idle_timeout",
        "observation",
        "prepared",
        "resume",
        "resumes",
        "retry",
        "stalled",
        "started",
        "timeout",
        "waiting_since",
        "watched",
    )

    def __init__(
        self, prepared: Prepared[Any, Any], observation: StreamObservation | None = None
    ) -> None:
        settings = prepared.settings
        self.accumulator = ChatCompletionAccumulator()
        self.observation = observation
        """Who follows the stream for tracing (`apex_grpc._observe`); None: nobody."""
        add = self.accumulator.add
        self.add = add if observation is None else observation.wrap_add(add)
        """What the stream adds each chunk with (observed only when someone observes;
        after a resume, `adopt` first)."""
        self._observed_add = self.add
        self.prepared = prepared
        self.resume = settings.resume
        """Whether a cut after the first chunk is resumed (the ``resume`` option)."""
        self.resumes = 0
        """Resumes made so far."""
        self.chunks_at_open = 0
        """Chunks received when the current attempt opened (it made progress past them)."""
        self.confirming = False
        """A resumed attempt whose server has not yet shown (by its first chunk's
        headers) that it continues the answer rather than starting another."""
        self.retry = settings.retry
        self.timeout = settings.timeout
        """The overall deadline in seconds (None: none): all of it for the first attempt."""
        # Made when first read (a failure, the log), as for a unary call: a stream
        # opened pays for every object made before its first chunk arrives.
        self._attempts: Attempts | None = None
        self.first_chunk_timeout = first_chunk = settings.first_chunk_timeout
        self.idle_timeout = idle = settings.idle_timeout
        self.watched = first_chunk is not None or idle is not None
        """Whether this stream has a first-chunk or idle limit."""
        self.started = time.monotonic()
        self.waiting_since: float | None = None
        self.finished = False
        self.stalled = False

    @property
    def attempts(self) -> Attempts:
        """The record of the stream's attempts, its deadline counted from the first one's start."""
        attempts = self._attempts
        if attempts is None:
            attempts = Attempts(self.retry, self.timeout, started=self.started)
            self._attempts = attempts
        return attempts

    def wait_limit(self) -> float | None:
        """How long the next read may take before the stream counts as stalled.

        Limits count only time spent waiting for a chunk, never time the
        consumer spends between reads.
        """
        return self.idle_timeout if self.accumulator.chunk_count else self.first_chunk_timeout

    def stall_deadline(self) -> float | None:
        """Monotonic time at which the current wait counts as stalled (None: not waiting)."""
        limit = self.wait_limit()
        since = self.waiting_since
        return None if limit is None or since is None else since + limit

    def retry_delay(self, error: grpc.RpcError, opener: Opener) -> float | None:
        """Seconds to wait before reopening, if this failure may be retried.

        A refused attempt is reported to the `opener`, so the next one goes to
        a connection with room.
        """
        if self.stalled:
            return None
        chunks = self.accumulator.chunk_count
        if chunks > self.chunks_at_open:
            return self._resume(error, opener)
        code = _code(error)
        delay = self.attempts.retry_delay(code, error.trailing_metadata(), _details(error))
        refused = self.attempts.last_refused
        if refused:
            opener.refused()
        status = "REFUSED_STREAM" if refused else code.name
        self._log(status, retried=delay is not None)
        if delay is not None and self.observation is not None:
            self.observation.retried(self.attempts.number - 1, status, delay)
        return delay

    def _resume(self, error: grpc.RpcError, opener: Opener) -> float | None:
        """After chunks of this attempt: 0 (resume at once) if another replica can go on."""
        if not self.resume or _code(error) is not RESUMABLE or self.resumes >= MAX_RESUMES:
            return None
        accumulator = self.accumulator
        if accumulator.finish_reason:  # only the status was lost; nothing left to continue
            return None
        left = self.attempts.remaining()
        if left is not None and left <= 0:
            return None
        answered = accumulator.text()
        self.resumes += 1
        self.attempts.number += 1
        # No text yet (chunks without content): nothing to continue, so the answer starts
        # over, which repeats nothing; the server refuses an empty message anyway.
        if answered:
            opener.continue_with(continuation(self.prepared, answered, left))
            self.confirming = True
        self.add = self.adopt
        logger.info(
            "rpc %s resuming after %s: %d chunks, %d characters received (resume %d)",
            METHOD,
            _code(error).name,
            accumulator.chunk_count,
            len(answered),
            self.resumes,
        )
        self._log(RESUMABLE.name, retried=True)
        if self.observation is not None:
            self.observation.resumed(self.resumes, RESUMABLE.name, len(answered))
        return 0.0

    def answered_anyway(self, error: grpc.RpcError) -> bool:
        """Whether a failure `retry_delay` declined still leaves the stream complete: the
        last chunk (its finish_reason) had arrived and only the status was lost to a server
        or connection gone (UNAVAILABLE). With resuming on, the stream then ends as a whole
        answer (logged), not in StreamInterruptedError."""
        accumulator = self.accumulator
        if not (self.resume and accumulator.finish_reason and _code(error) is RESUMABLE):
            return False
        logger.info(
            "rpc %s: the answer was whole (%d chunks) when its status was lost (%s)",
            METHOD,
            accumulator.chunk_count,
            _code(error).name,
        )
        self.ended()
        return True

    def confirm(self, initial_metadata: Metadata | None) -> None:
        """The first chunk of a resumed attempt arrived with these headers: the server
        must say it continued (`CONTINUE_HEADER`); one that started the answer over would
        repeat it, so the stream ends in StreamInterruptedError instead."""
        self.confirming = False
        if metadata_value(initial_metadata or (), CONTINUE_HEADER) != "1":
            self.finished = True
            error = StreamInterruptedError(
                "the server did not continue the answer: it does not support resuming "
                f"(no {CONTINUE_HEADER!r} in its reply)",
                code=grpc.StatusCode.UNIMPLEMENTED,
                method=METHOD,
                attempts=self.attempts.number,
                hint=self._interruption(),
            )
            if self.observation is not None:
                self.observation.failed(error)
            raise error

    def adopt(self, chunk: pb.ChatCompletionChunkResponse) -> None:
        """Add a chunk of a resumed attempt as the uninterrupted stream's: its id,
        creation time and model, and no second role."""
        first = self.accumulator
        first.text()  # folds: id, created and model are the first chunk's
        chunk.id = first.id
        chunk.created = first.created
        chunk.model = first.model
        for choice in chunk.choices:
            choice.delta.role = ""
        self._observed_add(chunk)

    def reopened(self) -> None:
        """A new attempt started: its duration, and its first-chunk wait, start now."""
        self.started = time.monotonic()
        self.chunks_at_open = self.accumulator.chunk_count
        if self.waiting_since is not None:
            self.waiting_since = self.started

    def fail(self, error: grpc.RpcError) -> NoReturn:
        """Raise the typed error for a failure that will not be retried."""
        self.finished = True
        if self.stalled:
            raise self.stall_error() from error
        if self.accumulator.chunk_count:  # before the first chunk, retry_delay logged it
            self._log(_code(error).name)
        typed: APIError
        if self.accumulator.chunk_count and (RESUMABLE is _code(error) or self.resumes):
            # the server or connection went away mid-stream, or a resume failed
            typed = from_rpc_error(
                error,
                method=METHOD,
                attempts=self.attempts.number,
                cls=StreamInterruptedError,
                hint=self._interruption(),
            )
        else:
            typed = final_error(error, METHOD, self.attempts)
        if self.observation is not None:
            self.observation.failed(typed)
        raise typed from error

    def _interruption(self) -> str:
        """The hint of a StreamInterruptedError: how far the answer got, why it stopped."""
        accumulator = self.accumulator
        got = (
            f"the answer was cut after {accumulator.chunk_count} chunks "
            f"({len(accumulator.text())} characters)"
        )
        if not self.resume:
            why = "resuming is off (resume=False): a new call starts the answer over"
        elif accumulator.finish_reason:
            why = "its last chunk had arrived, and the status it lost was not UNAVAILABLE"
        elif self.resumes >= MAX_RESUMES:
            why = f"it was resumed {self.resumes} times, the most a stream may be"
        elif self.resumes:
            why = f"resuming it failed (after {self.resumes} resume(s))"
        else:
            why = "the deadline was spent, or the status is not one another replica can finish"
        return f"{got}; {why}"

    def stall_error(self) -> StreamTimeoutError:
        """The error for a stream that produced no chunk within its limit."""
        self.finished = True
        got = self.accumulator.chunk_count
        which, limit = (
            ("idle", self.idle_timeout) if got else ("first-chunk", self.first_chunk_timeout)
        )
        self._log("STALLED")
        error = StreamTimeoutError(
            f"no chunk within the {which} timeout of {limit:g}s ({got} chunks received)",
            code=grpc.StatusCode.DEADLINE_EXCEEDED,
            method=METHOD,
            attempts=self.attempts.number,
        )
        if self.observation is not None:
            self.observation.failed(error)
        return error

    def ended(self, trailing: Metadata | None = None) -> None:
        """The stream finished with OK."""
        if not self.finished:
            self.finished = True
            self._log("OK", trailing=trailing)
            if self.observation is not None:
                self.observation.succeeded(self.accumulator.response())

    def abandoned(self) -> None:
        """The stream was closed or dropped; an unfinished one ends its observation."""
        if self.observation is not None and not self.finished:
            self.observation.abandoned()

    def _log(self, status: str, retried: bool = False, trailing: Metadata | None = None) -> None:
        if logger.isEnabledFor(logging.DEBUG):
            log_attempt(
                METHOD,
                status,
                self.started,
                time.monotonic(),
                self.attempts.number,
                metadata_value(trailing or ()),
                f" chunks={self.accumulator.chunk_count}"
                + (f" refused={self.attempts.refused}" if self.attempts.refused else "")
                + (f" resumes={self.resumes}" if self.resumes else "")
                + (" retrying" if retried else ""),
            )


def _details(error: grpc.RpcError) -> str | None:
    details = error.details() if hasattr(error, "details") else None
    return details if isinstance(details, str) else None


def _code(error: grpc.RpcError) -> grpc.StatusCode:
    code = error.code() if hasattr(error, "code") else None
    return code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN
