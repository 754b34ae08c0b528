"""Unary calls over loopback: metadata and deadlines as the server saw them, errors, retries."""

from __future__ import annotations

import itertools
import time

import grpc
import pytest

import apex_grpc as mc
from apex_grpc._version import __version__

from ._scripted_server import Failure, ScriptedServer
from .conftest import FAST_RETRY, KEY

pytestmark = pytest.mark.oldest
USER = [{"role": "user", "content": "hello"}]
CODES = [c for c in grpc.StatusCode if c is not grpc.StatusCode.OK]


def test_metadata_the_server_saw(client: mc.ApexClient, scripted: ScriptedServer) -> None:
    client.with_options(metadata={"x-trace": "t1"}).chat.completions.create(messages=USER)
    (seen,) = scripted.calls("ChatCompletion")
    assert seen.metadata["authorization"] == f"Bearer {KEY}"
    assert seen.metadata["x-source"] == "apex-grpc"
    assert seen.metadata["x-client-id"] == "apex-grpc"
    assert seen.metadata["x-client-version"] == __version__
    assert seen.metadata["x-trace"] == "t1"
    assert str(seen.metadata.get("user-agent", "")).startswith(f"apex-grpc/{__version__}")


async def test_metadata_the_server_saw_async(
    aclient: mc.AsyncApexClient, scripted: ScriptedServer
) -> None:
    await aclient.web_search.search(search_query="q", metadata=[("x-per-call", "yes")])
    (seen,) = scripted.calls("WebRetrieval")
    assert seen.metadata["authorization"] == f"Bearer {KEY}"
    assert seen.metadata["x-per-call"] == "yes"
    assert seen.request.search_query == "q"


def test_app_name_goes_out_as_x_source(scripted: ScriptedServer) -> None:
    with mc.ApexClient(api_key=KEY, base_url=scripted.target, secure=False, app_name="my-app") as c:
        c.chats.list_sessions()
    assert scripted.seen[0].metadata["x-source"] == "my-app"


def test_deadline_the_server_saw(client: mc.ApexClient, scripted: ScriptedServer) -> None:
    client.chat.completions.create(messages=USER, timeout=3.0)
    client.web_search.search(search_query="q", max_response_time=7)
    client.with_options(timeout=20).chats.list_sessions()
    chat, search, sessions = scripted.seen
    # grpc-timeout travels in coarse units; allow its rounding.
    assert 2.0 < chat.time_remaining <= 3.5
    assert chat.request.timeout == 3  # the server-side budget follows the call's timeout
    assert 15.0 < search.time_remaining <= 17.5  # max_response_time + 10 s margin
    assert 18.0 < sessions.time_remaining <= 20.5


def test_default_deadline_is_ten_minutes(client: mc.ApexClient, scripted: ScriptedServer) -> None:
    client.chats.list_sessions()
    assert 590 < scripted.seen[0].time_remaining <= 601


def test_no_deadline_when_timeout_is_none(scripted: ScriptedServer) -> None:
    with mc.ApexClient(api_key=KEY, base_url=scripted.target, secure=False, timeout=None) as c:
        c.chats.list_sessions()
    assert scripted.seen[0].time_remaining is None


@pytest.mark.parametrize("code", CODES, ids=[c.name for c in CODES])
def test_every_status_becomes_its_error_class(
    client: mc.ApexClient, scripted: ScriptedServer, code: grpc.StatusCode
) -> None:
    details = "bad\tthing\r\nhappened: naïve façade ✓"
    scripted.fail("GetChatSessions", Failure(code, details, (("x-extra", "e"),)))
    with pytest.raises(mc.APIError) as caught:
        client.with_options(max_retries=0).chats.list_sessions()
    error = caught.value
    assert type(error) is mc.error_class_for(code)
    assert error.code is code
    assert error.details == details
    assert ("x-extra", "e") in error.trailing_metadata
    assert error.request_id == "req-1"
    assert error.method == "/apex.v1.ApexService/GetChatSessions"
    assert KEY not in str(error) and KEY not in repr(error)


