"""The unary and stream state machines driven directly: no server, no grpc channel.

`UnaryAttempts` and `StreamState` decide everything a call does across its
attempts; the transports only wait. A fake RpcError stands in for what grpc
raises.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

import grpc
import pytest

import apex_grpc as mc
from apex_grpc._calls.stream import StreamState
from apex_grpc._calls.unary import UnaryAttempts, record_success, settle
from apex_grpc._requests.chats import list_sessions
from apex_grpc._retry import is_refused_stream
from apex_grpc._settings.client import ClientSettings

from ._builders import build, prepare_chat

pytestmark = pytest.mark.oldest

REFUSED = "Stream removed (RST_STREAM (Received RST_STREAM with error code 7))"
USER = [{"role": "user", "content": "hi"}]


class FakeRpcError(grpc.RpcError):
    """What grpc raises, as far as the state machines look at it."""

    def __init__(
        self,
        code: grpc.StatusCode,
        details: str = "",
        trailing: tuple[Any, ...] = (),
        initial: tuple[Any, ...] = (),
    ) -> None:
        self._code, self._details, self._trailing, self._initial = code, details, trailing, initial

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> tuple[Any, ...]:
        return self._trailing

    def initial_metadata(self) -> tuple[Any, ...]:
        return self._initial


class FakeOpener:
    """Records what a stream tells its opener."""

    def __init__(self) -> None:
        self.refusals = 0
        self.continued: list[Any] = []

    def __call__(self, timeout: float | None) -> Any:
        raise AssertionError("the state machine never opens calls itself")

    def release(self) -> None:
        pass

    def refused(self) -> None:
        self.refusals += 1

    def continue_with(self, prepared: Any) -> None:
        self.continued.append(prepared)


def settings(**options: Any) -> ClientSettings:
    defaults = {"retry": mc.RetryPolicy(initial_backoff=0.5, jitter=0.0)}
    return ClientSettings.create(environ={}, api_key="k", **{**defaults, **options})


def unary(timeout: float | None = 10.0, **call_options: Any) -> UnaryAttempts:
    prepared = build(list_sessions, settings(timeout=timeout), **call_options)
    return UnaryAttempts(prepared.method.path, prepared.settings)


def fail(state: UnaryAttempts, error: grpc.RpcError) -> float:
    """A failed attempt as the transports handle it: decided, recorded, raised or waited."""
    return settle(state, error)


def stream(**options: Any) -> StreamState:
    return StreamState(prepare_chat(settings(), {"messages": USER, **options}, stream=True))


def test_each_unary_attempt_gets_what_is_left_of_the_deadline() -> None:
    state = unary(timeout=10.0)
    first = state.attempt()["timeout"]
    assert 9.9 < first <= 10.0
    state.attempts.deadline -= 4.0  # four seconds pass
    assert fail(state, FakeRpcError(grpc.StatusCode.UNAVAILABLE)) == 0.5
    assert 5.9 < state.attempt()["timeout"] <= 6.0
    assert state.attempt()["metadata"][0][0] == "authorization"


def test_unary_failures_become_typed_errors_and_fill_call_info() -> None:
    info = mc.CallInfo()
    state = unary(max_retries=1, call_info=info)
    state.attempt()
    assert fail(state, FakeRpcError(grpc.StatusCode.UNAVAILABLE, "down")) == 0.5
    state.attempt()
    with pytest.raises(mc.UnavailableError) as caught:
        fail(state, FakeRpcError(grpc.StatusCode.UNAVAILABLE, "still down"))
    assert caught.value.attempts == 2 and caught.value.details == "still down"
    assert (info.code, info.attempts, info.refused) == (grpc.StatusCode.UNAVAILABLE, 2, 0)
    with pytest.raises(mc.NotFoundError):  # not retryable: fails at once
        fail(unary(), FakeRpcError(grpc.StatusCode.NOT_FOUND, "no such chat"))
    # The decision alone returns the error; it raises and records nothing itself.
    quiet = mc.CallInfo()
    state = unary(call_info=quiet)
    verdict = state.failed(FakeRpcError(grpc.StatusCode.NOT_FOUND, "no such chat"))
    assert isinstance(verdict, mc.NotFoundError) and quiet.code is None


def test_the_unary_decision_runs_on_the_clock_it_is_given() -> None:
    now = [100.0]
    prepared = build(list_sessions, settings(timeout=10.0))
    state = UnaryAttempts(prepared.method.path, prepared.settings, clock=lambda: now[0])
    assert state.attempt()["timeout"] == 10.0
    now[0] += 4.0
    assert fail(state, FakeRpcError(grpc.StatusCode.UNAVAILABLE)) == 0.5
    assert state.attempt()["timeout"] == 6.0 and state.started == 104.0


def test_a_refused_unary_attempt_is_retried_soon_and_for_free() -> None:
    info = mc.CallInfo()
    state = unary(max_retries=0, call_info=info)
    for waited in (0.005, 0.01, 0.02):  # short, doubling: a burst's other refusals land first
        state.attempt()
        assert fail(state, FakeRpcError(grpc.StatusCode.UNAVAILABLE, REFUSED)) == waited
        assert state.refused  # the transport tells its pool
    state.attempt()
    with pytest.raises(mc.UnavailableError):  # max_retries=0: an ordinary outage is final
        fail(state, FakeRpcError(grpc.StatusCode.UNAVAILABLE, "connection reset"))
    assert not state.refused and (info.attempts, info.refused) == (4, 3)


def test_a_call_refused_until_its_deadline_ends_in_deadline_exceeded() -> None:
    state = unary(timeout=10.0)
    state.attempt()
    state.attempts.deadline -= 10.5  # the deadline has passed
    with pytest.raises(mc.DeadlineExceededError, match="refused the call"):
        fail(state, FakeRpcError(grpc.StatusCode.UNAVAILABLE, REFUSED))


def test_refused_stream_is_recognised_only_on_unavailable_code_7() -> None:
    assert is_refused_stream(grpc.StatusCode.UNAVAILABLE, REFUSED)
    assert is_refused_stream(
        grpc.StatusCode.UNAVAILABLE, "Stream removed (RST_STREAM error code 7)"
    )
    assert not is_refused_stream(grpc.StatusCode.UNAVAILABLE, "RST_STREAM with error code 2")
    assert not is_refused_stream(grpc.StatusCode.INTERNAL, REFUSED)
    assert not is_refused_stream(grpc.StatusCode.UNAVAILABLE, None)


def test_a_stream_is_retried_only_before_its_first_chunk() -> None:
    state, opener = stream(resume=False), FakeOpener()
    assert state.retry_delay(FakeRpcError(grpc.StatusCode.UNAVAILABLE), opener) == 0.5
    state.accumulator.add(mc.ChatCompletionChunkResponse())
    assert state.retry_delay(FakeRpcError(grpc.StatusCode.UNAVAILABLE), opener) is None
    with pytest.raises(mc.UnavailableError):
        state.fail(FakeRpcError(grpc.StatusCode.UNAVAILABLE, "gone"))
    assert state.finished


def test_a_refused_stream_attempt_tells_the_opener_and_costs_no_retry() -> None:
    state, opener = stream(max_retries=0), FakeOpener()
    assert state.retry_delay(FakeRpcError(grpc.StatusCode.UNAVAILABLE, REFUSED), opener) == 0.005
    assert opener.refusals == 1 and state.attempts.refused == 1
    assert state.retry_delay(FakeRpcError(grpc.StatusCode.UNAVAILABLE, "down"), opener) is None


def test_stream_limits_switch_from_first_chunk_to_idle() -> None:
    state = stream(first_chunk_timeout=2.0, idle_timeout=0.5)
    assert state.watched and state.wait_limit() == 2.0
    assert state.stall_deadline() is None  # not waiting yet
    state.waiting_since = 100.0
    assert state.stall_deadline() == 102.0
    state.accumulator.add(mc.ChatCompletionChunkResponse())
    assert state.wait_limit() == 0.5 and state.stall_deadline() == 100.5
    state.stalled = True
    error = state.stall_error()
    assert isinstance(error, mc.StreamTimeoutError) and "idle timeout of 0.5s" in str(error)
    assert state.retry_delay(FakeRpcError(grpc.StatusCode.CANCELLED), FakeOpener()) is None
    with pytest.raises(mc.StreamTimeoutError):  # a stall is reported as such, not as CANCELLED
        state.fail(FakeRpcError(grpc.StatusCode.CANCELLED))


def test_an_unwatched_stream_has_no_limits() -> None:
    state = stream()
    assert not state.watched and state.wait_limit() is None
    state.ended()
    assert state.finished


RESOURCE_EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
SESSIONS = "/apex.v1.ApexService/GetChatSessions"
STREAM = "/apex.v1.ApexService/ChatCompletionStream"


def test_each_unary_attempt_carries_the_calls_metadata_compression_and_wait_for_ready() -> None:
    state = unary(metadata={"x-trace": "t1"}, compression=True, wait_for_ready=True)
    kwargs = state.attempt()
    assert ("x-trace", "t1") in kwargs["metadata"]
    assert kwargs["compression"] is grpc.Compression.Gzip and kwargs["wait_for_ready"] is True
    assert set(kwargs) == {"timeout", "metadata", "compression", "wait_for_ready"}


def test_a_successful_unary_call_fills_call_info() -> None:
    info = mc.CallInfo()
    state = unary(call_info=info)
    assert state.watched  # someone looks: the transport reads the metadata
    state.attempt()
    fail(state, FakeRpcError(grpc.StatusCode.UNAVAILABLE, REFUSED))
    state.attempt()
    record_success(state, (("x-request-id", "r-9"),), (("t", "v"),), grpc.StatusCode.OK, "fine")
    assert (info.code, info.details, info.attempts, info.refused) == (
        grpc.StatusCode.OK,
        "fine",
        2,
        1,
    )
    assert info.initial_metadata == (("x-request-id", "r-9"),)
    assert info.trailing_metadata == (("t", "v"),) and info.request_id == "r-9"


def test_a_failed_unary_call_fills_call_info_from_the_error() -> None:
    info = mc.CallInfo()
    state = unary(call_info=info)
    state.attempt()
    error = FakeRpcError(
        grpc.StatusCode.NOT_FOUND, "no such chat", (("x-request-id", "r-4"),), (("i", "1"),)
    )
    with pytest.raises(mc.NotFoundError) as caught:
        fail(state, error)
    assert caught.value.method == SESSIONS and caught.value.request_id == "r-4"
    assert info.trailing_metadata == (("x-request-id", "r-4"),) and info.request_id == "r-4"
    assert info.details == "no such chat" and info.initial_metadata == (("i", "1"),)


def test_nobody_looking_means_no_metadata_is_read() -> None:
    assert not unary().watched


def test_a_unary_call_waits_as_long_as_the_servers_pushback_says() -> None:
    state = unary()
    state.attempt()
    hint = (("grpc-retry-pushback-ms", "1500"),)
    assert fail(state, FakeRpcError(RESOURCE_EXHAUSTED, "busy", hint)) == 1.5


def logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The apex_grpc log lines, without their durations (which vary run to run)."""
    durations = [float(d) for d in re.findall(r" duration_ms=(\d+\.\d\d)", caplog.text)]
    assert len(durations) == len(caplog.messages) and all(0 <= d < 60_000 for d in durations)
    return [re.sub(r" duration_ms=\d+\.\d\d", "", m) for m in caplog.messages]


