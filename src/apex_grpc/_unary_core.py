"""What a unary call decides across its attempts, apart from how it waits.

`UnaryCall` gives each attempt its grpc arguments (with what is left of the
overall deadline), decides after a failure whether to retry and how long to
wait, and records the outcome (CallInfo, the DEBUG log line). Both transports
drive it; they differ only in ``await``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import grpc

from apex_grpc._call import Call, CallPlan
from apex_grpc._errors import from_rpc_error, metadata_value
from apex_grpc._logging import log_attempt, logger
from apex_grpc._retry import Attempts


class UnaryCall:
    """The I/O-free state of one unary call."""

    __slots__ = ("attempts", "call", "detailed", "plan", "started")

    def __init__(self, call: Call[Any, Any], plan: CallPlan) -> None:
        self.call = call
        self.plan = plan
        self.attempts = Attempts(plan.retry, plan.timeout)
        # Reading metadata costs a little; do it only when someone looks at it.
        self.detailed = plan.call_info is not None or logger.isEnabledFor(logging.DEBUG)
        self.started = 0.0

    def attempt(self) -> dict[str, Any]:
        """Keyword arguments for the next attempt's grpc call."""
        plan = self.plan
        self.started = time.monotonic()
        return {
            "timeout": self.attempts.remaining(),
            "metadata": plan.metadata,
            "compression": plan.compression,
            "wait_for_ready": plan.wait_for_ready,
        }

    def succeeded(
        self, initial: Any, trailing: Any, code: grpc.StatusCode | None, details: str | None
    ) -> None:
        """Record a successful attempt (only called when `detailed`)."""
        info = self.plan.call_info
        if info is not None:
            info.fill(initial, trailing, code, details, self.attempts.number)
        self._log("OK", self.attempts.number, metadata_value(initial or ()))

    def failed(self, error: grpc.RpcError) -> float:
        """Seconds to wait before retrying, or raise the typed error for this failure."""
        code, trailing = error.code(), error.trailing_metadata()
        delay = self.attempts.retry_delay(code, trailing)
        if self.detailed:
            number = self.attempts.number - (delay is not None)
            self._log(code.name, number, metadata_value(trailing or ()))
        if delay is not None:
            return delay
        failure = from_rpc_error(error, method=self.call.method.path, attempts=self.attempts.number)
        info = self.plan.call_info
        if info is not None:
            info.fill(
                failure.initial_metadata,
                failure.trailing_metadata,
                failure.code,
                failure.details,
                failure.attempts,
            )
        raise failure from error

    def _log(self, status: str, attempt: int, request_id: str | None) -> None:
        log_attempt(
            self.call.method.path, status, self.started, time.monotonic(), attempt, request_id
        )


def stream_opener(invoke: Any, request: Any, plan: CallPlan) -> Callable[[float | None], Any]:
    """A function starting one attempt of a server-streaming call with a given timeout."""

    def open_call(timeout: float | None) -> Any:
        return invoke(
            request,
            timeout=timeout,
            metadata=plan.metadata,
            compression=plan.compression,
            wait_for_ready=plan.wait_for_ready,
        )

    return open_call