async def test_errors_are_typed_on_the_async_client(
    aclient: mc.AsyncApexClient, scripted: ScriptedServer
) -> None:
    scripted.fail("GetDeepResearcherJob", Failure(grpc.StatusCode.NOT_FOUND, "job 'x' not found"))
    with pytest.raises(mc.NotFoundError, match="job 'x' not found"):
        await aclient.deep_research.get("x")
    scripted.fail("WebRetrieval", Failure(grpc.StatusCode.UNAUTHENTICATED, "invalid API key"))
    with pytest.raises(mc.AuthenticationError):
        await aclient.web_search.search(search_query="q")


def test_error_classes_form_one_tree() -> None:
    assert issubclass(mc.DeadlineExceededError, TimeoutError)
    assert issubclass(mc.StreamTimeoutError, mc.DeadlineExceededError)
    assert issubclass(mc.ValidationError, ValueError)
    for code in CODES:
        assert issubclass(mc.error_class_for(code), mc.APIError)
    assert issubclass(mc.APIError, mc.ApexError) and issubclass(mc.ValidationError, mc.ApexError)
    assert not issubclass(mc.ValidationError, mc.APIError)


def test_unavailable_is_retried_then_succeeds(
    client: mc.ApexClient, scripted: ScriptedServer
) -> None:
    scripted.fail("ChatCompletion", *[Failure(grpc.StatusCode.UNAVAILABLE)] * 2)
    response = client.chat.completions.create(messages=USER)
    assert response.choices[0].message.content == "hello"
    assert len(scripted.calls("ChatCompletion")) == 3


async def test_unavailable_is_retried_then_succeeds_async(
    aclient: mc.AsyncApexClient, scripted: ScriptedServer
) -> None:
    scripted.fail("ChatCompletion", *[Failure(grpc.StatusCode.UNAVAILABLE)] * 2)
    response = await aclient.chat.completions.create(messages=USER)
    assert response.choices[0].message.content == "hello"
    assert len(scripted.calls("ChatCompletion")) == 3


def test_retries_run_out(client: mc.ApexClient, scripted: ScriptedServer) -> None:
    scripted.fail("ChatCompletion", *[Failure(grpc.StatusCode.UNAVAILABLE, "down")] * 5)
    with pytest.raises(mc.UnavailableError) as caught:
        client.chat.completions.create(messages=USER)
    assert caught.value.attempts == 3
    assert "after 3 attempts" in str(caught.value)
    assert len(scripted.calls("ChatCompletion")) == 3


def test_backoff_between_attempts_stays_within_bounds(scripted: ScriptedServer) -> None:
    policy = mc.RetryPolicy(max_retries=3, initial_backoff=0.05, max_backoff=0.2, jitter=0.5)
    scripted.fail("GetChatSessions", *[Failure(grpc.StatusCode.UNAVAILABLE)] * 3)
    with mc.ApexClient(api_key=KEY, base_url=scripted.target, secure=False, retry=policy) as c:
        c.chats.list_sessions()
    times = [s.at for s in scripted.calls("GetChatSessions")]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    for n, gap in enumerate(gaps):
        nominal = min(0.05 * 2**n, 0.2)
        assert nominal * 0.5 - 0.005 <= gap <= nominal + 0.25, (n, gap)


@pytest.mark.parametrize("code", [grpc.StatusCode.INTERNAL, grpc.StatusCode.INVALID_ARGUMENT])
def test_other_codes_are_not_retried(
    client: mc.ApexClient, scripted: ScriptedServer, code: grpc.StatusCode
) -> None:
    scripted.fail("ChatCompletion", Failure(code))
    with pytest.raises(mc.APIError):
        client.chat.completions.create(messages=USER)
    assert len(scripted.calls("ChatCompletion")) == 1