def test_each_unary_attempt_is_one_debug_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="apex_grpc")
    state = unary()
    assert state.watched  # DEBUG on: the request ids are read for the log
    state.attempt()
    fail(state, FakeRpcError(grpc.StatusCode.UNAVAILABLE, REFUSED))
    state.attempt()
    fail(state, FakeRpcError(grpc.StatusCode.UNAVAILABLE, "down", (("x-request-id", "r-2"),)))
    state.attempt()
    record_success(state, (("x-request-id", "r-3"),), (), grpc.StatusCode.OK, "")
    assert logged(caplog) == [
        f"rpc {SESSIONS} status=REFUSED_STREAM attempt=1 request_id=- refused=1",
        f"rpc {SESSIONS} status=UNAVAILABLE attempt=2 request_id=r-2 refused=1",
        f"rpc {SESSIONS} status=OK attempt=3 request_id=r-3 refused=1",
    ]
    state = unary()
    state.attempt()
    with pytest.raises(mc.NotFoundError):
        fail(state, FakeRpcError(grpc.StatusCode.NOT_FOUND))
    assert logged(caplog)[-1] == f"rpc {SESSIONS} status=NOT_FOUND attempt=1 request_id=-"
    state = unary()  # a server that sends the request id in its trailers only (the local one)
    state.attempt()
    record_success(state, (), (("x-request-id", "r-t"),), grpc.StatusCode.OK, "")
    assert logged(caplog)[-1] == f"rpc {SESSIONS} status=OK attempt=1 request_id=r-t"


