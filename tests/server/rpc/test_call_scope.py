"""The service layer without sockets: each call's own record (log line, metrics) and its handlers.

See test_servicer.py. These pin what a call leaves behind besides its
answer: the one INFO line and the metrics report with its method, status,
duration, peer and request id; the test knobs that are not failures; and the
serializers of the handlers `ApexRoutes` gives grpc (grpc_testing never calls them).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from apex_grpc_proto.apex.v1 import apex_pb2 as pb
from apex_grpc_server._engines import EchoEngine
from apex_grpc_server._metrics.recorder import Metrics

SERVICE = "/apex.v1.ApexService"


@dataclass(frozen=True)
class _Details(grpc.HandlerCallDetails):  # type: ignore[misc]
    method: str
    invocation_metadata: Any


class _Ended(Metrics):
    def __init__(self) -> None:
        self.ended: list[tuple[str, str, float]] = []

    def call_ended(self, method: str, code: str, duration_s: float) -> None:
        self.ended.append((method, code, duration_s))


@pytest.fixture
def info_lines() -> Iterator[list[logging.LogRecord]]:
    """The INFO records of the server's logger, turned on for the test."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("apex_grpc_server")
    level = logger.level
    handler = Keep(logging.INFO)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield records
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_each_call_logs_and_reports_its_method_status_duration_peer_and_request_id(
    apex: Any, info_lines: list[logging.LogRecord]
) -> None:
    metrics = apex.routes.policy.metrics = _Ended()
    ok = apex.unary("GetChatSessions", pb.GetChatSessionsRequest())
    apex.run(apex.store.close())  # every store call fails from now on: INTERNAL
    echo = (*apex.authorization, ("x-grpc-test-echo-trailing-bin", b"e"))
    failed = apex.unary("GetChatSessions", pb.GetChatSessionsRequest(), echo)
    assert failed.trailing["x-grpc-test-echo-trailing-bin"] == b"e"  # the call's trailers kept
    outcomes = [(ok, "OK"), (failed, "INTERNAL")]
    assert [(m, c) for m, c, _ in metrics.ended] == [
        (f"{SERVICE}/GetChatSessions", c) for _, c in outcomes
    ]
    assert all(0 <= duration_s < 5 for _, _, duration_s in metrics.ended)
    lines = [r for r in info_lines if r.levelno == logging.INFO]
    assert len(lines) == 2
    for record, (outcome, code), (_, _, duration_s) in zip(
        lines, outcomes, metrics.ended, strict=True
    ):
        assert record.args == (
            f"{SERVICE}/GetChatSessions",
            code,
            pytest.approx(duration_s * 1000),
            "socketless",
            outcome.trailing["x-request-id"],
        )


def test_the_sleep_and_fail_times_knobs(apex: Any) -> None:
    request = pb.GetChatSessionsRequest()
    asleep = apex.unary("GetChatSessions", request, (*apex.authorization, ("x-echo-sleep-ms", "1")))
    assert asleep.code is grpc.StatusCode.OK
    once = (
        *apex.authorization,
        ("x-echo-fail-code", "UNAVAILABLE"),
        ("x-echo-fail-times", "1"),
        ("x-echo-fail-key", "k"),
    )
    codes = [apex.unary("GetChatSessions", request, once).code for _ in range(3)]
    assert codes == [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.OK, grpc.StatusCode.OK]


@pytest.mark.parametrize(
    ("name", "response"),
    [
        ("GetChatSessions", pb.GetChatSessionsResponse(chat_sessions=[pb.ChatSession(id="c")])),
        ("ChatCompletionStream", pb.ChatCompletionChunkResponse(id="x", model="echo")),
    ],
)
def test_an_admitted_call_is_answered_with_its_response_serializer(
    apex: Any, name: str, response: Any
) -> None:
    handler = apex.routes.service(_Details(f"{SERVICE}/{name}", apex.authorization))
    assert handler.response_serializer(response) == response.SerializeToString()


def test_an_aborts_own_trailers_replace_the_calls(socketless_server: Any) -> None:
    """A context overflow's x-apex-context-tokens replaces the one every chat call carries."""
    apex = socketless_server(echo_context=64)
    request = pb.ChatCompletionRequest(messages=[pb.ChatMessage(role="user", content="x" * 100)])
    outcome = apex.unary("ChatCompletion", request)
    assert outcome.code is grpc.StatusCode.INVALID_ARGUMENT
    assert sorted(outcome.trailing_keys) == [
        "x-apex-context-tokens",
        "x-apex-prompt-tokens",
        "x-request-id",
    ]
    assert outcome.trailing["x-apex-context-tokens"] == "64"


def test_a_cancelled_call_is_reported_cancelled(apex: Any) -> None:
    """A handler cancelled mid-call (the peer went away) is recorded as CANCELLED."""

    class Cancelled(EchoEngine):
        async def stream(self, request: Any) -> AsyncGenerator[Any, None]:
            raise asyncio.CancelledError
            yield  # an async generator

    metrics = apex.routes.policy.metrics = _Ended()
    apex.servicer.completions.engine = Cancelled()
    request = pb.ChatCompletionRequest(messages=[pb.ChatMessage(role="user", content="hi")])
    # A cancelled call has no status to show: grpc_testing, asked for one, says so.
    with pytest.raises(ValueError, match="No initial metadata despite status code"):
        apex.unary("ChatCompletion", request)
    assert [(m, c) for m, c, _ in metrics.ended] == [(f"{SERVICE}/ChatCompletion", "CANCELLED")]


def test_a_call_that_fails_while_opening_still_names_its_request_id(apex: Any) -> None:
    async def broken_open(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("opening failed")

    apex.routes.policy.open = broken_open
    outcome = apex.unary("GetChatSessions", pb.GetChatSessionsRequest())
    request_id = outcome.trailing["x-request-id"]
    assert isinstance(request_id, str) and len(request_id) == 32
    assert (outcome.code, outcome.details) == (
        grpc.StatusCode.INTERNAL,
        f"internal server error (request id {request_id})",
    )