def test_rate_limit_is_retried_only_with_pushback(
    client: mc.ApexClient, scripted: ScriptedServer
) -> None:
    scripted.fail("ChatCompletion", Failure(grpc.StatusCode.RESOURCE_EXHAUSTED, "slow down"))
    with pytest.raises(mc.RateLimitError):
        client.chat.completions.create(messages=USER)
    assert len(scripted.calls("ChatCompletion")) == 1

    scripted.reset()
    pushback = (("grpc-retry-pushback-ms", "120"),)
    scripted.fail("ChatCompletion", Failure(grpc.StatusCode.RESOURCE_EXHAUSTED, "wait", pushback))
    client.chat.completions.create(messages=USER)
    first, second = scripted.calls("ChatCompletion")
    assert second.at - first.at >= 0.115


def test_negative_pushback_stops_retries(client: mc.ApexClient, scripted: ScriptedServer) -> None:
    stop = (("grpc-retry-pushback-ms", "-1"),)
    scripted.fail("ChatCompletion", Failure(grpc.StatusCode.UNAVAILABLE, "no", stop))
    with pytest.raises(mc.UnavailableError):
        client.chat.completions.create(messages=USER)
    assert len(scripted.calls("ChatCompletion")) == 1


def test_deadline_covers_all_attempts(scripted: ScriptedServer) -> None:
    pushback = (("grpc-retry-pushback-ms", "150"),)
    scripted.fail("ChatCompletion", *[Failure(grpc.StatusCode.UNAVAILABLE, "x", pushback)] * 10)
    policy = mc.RetryPolicy(max_retries=10)
    with mc.ApexClient(api_key=KEY, base_url=scripted.target, secure=False, retry=policy) as c:
        started = time.monotonic()
        # UNAVAILABLE when no time is left for another 150 ms wait; DEADLINE_EXCEEDED when,
        # on a loaded machine, the deadline runs out while the last attempt is on the wire.
        with pytest.raises((mc.UnavailableError, mc.DeadlineExceededError)):
            c.chat.completions.create(messages=USER, timeout=0.5)
        elapsed = time.monotonic() - started
    calls = scripted.calls("ChatCompletion")
    assert elapsed < 0.9  # ten 150 ms pushbacks would take 1.5 s
    assert 2 <= len(calls) <= 4
    remaining = [c.time_remaining for c in calls]
    assert remaining == sorted(remaining, reverse=True)  # each attempt gets what is left


def test_slow_server_gives_deadline_exceeded(
    client: mc.ApexClient, scripted: ScriptedServer
) -> None:
    scripted.unary_delay = 1.0
    started = time.monotonic()
    with pytest.raises(mc.DeadlineExceededError):
        client.chats.list_sessions(timeout=0.2)
    assert time.monotonic() - started < 0.6


def test_per_call_max_retries(client: mc.ApexClient, scripted: ScriptedServer) -> None:
    scripted.fail("ChatCompletion", *[Failure(grpc.StatusCode.UNAVAILABLE)] * 3)
    with pytest.raises(mc.UnavailableError):
        client.chat.completions.create(messages=USER, max_retries=0)
    assert len(scripted.calls("ChatCompletion")) == 1
    client.chat.completions.create(messages=USER, max_retries=5)


def test_with_options_shares_the_channel(client: mc.ApexClient, scripted: ScriptedServer) -> None:
    derived = client.with_options(timeout=5, max_retries=0)
    assert derived.channel is client.channel
    assert (derived.timeout, derived.max_retries) == (5, 0)
    assert (client.timeout, client.max_retries) == (600, 2)
    derived.close()  # does not close the shared channel
    client.chats.list_sessions()
    with pytest.raises(mc.ValidationError):
        client.with_options(timeut=3)  # type: ignore[call-arg]


def test_closed_client_raises_a_typed_error(scripted: ScriptedServer) -> None:
    c = mc.ApexClient(api_key=KEY, base_url=scripted.target, secure=False)
    c.close()
    with pytest.raises(mc.ClientClosedError):
        c.chats.list_sessions()