def test_each_stream_attempt_is_one_debug_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="apex_grpc")
    state, opener = stream(), FakeOpener()
    state.retry_delay(FakeRpcError(grpc.StatusCode.UNAVAILABLE, REFUSED), opener)
    state.retry_delay(FakeRpcError(grpc.StatusCode.INTERNAL, "boom"), opener)
    state.accumulator.add(mc.ChatCompletionChunkResponse())
    state.ended((("x-request-id", "r-1"),))
    state.ended()  # once only
    assert logged(caplog) == [
        f"rpc {STREAM} status=REFUSED_STREAM attempt=2 request_id=- chunks=0 refused=1 retrying",
        f"rpc {STREAM} status=INTERNAL attempt=2 request_id=- chunks=0 refused=1",
        f"rpc {STREAM} status=OK attempt=2 request_id=r-1 chunks=1 refused=1",
    ]
    state = stream()
    state.accumulator.add(mc.ChatCompletionChunkResponse())
    with pytest.raises(mc.UnavailableError) as caught:
        state.fail(FakeRpcError(grpc.StatusCode.UNAVAILABLE, "gone"))
    assert caught.value.method == STREAM
    assert logged(caplog)[-1] == f"rpc {STREAM} status=UNAVAILABLE attempt=1 request_id=- chunks=1"
    state = stream(first_chunk_timeout=1.0)
    state.stall_error()
    assert logged(caplog)[-1] == f"rpc {STREAM} status=STALLED attempt=1 request_id=- chunks=0"


