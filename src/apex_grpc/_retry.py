"""Retries and deadlines, with no I/O.

`RetryPolicy` is a value users can copy and change. `Attempts` tracks one
logical call: the overall deadline shared by all its attempts, how many
attempts were made, and whether (and how long to wait before) trying again.
The unary and stream decision objects (`_unary.UnaryAttempts`,
`_calls.stream.StreamState`) are built on it.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import grpc

from apex_grpc._errors import (
    APIError,
    DeadlineExceededError,
    ValidationError,
    from_rpc_error,
    is_message_too_large,
)

PUSHBACK_KEY = "grpc-retry-pushback-ms"
MAX_PUSHBACK_LIMIT = 86_400.0
"""The largest `RetryPolicy.max_pushback` (a day): a sleep must stay within the platform's."""


@dataclass(frozen=True)
class RetryPolicy:
    """When and how a failed call is tried again.

    Only `retryable_codes` are retried; RESOURCE_EXHAUSTED is retried only
    when the server sends a ``grpc-retry-pushback-ms`` hint (a bare rate
    limit is not a reason to hammer the server). The wait before retry n
    (from 0) is ``min(initial_backoff * multiplier**n, max_backoff)`` with
    `jitter` of it drawn at random, unless the server's pushback says
    otherwise. A pushback below zero means "do not retry"; one longer than
    what is left of the call's deadline, or (with no deadline) than
    `max_pushback`, ends the call at once with the server's error and a hint
    saying how long it asked to wait.
    """

    max_retries: int = 2
    initial_backoff: float = 0.5
    max_backoff: float = 8.0
    multiplier: float = 2.0
    jitter: float = 0.25
    """Fraction of each backoff that is randomised: 0.25 waits 75-100 % of it."""
    retryable_codes: frozenset[grpc.StatusCode] = field(
        default_factory=lambda: frozenset({grpc.StatusCode.UNAVAILABLE})
    )
    retry_on_pushback_codes: frozenset[grpc.StatusCode] = field(
        default_factory=lambda: frozenset({grpc.StatusCode.RESOURCE_EXHAUSTED})
    )
    max_pushback: float = 60.0
    """The longest server pushback (seconds) a call without a deadline waits for; a longer
    hint fails the call at once (a call with a deadline waits at most what is left of it)."""

    def __post_init__(self) -> None:
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int):
            raise ValidationError("max_retries", f"must be an integer, got {self.max_retries!r}")
        if self.max_retries < 0:
            raise ValidationError("max_retries", f"must be >= 0, got {self.max_retries}")
        if not self.initial_backoff >= 0 or not self.max_backoff >= self.initial_backoff:
            raise ValidationError(
                "retry", "backoffs must satisfy 0 <= initial_backoff <= max_backoff"
            )
        if not self.multiplier >= 1:
            raise ValidationError("retry.multiplier", f"must be >= 1, got {self.multiplier}")
        if not 0 <= self.jitter <= 1:
            raise ValidationError("retry.jitter", f"must be in [0, 1], got {self.jitter}")
        if not 0 <= self.max_pushback <= MAX_PUSHBACK_LIMIT:
            raise ValidationError(
                "retry.max_pushback",
                f"must be 0 to {MAX_PUSHBACK_LIMIT:g} seconds, got {self.max_pushback}",
            )

    def with_max_retries(self, max_retries: int) -> RetryPolicy:
        """A copy with another retry count."""
        return self if max_retries == self.max_retries else replace(self, max_retries=max_retries)

    def backoff(self, retry_number: int, rng: Callable[[], float] = random.random) -> float:
        """Seconds to wait before retry `retry_number` (0 for the first retry)."""
        base = min(self.initial_backoff * self.multiplier**retry_number, self.max_backoff)
        return base * (1.0 - self.jitter * rng())


PUSHBACK_CAP_MS = 10**18
"""Pushback hints are read up to this many milliseconds (32 million years): any longer hint
means "never" just as well, and past a float's range would raise OverflowError."""


def pushback_seconds(trailing_metadata: Iterable[Any] | None) -> float | None:
    """The server's retry hint in seconds; negative means "do not retry"; None if absent.

    Never raises: garbage reads as -1 (gRFC A6: treat a malformed hint as "stop"),
    a huge hint as PUSHBACK_CAP_MS.
    """
    for key, value in trailing_metadata or ():
        if key == PUSHBACK_KEY:
            text = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
            try:
                milliseconds = int(text.strip())
            except ValueError:  # also digits past Python's int-from-text limit
                return -1.0
            return min(milliseconds, PUSHBACK_CAP_MS) / 1000.0
    return None


def pushback_hint(seconds: float, limit: str) -> str:
    """Why a call with a pushback hint was not retried (`limit`: what it would pass)."""
    milliseconds = round(seconds * 1000)
    return f"the server asked to retry in {milliseconds} ms, past {limit}; not retried"