async def test_closed_async_client_raises_a_typed_error(scripted: ScriptedServer) -> None:
    c = mc.AsyncApexClient(api_key=KEY, base_url=scripted.target, secure=False)
    await c.chats.list_sessions()
    await c.aclose()
    with pytest.raises(mc.ClientClosedError):
        await c.chats.list_sessions()


def test_undecodable_response_is_a_typed_error(
    client: mc.ApexClient, scripted: ScriptedServer
) -> None:
    # Field 1 (id, a string) carrying invalid UTF-8: not a ChatCompletionResponse.
    scripted.responders["ChatCompletion"] = lambda request: _RawBytes(b"\x0a\x02\xff\xfe")
    with pytest.raises(mc.InternalServerError) as caught:
        client.chat.completions.create(messages=USER)
    assert "deserializ" in caught.value.details.lower()


class _RawBytes:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def SerializeToString(self) -> bytes:
        return self.data


def test_validation_happens_before_any_io(client: mc.ApexClient, scripted: ScriptedServer) -> None:
    with pytest.raises(mc.ValidationError):
        client.chat.completions.create(messages=[])
    with pytest.raises(mc.ValidationError):
        client.web_search.search(search_query="q", n_results=-1)
    with pytest.raises(mc.ValidationError):
        client.chat.completions.create(messages=USER, bogus=1)  # type: ignore[call-arg]
    assert scripted.seen == []
    assert FAST_RETRY.max_retries == 2


def test_call_info_reports_what_the_server_sent(
    client: mc.ApexClient, scripted: ScriptedServer
) -> None:
    info = mc.CallInfo()
    client.chats.list_sessions(call_info=info)
    assert info.code is grpc.StatusCode.OK and info.request_id == "req-1" and info.attempts == 1
    assert ("x-request-id", "req-1") in info.initial_metadata

    scripted.fail("GetChatSessions", Failure(grpc.StatusCode.UNAVAILABLE))
    scripted.fail("GetChatSessions", Failure(grpc.StatusCode.NOT_FOUND, "gone", (("x-t", "1"),)))
    failed = mc.CallInfo()
    with pytest.raises(mc.NotFoundError):
        client.chats.list_sessions(call_info=failed)
    assert failed.code is grpc.StatusCode.NOT_FOUND and failed.details == "gone"
    assert failed.attempts == 2 and ("x-t", "1") in failed.trailing_metadata
    with pytest.raises(mc.ValidationError):
        client.chat.completions.create(messages=USER, stream=True, call_info=mc.CallInfo())


async def test_call_info_on_the_async_client(
    aclient: mc.AsyncApexClient, scripted: ScriptedServer
) -> None:
    info = mc.CallInfo()
    await aclient.chat.completions.create(messages=USER, call_info=info)
    assert info.code is grpc.StatusCode.OK and info.request_id == "req-1"


def test_with_options_can_call_with_another_key(
    client: mc.ApexClient, scripted: ScriptedServer
) -> None:
    other = client.with_options(api_key="sk-other")
    other.chats.list_sessions()
    client.chats.list_sessions()
    assert [s.metadata["authorization"] for s in scripted.seen] == [
        "Bearer sk-other",
        f"Bearer {KEY}",
    ]
    assert "sk-other" not in repr(other)
    assert other.channel is client.channel


def test_the_debug_line_shows_a_request_id_sent_in_trailers_only(
    echo_target: str, api_key: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The local server puts a unary call's x-request-id in its trailers only.
    import logging

    info = mc.CallInfo()
    with (
        mc.ApexClient(api_key=api_key, base_url=echo_target, secure=False) as c,
        caplog.at_level(logging.DEBUG, logger="apex_grpc"),
    ):
        c.chats.list_sessions(call_info=info)
    (line,) = [r.getMessage() for r in caplog.records if r.name == "apex_grpc"]
    assert info.request_id and f"request_id={info.request_id}" in line