def test_a_stream_waits_as_long_as_the_servers_pushback_says() -> None:
    state = stream()
    hint = (("grpc-retry-pushback-ms", "300"),)
    assert state.retry_delay(FakeRpcError(RESOURCE_EXHAUSTED, "busy", hint), FakeOpener()) == 0.3


def test_a_stream_shares_one_deadline_across_its_attempts() -> None:
    state = StreamState(prepare_chat(settings(timeout=5.0), {"messages": USER}, stream=True))
    left = state.attempts.remaining()
    assert left is not None and 4.9 < left <= 5.0
    assert not state.finished and not state.stalled


def test_a_first_chunk_stall_is_a_deadline_error_naming_the_limit() -> None:
    state = stream(first_chunk_timeout=2.0)
    state.retry_delay(FakeRpcError(grpc.StatusCode.UNAVAILABLE, REFUSED), FakeOpener())
    error = state.stall_error()
    assert state.finished
    assert error.code is grpc.StatusCode.DEADLINE_EXCEEDED and error.method == STREAM
    assert error.attempts == 2
    assert "no chunk within the first-chunk timeout of 2s (0 chunks received)" in str(error)


def test_a_reopened_stream_restarts_its_first_chunk_wait() -> None:
    state = stream(first_chunk_timeout=2.0)
    state.reopened()
    assert state.waiting_since is None  # not reading yet: nothing to restart
    state.waiting_since = 1.0
    before = time.monotonic()
    state.reopened()
    assert state.waiting_since == state.started >= before


def chunk(text: str, finish: str = "", ident: str = "s1") -> mc.ChatCompletionChunkResponse:
    return mc.ChatCompletionChunkResponse(
        id=ident,
        created=7,
        model="m",
        choices=[{"delta": {"content": text, "role": "assistant"}, "finish_reason": finish}],
    )


UNAVAILABLE = grpc.StatusCode.UNAVAILABLE


def test_a_stream_cut_after_chunks_resumes_at_once_with_a_continuation() -> None:
    state, opener = stream(timeout=30.0), FakeOpener()
    state.add(chunk("Hello, "))
    state.add(chunk("wor"))
    assert state.retry_delay(FakeRpcError(UNAVAILABLE, "Socket closed"), opener) == 0.0
    (prepared,) = opener.continued
    messages = [(m.role, m.content) for m in prepared.request.messages]
    assert messages == [("user", "hi"), ("assistant", "Hello, wor")]
    assert ("x-apex-continue", "1") in prepared.settings.metadata
    assert state.resumes == 1 and state.attempts.number == 2 and state.confirming
    # The continuation's chunks become the first attempt's: one id, no second role.
    state.reopened()
    state.confirm((("x-apex-continue", "1"),))
    later = chunk("ld", "stop", ident="s2")
    state.add(later)
    assert (later.id, later.created, later.model) == ("s1", 7, "m")
    assert later.choices[0].delta.role == ""
    assert state.accumulator.text() == "Hello, world"
    # Cut again after progress: the second continuation carries the whole prefix once.
    assert state.retry_delay(FakeRpcError(UNAVAILABLE), opener) is None  # finished: nothing left


