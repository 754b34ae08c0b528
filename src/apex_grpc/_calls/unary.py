"""What a unary call decides across its attempts, with no I/O: the twin of `StreamState`.

`UnaryAttempts` is the decision alone: the grpc arguments of each attempt
(what is left of the overall deadline) and what a failure means (wait this
long and try again, or this typed error ends the call). It takes what it
needs (the method's path, the call's settings, a clock) and records
nothing. `record_success` and `settle` are the record around it: the DEBUG
line per attempt and the caller's CallInfo, done only when someone looks
(`UnaryAttempts.watched`). Both transports drive the same functions; they differ in how
they wait.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any

import grpc

from apex_grpc._errors import APIError, InternalServerError, metadata_value
from apex_grpc._logging import log_attempt, logger
from apex_grpc._observe import CallObservation
from apex_grpc._retry import Attempts, final_error
from apex_grpc._settings.call import CallSettings


class UnaryAttempts:
    """The decisions of one unary call, across its attempts.

    A `write` call (`Method.write`) carries an ``idempotency-key`` on every attempt.
    The `Attempts` record is made only when something reads it (a failure, a
    recorded success): a sequential call pays for every object made before it
    is sent, the first attempt needs none of it, and most calls end there.
    """

    __slots__ = (
        "_attempts",
        "call",
        "clock",
        "method",
        "observation",
        "rng",
        "started",
        "watched",
    )

    def __init__(
        self,
        method: str,
        call: CallSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
        write: bool = False,
        observation: CallObservation | None = None,
    ) -> None:
        self.method = method
        self.observation = observation
        """Who follows the call for tracing (`apex_grpc._observe`); None: nobody."""
        # One idempotency key per logical call: every attempt below sends the same.
        self.call = call.for_write() if write else call
        self.clock = clock
        self.rng = rng
        self._attempts: Attempts | None = None
        self.watched = call.call_info is not None or logger.isEnabledFor(logging.DEBUG)
        """Whether anyone looks at the call's outcome (its CallInfo, the DEBUG log):
        reading a call's metadata costs a little, so the transports do it only then."""
        self.started = 0.0
        """When the current attempt started (on `clock`)."""

    @property
    def attempts(self) -> Attempts:
        """The record of the call's attempts, its deadline counted from the first one's start."""
        attempts = self._attempts
        if attempts is None:
            call = self.call
            attempts = Attempts(
                call.retry, call.timeout, clock=self.clock, rng=self.rng, started=self.started
            )
            self._attempts = attempts
        return attempts

    @property
    def refused(self) -> bool:
        """Whether the last failure was a refused stream, retried (the transport tells its pool)."""
        return self._attempts is not None and self._attempts.last_refused

    def attempt(self) -> dict[str, Any]:
        """Keyword arguments for the next attempt's grpc call (what is left of the deadline)."""
        self.started = self.clock()
        if self._attempts is None:  # the first attempt: the whole budget
            return self.call.grpc_arguments(self.call.timeout)
        return self.call.grpc_arguments(self._attempts.remaining())

    def failed(self, error: grpc.RpcError) -> float | APIError:
        """Seconds to wait before the next attempt, or the typed error that ends the call."""
        delay = self.attempts.retry_delay(error.code(), error.trailing_metadata(), error.details())
        if delay is not None:
            return delay
        return final_error(error, self.method, self.attempts)

    def undecodable(self) -> InternalServerError:
        """The error for a response that could not be parsed (what grpcio raises as
        INTERNAL; grpc.aio returns None with status OK instead)."""
        return InternalServerError(
            "Exception deserializing response!",
            code=grpc.StatusCode.INTERNAL,
            method=self.method,
            attempts=self.attempts.number,
        )


def record_success(
    state: UnaryAttempts,
    initial: Any,
    trailing: Any,
    code: grpc.StatusCode | None,
    details: str | None,
) -> None:
    """Record the attempt that succeeded (only called when `UnaryAttempts.watched`)."""
    attempts = state.attempts
    info = state.call.call_info
    if info is not None:
        info.fill(initial, trailing, code, details, attempts.number, attempts.refused)
    # Servers may send the request id in either (the local server: unary calls, trailers).
    request_id = metadata_value(trailing or ()) or metadata_value(initial or ())
    _log(state, "OK", attempts.number, request_id)


def settle(state: UnaryAttempts, error: grpc.RpcError) -> float:
    """A failed attempt: returns the wait before the next, or raises the call's typed error.

    Records the attempt (and, when it ends the call, fills its CallInfo) when
    the call is watched, and tells the call's observation of a retry.
    """
    outcome = state.failed(error)
    retrying = not isinstance(outcome, APIError)
    number = state.attempts.number - retrying
    if state.watched:
        _log(state, _status(state, error), number, metadata_value(error.trailing_metadata() or ()))
    if not isinstance(outcome, APIError):
        if state.observation is not None:
            state.observation.retried(number, _status(state, error), outcome)
        return outcome
    info = state.call.call_info
    if info is not None:
        info.fill(
            outcome.initial_metadata,
            outcome.trailing_metadata,
            outcome.code,
            outcome.details,
            outcome.attempts,
            state.attempts.refused,
        )
    raise outcome from error


def _status(state: UnaryAttempts, error: grpc.RpcError) -> str:
    return "REFUSED_STREAM" if state.refused else error.code().name


def _log(state: UnaryAttempts, status: str, attempt: int, request_id: str | None) -> None:
    refused = state.attempts.refused
    log_attempt(
        state.method,
        status,
        state.started,
        state.clock(),
        attempt,
        request_id,
        f" refused={refused}" if refused else "",
    )