REFUSED_STREAM = re.compile(r"RST_STREAM.*(?:error code 7\b|REFUSED_STREAM)", re.DOTALL)
"""How grpc reports a stream the server refused before it saw the call (HTTP/2 code 7)."""
MAX_REFUSALS = 64
"""Refused attempts of one call retried for free; past this they spend `max_retries`."""
REFUSAL_BACKOFF = 0.005
"""The wait before a refused attempt's retry, doubling per refusal: long enough for the other
refusals of a burst to arrive first and teach the pool the server's limit, so the retries go
to connections with room instead of back to the full one."""
REFUSAL_BACKOFF_CAP = 0.25


def is_refused_stream(code: grpc.StatusCode | None, details: str | None) -> bool:
    """Whether a failure is REFUSED_STREAM: the server never started the call, so any retry is safe.

    grpc reports it as UNAVAILABLE "Stream removed (RST_STREAM ... error code 7)".
    """
    return (
        code is grpc.StatusCode.UNAVAILABLE
        and details is not None
        and REFUSED_STREAM.search(details) is not None
    )


def final_error(error: grpc.RpcError, method: str, attempts: Attempts) -> APIError:
    """The typed error for a failure that will not be retried.

    A call refused by the server until its deadline left no time for another
    try ends in DeadlineExceededError: the deadline, not an outage, ended it.
    """
    details = error.details() if hasattr(error, "details") else None
    if is_refused_stream(error.code(), details):
        left = attempts.remaining()
        if left is not None and left < REFUSAL_BACKOFF_CAP:
            return from_rpc_error(
                error,
                method=method,
                attempts=attempts.number,
                cls=DeadlineExceededError,
                code=grpc.StatusCode.DEADLINE_EXCEEDED,
                details=(
                    f"the server refused the call {attempts.refused + 1} times (no stream free "
                    "on its connections) until the deadline passed"
                ),
            )
    return from_rpc_error(error, method=method, attempts=attempts.number, hint=attempts.refusal)


class Attempts:
    """The state of one logical call across its attempts.

    ``timeout`` is the overall budget in seconds (None: no deadline); each
    attempt gets what is left of it. Attempts the server refused before it
    saw them (REFUSED_STREAM) are retried after a short backoff, on another
    connection, and do not spend `policy.max_retries`.
    """

    __slots__ = (
        "_clock",
        "_rng",
        "deadline",
        "last_refused",
        "number",
        "policy",
        "refusal",
        "refused",
        "retried",
    )

    def __init__(
        self,
        policy: RetryPolicy,
        timeout: float | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
        started: float | None = None,
    ) -> None:
        self.policy = policy
        if timeout is None:
            self.deadline: float | None = None
        else:  # counted from `started`, the first attempt's start on `clock` (None: now)
            self.deadline = (clock() if started is None else started) + timeout
        self.number = 1
        """Attempts made so far, refused ones included."""
        self.retried = 0
        """Retries that spent the policy's `max_retries`."""
        self.refused = 0
        """Attempts the server refused before seeing them (REFUSED_STREAM)."""
        self.last_refused = False
        """Whether the failure `retry_delay` last judged was a refusal it retries."""
        self.refusal: str | None = None
        """Why `retry_delay` last declined a server's pushback (too long), for the error."""
        self._clock = clock
        self._rng = rng

    def remaining(self) -> float | None:
        """Seconds left before the overall deadline (None: no deadline); may be <= 0."""
        return None if self.deadline is None else self.deadline - self._clock()

    def retry_delay(
        self,
        code: grpc.StatusCode | None,
        trailing_metadata: Iterable[Any] | None,
        details: str | None = None,
    ) -> float | None:
        """How long to wait before the next attempt, or None if the call must fail now.

        A refused stream is retried while time is left, after a short backoff
        (REFUSAL_BACKOFF, doubling), without spending a retry. Otherwise a call
        is retried when retries are left, the code is retryable (or
        pushback-retryable with a non-negative pushback), and the wait still
        leaves time before the deadline. A message over grpc's size limit is
        never retried. A pushback past the deadline (or, with none, past
        `policy.max_pushback`) ends the call, noting why in `refusal`.
        """
        self.last_refused = False
        self.refusal = None
        if self.refused < MAX_REFUSALS and is_refused_stream(code, details):
            delay: float = min(REFUSAL_BACKOFF * 2**self.refused, REFUSAL_BACKOFF_CAP)
            left = self.remaining()
            if left is not None and delay >= left:
                return None
            self.refused += 1
            self.number += 1
            self.last_refused = True
            return delay
        policy = self.policy
        if code is None or self.retried >= policy.max_retries:
            return None
        if is_message_too_large(code, details):
            return None  # the same message fails the same way
        pushback = pushback_seconds(trailing_metadata)
        if code in policy.retryable_codes:
            delay = pushback if pushback is not None else policy.backoff(self.retried, self._rng)
        elif code in policy.retry_on_pushback_codes and pushback is not None:
            delay = pushback
        else:
            return None
        if delay < 0:
            return None
        left = self.remaining()
        if pushback is not None:
            if left is not None and pushback >= left:
                self.refusal = pushback_hint(pushback, "the call's deadline")
                return None
            if left is None and pushback > policy.max_pushback:
                self.refusal = pushback_hint(
                    pushback, f"RetryPolicy.max_pushback ({policy.max_pushback:g} s)"
                )
                return None
        if left is not None and delay >= left:
            return None
        self.retried += 1
        self.number += 1
        return delay