def test_a_second_cut_resumes_from_the_whole_prefix_and_a_cut_without_progress_is_a_retry() -> None:
    state, opener = stream(timeout=30.0), FakeOpener()
    state.add(chunk("ab"))
    assert state.retry_delay(FakeRpcError(UNAVAILABLE), opener) == 0.0
    state.reopened()
    # The continuation fails before its first chunk: a retry with backoff, not a resume.
    assert state.retry_delay(FakeRpcError(UNAVAILABLE), opener) == 0.5
    assert state.resumes == 1 and len(opener.continued) == 1
    state.reopened()
    state.confirm((("x-apex-continue", "1"),))
    state.add(chunk("cd"))
    assert state.retry_delay(FakeRpcError(UNAVAILABLE), opener) == 0.0
    assert [m.content for m in opener.continued[-1].request.messages] == ["hi", "abcd"]
    assert state.resumes == 2


@pytest.mark.parametrize(
    ("options", "code", "finish", "why"),
    [
        ({"resume": False}, UNAVAILABLE, "", "resuming is off"),
        ({}, grpc.StatusCode.INTERNAL, "", "not one another replica can finish"),
        ({"timeout": 1e-9}, UNAVAILABLE, "", "the deadline was spent"),
    ],
)
def test_a_cut_that_cannot_be_resumed_names_how_far_the_answer_got(
    options: dict[str, Any], code: grpc.StatusCode, finish: str, why: str
) -> None:
    state, opener = stream(**options), FakeOpener()
    state.add(chunk("abc", finish))
    assert state.retry_delay(FakeRpcError(code, "gone"), opener) is None
    assert not opener.continued
    with pytest.raises(mc.APIError) as caught:
        state.fail(FakeRpcError(code, "gone"))
    assert isinstance(caught.value, mc.StreamInterruptedError) is (code is UNAVAILABLE)
    if code is UNAVAILABLE:
        message = str(caught.value)
        assert "cut after 1 chunks (3 characters); " in message and why in message


def test_resumes_are_bounded() -> None:
    from apex_grpc._calls.stream import MAX_RESUMES

    state, opener = stream(), FakeOpener()
    for _ in range(MAX_RESUMES):
        state.add(chunk("x"))
        assert state.retry_delay(FakeRpcError(UNAVAILABLE), opener) == 0.0
        state.reopened()
        state.confirm((("x-apex-continue", "1"),))
    state.add(chunk("x"))
    assert state.retry_delay(FakeRpcError(UNAVAILABLE), opener) is None
    with pytest.raises(mc.StreamInterruptedError, match=f"resumed {MAX_RESUMES} times"):
        state.fail(FakeRpcError(UNAVAILABLE))


def test_a_server_that_does_not_continue_is_a_typed_error() -> None:
    state, opener = stream(), FakeOpener()
    state.add(chunk("abc"))
    assert state.retry_delay(FakeRpcError(UNAVAILABLE), opener) == 0.0
    state.reopened()
    with pytest.raises(mc.StreamInterruptedError, match="did not continue the answer") as caught:
        state.confirm((("x-request-id", "r"),))
    assert caught.value.code is grpc.StatusCode.UNIMPLEMENTED
    assert "cut after 1 chunks (3 characters); resuming it failed" in str(caught.value)
    assert state.finished


def test_resuming_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    state = stream()
    state.add(chunk("abc"))
    with caplog.at_level(logging.INFO, logger="apex_grpc"):
        state.retry_delay(FakeRpcError(UNAVAILABLE), FakeOpener())
    assert "resuming after UNAVAILABLE: 1 chunks, 3 characters received (resume 1)" in caplog.text


def test_a_cut_before_any_text_starts_the_answer_over() -> None:
    state, opener = stream(), FakeOpener()
    state.add(chunk(""))
    assert state.retry_delay(FakeRpcError(UNAVAILABLE), opener) == 0.0
    assert not opener.continued and not state.confirming and state.resumes == 1


def test_a_whole_answer_whose_status_was_lost_ends_as_a_whole_answer() -> None:
    state, opener = stream(), FakeOpener()
    state.add(chunk("abc", "stop"))
    assert state.retry_delay(FakeRpcError(UNAVAILABLE), opener) is None  # nothing to continue
    assert not opener.continued
    assert not state.answered_anyway(FakeRpcError(grpc.StatusCode.INTERNAL))
    assert state.answered_anyway(FakeRpcError(UNAVAILABLE)) and state.finished
    off = stream(resume=False)
    off.add(chunk("abc", "stop"))
    assert not off.answered_anyway(FakeRpcError(UNAVAILABLE))
