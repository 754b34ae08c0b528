"""Unary calls over loopback: metadata and deadlines as the server saw them, errors, retries.

Every test that makes a call runs on both clients (`either_client`,
`client_type`), written once; `settle` awaits what the async client returns.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time

import grpc
import pytest

import apex_grpc as mc
from apex_grpc._version import __version__
from apex_grpc.testing import FakeApex, Reply, completion, error

from .conftest import FAST_RETRY, KEY, Client, ClientType, echo, make, settle

pytestmark = pytest.mark.oldest
USER = [{"role": "user", "content": "hello"}]
CODES = [c for c in grpc.StatusCode if c is not grpc.StatusCode.OK]
SESSIONS = mc.GetChatSessionsResponse()
UNAVAILABLE = error("UNAVAILABLE")


async def test_metadata_the_server_saw(either_client: Client, apex_fake: FakeApex) -> None:
    apex_fake.on("ChatCompletion").reply(echo)
    apex_fake.on("WebRetrieval").reply(mc.WebRetrievalResponse())
    traced = either_client.with_options(metadata={"x-trace": "t1"})
    await settle(traced.chat.completions.create(messages=USER))
    await settle(either_client.web_search.search(search_query="q", metadata=[("x-per-call", "y")]))
    chat, search = apex_fake.requests
    for seen in (chat, search):
        assert seen.metadata["authorization"] == f"Bearer {KEY}"
        assert seen.metadata["x-source"] == "apex-grpc"
        assert seen.metadata["x-client-id"] == "apex-grpc"
        assert seen.metadata["x-client-version"] == __version__
        assert str(seen.metadata.get("user-agent", "")).startswith(f"apex-grpc/{__version__}")
    assert chat.metadata["x-trace"] == "t1" and "x-per-call" not in chat.metadata
    assert search.metadata["x-per-call"] == "y" and search.request.search_query == "q"


async def test_app_name_goes_out_as_x_source(client_type: ClientType, apex_fake: FakeApex) -> None:
    apex_fake.on("GetChatSessions").reply(SESSIONS)
    c = make(client_type, apex_fake, app_name="my-app")
    await settle(c.chats.list_sessions())
    await settle(c.close())
    assert apex_fake.requests[0].metadata["x-source"] == "my-app"


async def test_deadline_the_server_saw(either_client: Client, apex_fake: FakeApex) -> None:
    apex_fake.on("ChatCompletion").reply(echo)
    apex_fake.on("WebRetrieval").reply(mc.WebRetrievalResponse())
    apex_fake.on("GetChatSessions").reply(SESSIONS)
    await settle(either_client.chat.completions.create(messages=USER, timeout=3.0))
    await settle(either_client.web_search.search(search_query="q", max_response_time=7))
    await settle(either_client.with_options(timeout=20).chats.list_sessions())
    chat, search, sessions = apex_fake.requests
    # grpc-timeout travels in coarse units; allow its rounding.
    assert 2.0 < chat.time_remaining <= 3.5
    assert chat.request.timeout == 3  # the server-side budget follows the call's timeout
    assert 15.0 < search.time_remaining <= 17.5  # max_response_time + 10 s margin
    assert 18.0 < sessions.time_remaining <= 20.5


async def test_default_deadline_is_ten_minutes(either_client: Client, apex_fake: FakeApex) -> None:
    apex_fake.on("GetChatSessions").reply(SESSIONS)
    await settle(either_client.chats.list_sessions())
    assert 590 < apex_fake.requests[0].time_remaining <= 601


async def test_no_deadline_when_timeout_is_none(
    client_type: ClientType, apex_fake: FakeApex
) -> None:
    apex_fake.on("GetChatSessions").reply(SESSIONS)
    c = make(client_type, apex_fake, timeout=None)
    await settle(c.chats.list_sessions())
    await settle(c.close())
    assert apex_fake.requests[0].time_remaining is None


@pytest.mark.parametrize("code", CODES, ids=[c.name for c in CODES])
async def test_every_status_becomes_its_error_class(
    either_client: Client, apex_fake: FakeApex, code: grpc.StatusCode
) -> None:
    details = "bad\tthing\r\nhappened: naïve façade ✓"
    trailing = (("x-extra", "e"), ("x-request-id", "req-1"))
    apex_fake.on("GetChatSessions").reply(error(code, details, trailing_metadata=trailing))
    with pytest.raises(mc.APIError) as caught:
        await settle(either_client.with_options(max_retries=0).chats.list_sessions())
    failure = caught.value
    assert type(failure) is mc.error_class_for(code)
    assert failure.code is code
    assert failure.details == details
    assert ("x-extra", "e") in failure.trailing_metadata
    assert failure.request_id == "req-1"
    assert failure.method == "/apex.v1.ApexService/GetChatSessions"
    assert KEY not in str(failure) and KEY not in repr(failure)


async def test_errors_are_typed_on_every_resource(
    either_client: Client, apex_fake: FakeApex
) -> None:
    apex_fake.on("GetDeepResearcherJob").reply(error("NOT_FOUND", "job 'x' not found"))
    with pytest.raises(mc.NotFoundError, match="job 'x' not found"):
        await settle(either_client.deep_research.get("x"))
    apex_fake.on("WebRetrieval").reply(error("UNAUTHENTICATED", "invalid API key"))
    with pytest.raises(mc.AuthenticationError):
        await settle(either_client.web_search.search(search_query="q"))


def test_error_classes_form_one_tree() -> None:
    assert issubclass(mc.DeadlineExceededError, TimeoutError)
    assert issubclass(mc.StreamTimeoutError, mc.DeadlineExceededError)
    assert issubclass(mc.ValidationError, ValueError)
    for code in CODES:
        assert issubclass(mc.error_class_for(code), mc.APIError)
    assert issubclass(mc.APIError, mc.ApexError) and issubclass(mc.ValidationError, mc.ApexError)
    assert not issubclass(mc.ValidationError, mc.APIError)


async def test_unavailable_is_retried_then_succeeds(
    either_client: Client, apex_fake: FakeApex
) -> None:
    apex_fake.on("ChatCompletion").reply(UNAVAILABLE, UNAVAILABLE, echo)
    response = await settle(either_client.chat.completions.create(messages=USER))
    assert response.choices[0].message.content == "hello"
    assert len(apex_fake.calls_to("ChatCompletion")) == 3


async def test_retries_run_out(either_client: Client, apex_fake: FakeApex) -> None:
    apex_fake.on("ChatCompletion").reply(error("UNAVAILABLE", "down"))
    with pytest.raises(mc.UnavailableError) as caught:
        await settle(either_client.chat.completions.create(messages=USER))
    assert caught.value.attempts == 3
    assert "after 3 attempts" in str(caught.value)
    assert len(apex_fake.calls_to("ChatCompletion")) == 3


async def test_backoff_between_attempts_stays_within_bounds(
    client_type: ClientType, apex_fake: FakeApex
) -> None:
    policy = mc.RetryPolicy(max_retries=3, initial_backoff=0.05, max_backoff=0.2, jitter=0.5)
    apex_fake.on("GetChatSessions").reply(UNAVAILABLE, UNAVAILABLE, UNAVAILABLE, SESSIONS)
    c = make(client_type, apex_fake, retry=policy)
    await settle(c.chats.list_sessions())
    await settle(c.close())
    times = [s.received_at for s in apex_fake.calls_to("GetChatSessions")]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    for n, gap in enumerate(gaps):
        nominal = min(0.05 * 2**n, 0.2)
        assert nominal * 0.5 - 0.005 <= gap <= nominal + 0.25, (n, gap)


@pytest.mark.parametrize("code", [grpc.StatusCode.INTERNAL, grpc.StatusCode.INVALID_ARGUMENT])
async def test_other_codes_are_not_retried(
    either_client: Client, apex_fake: FakeApex, code: grpc.StatusCode
) -> None:
    apex_fake.on("ChatCompletion").reply(error(code))
    with pytest.raises(mc.APIError):
        await settle(either_client.chat.completions.create(messages=USER))
    assert len(apex_fake.calls_to("ChatCompletion")) == 1


async def test_rate_limit_is_retried_only_with_pushback(
    either_client: Client, apex_fake: FakeApex
) -> None:
    apex_fake.on("ChatCompletion", times=1).reply(error("RESOURCE_EXHAUSTED", "slow down"))
    with pytest.raises(mc.RateLimitError):
        await settle(either_client.chat.completions.create(messages=USER))
    assert len(apex_fake.calls_to("ChatCompletion")) == 1

    apex_fake.reset()
    waited = error("RESOURCE_EXHAUSTED", "wait", retry_pushback_ms=120)
    apex_fake.on("ChatCompletion").reply(waited, echo)
    await settle(either_client.chat.completions.create(messages=USER))
    first, second = apex_fake.calls_to("ChatCompletion")
    assert second.received_at - first.received_at >= 0.115


async def test_negative_pushback_stops_retries(either_client: Client, apex_fake: FakeApex) -> None:
    apex_fake.on("ChatCompletion").reply(error("UNAVAILABLE", "no", retry_pushback_ms=-1))
    with pytest.raises(mc.UnavailableError):
        await settle(either_client.chat.completions.create(messages=USER))
    assert len(apex_fake.calls_to("ChatCompletion")) == 1


async def test_deadline_covers_all_attempts(client_type: ClientType, apex_fake: FakeApex) -> None:
    apex_fake.on("ChatCompletion").reply(error("UNAVAILABLE", "x", retry_pushback_ms=150))
    c = make(client_type, apex_fake, retry=mc.RetryPolicy(max_retries=10))
    started = time.monotonic()
    # UNAVAILABLE when no time is left for another 150 ms wait; DEADLINE_EXCEEDED when,
    # on a loaded machine, the deadline runs out while the last attempt is on the wire.
    with pytest.raises((mc.UnavailableError, mc.DeadlineExceededError)):
        await settle(c.chat.completions.create(messages=USER, timeout=0.5))
    elapsed = time.monotonic() - started
    await settle(c.close())
    calls = apex_fake.calls_to("ChatCompletion")
    assert elapsed < 0.9  # ten 150 ms pushbacks would take 1.5 s
    assert 2 <= len(calls) <= 4
    remaining = [c.time_remaining for c in calls]
    assert remaining == sorted(remaining, reverse=True)  # each attempt gets what is left


async def test_slow_server_gives_deadline_exceeded(
    either_client: Client, apex_fake: FakeApex
) -> None:
    apex_fake.on("GetChatSessions", delay=1.0).reply(SESSIONS)
    started = time.monotonic()
    with pytest.raises(mc.DeadlineExceededError):
        await settle(either_client.chats.list_sessions(timeout=0.2))
    assert time.monotonic() - started < 0.6


async def test_per_call_max_retries(either_client: Client, apex_fake: FakeApex) -> None:
    apex_fake.on("ChatCompletion").reply(UNAVAILABLE, UNAVAILABLE, UNAVAILABLE, echo)
    with pytest.raises(mc.UnavailableError):
        await settle(either_client.chat.completions.create(messages=USER, max_retries=0))
    assert len(apex_fake.calls_to("ChatCompletion")) == 1
    await settle(either_client.chat.completions.create(messages=USER, max_retries=5))


async def test_with_options_shares_the_channel(either_client: Client, apex_fake: FakeApex) -> None:
    apex_fake.on("GetChatSessions").reply(SESSIONS)
    derived = either_client.with_options(timeout=5, max_retries=0)
    assert derived.channel is either_client.channel
    assert (derived.timeout, derived.max_retries) == (5, 0)
    assert (either_client.timeout, either_client.max_retries) == (600, 2)
    await settle(derived.close())  # does not close the shared channel
    await settle(either_client.chats.list_sessions())
    with pytest.raises(mc.ValidationError):
        either_client.with_options(timeut=3)  # type: ignore[call-arg]


async def test_closed_client_raises_a_typed_error(
    client_type: ClientType, apex_fake: FakeApex
) -> None:
    apex_fake.on("GetChatSessions").reply(SESSIONS)
    c = make(client_type, apex_fake)
    await settle(c.chats.list_sessions())
    await settle(c.close())
    with pytest.raises(mc.ClientClosedError, match="the client is closed"):
        await settle(c.chats.list_sessions())


async def test_a_call_cut_short_by_close_raises_a_typed_error(
    client_type: ClientType, apex_fake: FakeApex
) -> None:
    apex_fake.on("GetChatSessions", times=1).reply(SESSIONS)
    apex_fake.on("GetChatSessions", delay=2.0).reply(SESSIONS)
    c = make(client_type, apex_fake)
    await settle(c.chats.list_sessions())  # connected
    if isinstance(c, mc.AsyncApexClient):
        call = asyncio.ensure_future(c.chats.list_sessions())
        await asyncio.sleep(0.3)
        await c.close()
        with pytest.raises(mc.ClientClosedError, match="closed during the call"):
            await call
    else:
        threading.Timer(0.3, c.close).start()
        with pytest.raises(mc.ClientClosedError, match="closed during the call"):
            c.chats.list_sessions()


async def test_a_cancelled_async_call_is_still_cancelled_when_the_client_closes(
    apex_fake: FakeApex,
) -> None:
    apex_fake.on("GetChatSessions", times=1).reply(SESSIONS)
    apex_fake.on("GetChatSessions", delay=2.0).reply(SESSIONS)
    c = mc.AsyncApexClient(api_key=KEY, base_url=apex_fake.target, secure=False)
    await c.chats.list_sessions()
    call = asyncio.ensure_future(c.chats.list_sessions())
    await asyncio.sleep(0.3)
    call.cancel()
    await c.close()
    with pytest.raises(asyncio.CancelledError):
        await call


async def test_undecodable_response_is_a_typed_error(
    either_client: Client, apex_fake: FakeApex
) -> None:
    # Field 1 (id, a string) carrying invalid UTF-8: not a ChatCompletionResponse.
    apex_fake.on("ChatCompletion").reply(b"\x0a\x02\xff\xfe")
    with pytest.raises(mc.InternalServerError) as caught:
        await settle(either_client.chat.completions.create(messages=USER))
    assert "deserializ" in caught.value.details.lower()


async def test_validation_happens_before_any_io(either_client: Client, apex_fake: FakeApex) -> None:
    with pytest.raises(mc.ValidationError):
        await settle(either_client.chat.completions.create(messages=[]))
    with pytest.raises(mc.ValidationError):
        await settle(either_client.web_search.search(search_query="q", n_results=-1))
    with pytest.raises(TypeError, match="bogus"):
        await settle(either_client.chat.completions.create(messages=USER, bogus=1))  # type: ignore[call-overload]
    assert apex_fake.requests == []
    assert FAST_RETRY.max_retries == 2


async def test_call_info_reports_what_the_server_sent(
    either_client: Client, apex_fake: FakeApex
) -> None:
    first_id = (("x-request-id", "req-1"),)
    apex_fake.on("GetChatSessions", times=1).reply(Reply(SESSIONS, initial_metadata=first_id))
    apex_fake.on("ChatCompletion").reply(
        Reply(completion("hello"), initial_metadata=(("x-request-id", "req-2"),))
    )
    info = mc.CallInfo()
    await settle(either_client.chats.list_sessions(call_info=info))
    assert info.code is grpc.StatusCode.OK and info.request_id == "req-1" and info.attempts == 1
    assert ("x-request-id", "req-1") in info.initial_metadata
    chat = mc.CallInfo()
    await settle(either_client.chat.completions.create(messages=USER, call_info=chat))
    assert chat.code is grpc.StatusCode.OK and chat.request_id == "req-2"

    apex_fake.on("GetChatSessions").reply(
        UNAVAILABLE, error("NOT_FOUND", "gone", trailing_metadata=[("x-t", "1")])
    )
    failed = mc.CallInfo()
    with pytest.raises(mc.NotFoundError):
        await settle(either_client.chats.list_sessions(call_info=failed))
    assert failed.code is grpc.StatusCode.NOT_FOUND and failed.details == "gone"
    assert failed.attempts == 2 and ("x-t", "1") in failed.trailing_metadata
    with pytest.raises(mc.ValidationError):
        await settle(
            either_client.chat.completions.create(
                messages=USER, stream=True, call_info=mc.CallInfo()
            )
        )


async def test_with_options_can_call_with_another_key(
    either_client: Client, apex_fake: FakeApex
) -> None:
    apex_fake.on("GetChatSessions").reply(SESSIONS)
    other = either_client.with_options(api_key="sk-other")
    await settle(other.chats.list_sessions())
    await settle(either_client.chats.list_sessions())
    assert [s.metadata["authorization"] for s in apex_fake.requests] == [
        "Bearer sk-other",
        f"Bearer {KEY}",
    ]
    assert "sk-other" not in repr(other)
    assert other.channel is either_client.channel


async def test_the_debug_line_shows_a_request_id_sent_in_trailers_only(
    client_type: ClientType, echo_target: str, api_key: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The local server puts a unary call's x-request-id in its trailers only.
    info = mc.CallInfo()
    c = client_type(api_key=api_key, base_url=echo_target, secure=False)
    with caplog.at_level(logging.DEBUG, logger="apex_grpc"):
        await settle(c.chats.list_sessions(call_info=info))
    await settle(c.close())
    (line,) = [r.getMessage() for r in caplog.records if r.name == "apex_grpc"]
    assert info.request_id and f"request_id={info.request_id}" in line
