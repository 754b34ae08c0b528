"""apex_grpc.testing as a user's own test suite uses it, with both clients.

Written the way a user would write them: the plugin's fixtures (apex_fake,
apex_client, async_apex_client, from the pytest11 entry point) and the
public names of apex_grpc and apex_grpc.testing only.
"""

from __future__ import annotations

import time

import pytest

import apex_grpc as mc
from apex_grpc.testing import FakeApex, completion, error, stream
from apex_grpc.testing._routes import RecordedCall
from apex_grpc.testing._server import _cut_short

HI = [{"role": "user", "content": "Hi"}]
FAST_RETRY = mc.RetryPolicy(initial_backoff=0.01, max_backoff=0.02)

# Users on the oldest supported grpcio/protobuf test with the kit too.
pytestmark = pytest.mark.oldest


# a scripted completion


def test_a_scripted_completion(apex_fake: FakeApex, apex_client: mc.ApexClient) -> None:
    apex_fake.on("ChatCompletion").reply("Hello there")

    reply = apex_client.chat.completions.create(messages=HI, model="my-model")

    assert reply.choices[0].message.content == "Hello there"
    call = apex_fake.last_request
    assert call.method == "ChatCompletion"
    assert call.request.model == "my-model"
    assert [m.content for m in call.request.messages] == ["Hi"]
    assert call.code is not None and call.code.name == "OK"


async def test_a_scripted_completion_async(
    apex_fake: FakeApex, async_apex_client: mc.AsyncApexClient
) -> None:
    apex_fake.on("ChatCompletion").reply(completion("Hello there", usage=(3, 2)))

    reply = await async_apex_client.chat.completions.create(messages=HI)

    assert reply.choices[0].message.content == "Hello there"
    assert reply.usage.total_tokens == 5
    assert apex_fake.call_count == 1


# a stream with delays, and the client's first-chunk timeout


def test_a_stream_arrives_with_its_delays(apex_fake: FakeApex, apex_client: mc.ApexClient) -> None:
    apex_fake.on("ChatCompletionStream").reply(stream("Hel", "lo", "!", delay=0.2))

    arrivals = []
    chunks = apex_client.chat.completions.create(messages=HI, stream=True)
    for chunk in chunks:
        arrivals.append((time.monotonic(), chunk.choices[0].delta.content))

    assert [text for _, text in arrivals] == ["Hel", "lo", "!"]
    assert arrivals[2][0] - arrivals[0][0] >= 0.35  # two gaps of 0.2 s
    assert chunks.get_final_response().choices[0].finish_reason == "stop"


async def test_a_stream_arrives_with_its_delays_async(
    apex_fake: FakeApex, async_apex_client: mc.AsyncApexClient
) -> None:
    apex_fake.on("ChatCompletionStream").reply(stream("Hel", "lo", first_delay=0.3))

    started = time.monotonic()
    chunks = await async_apex_client.chat.completions.create(messages=HI, stream=True)
    texts = [chunk.choices[0].delta.content async for chunk in chunks]

    assert texts == ["Hel", "lo"]
    assert time.monotonic() - started >= 0.3


def test_the_first_chunk_timeout_fires_on_a_late_stream(
    apex_fake: FakeApex, apex_client: mc.ApexClient
) -> None:
    apex_fake.on("ChatCompletionStream").reply(stream("too late", first_delay=5))
    impatient = apex_client.with_options(stream_first_chunk_timeout=0.3)

    started = time.monotonic()
    with pytest.raises(mc.StreamTimeoutError, match="first-chunk timeout"):
        for _ in impatient.chat.completions.create(messages=HI, stream=True):
            pass

    assert time.monotonic() - started < 3
    call = apex_fake.last_request
    assert call.wait_ended() and call.cancelled  # the client gave up the call, not just the wait
    assert call.chunks_sent == 0


async def test_the_first_chunk_timeout_fires_on_a_late_stream_async(
    apex_fake: FakeApex, async_apex_client: mc.AsyncApexClient
) -> None:
    apex_fake.on("ChatCompletionStream").reply(stream("too late", first_delay=5))

    with pytest.raises(mc.StreamTimeoutError, match="first-chunk timeout"):
        chunks = await async_apex_client.chat.completions.create(
            messages=HI, stream=True, first_chunk_timeout=0.3
        )
        async for _ in chunks:
            pass

    call = apex_fake.last_request
    assert await call.ended_async() and call.cancelled


# errors and retries


def test_unavailable_then_ok_is_retried(apex_fake: FakeApex, apex_client: mc.ApexClient) -> None:
    apex_fake.on("ChatCompletion").reply(error("UNAVAILABLE", "restarting"), "second time lucky")

    reply = apex_client.chat.completions.create(messages=HI)

    assert reply.choices[0].message.content == "second time lucky"
    first, second = apex_fake.calls_to("ChatCompletion")
    assert first.code is not None and first.code.name == "UNAVAILABLE"
    assert first.metadata == second.metadata  # the retry carries the same identity and key
    assert first.request == second.request


async def test_unavailable_then_ok_is_retried_async(apex_fake: FakeApex) -> None:
    apex_fake.on("ChatCompletion").reply(error("UNAVAILABLE"), error("UNAVAILABLE"), "third")

    async with apex_fake.async_client(retry=FAST_RETRY) as client:
        reply = await client.chat.completions.create(messages=HI)
        assert reply.choices[0].message.content == "third"
        assert len(apex_fake.requests) == 3

        # With retries off the first UNAVAILABLE is the answer.
        apex_fake.reset()
        apex_fake.on("ChatCompletion").reply(error("UNAVAILABLE", "down for maintenance"), "ok")
        with pytest.raises(mc.UnavailableError, match="down for maintenance"):
            await client.chat.completions.create(messages=HI, max_retries=0)
        assert len(apex_fake.requests) == 1


def test_the_servers_pushback_sets_the_wait(apex_fake: FakeApex) -> None:
    apex_fake.on("ChatCompletion").reply(
        error("RESOURCE_EXHAUSTED", "slow down", retry_pushback_ms=400), "ok"
    )

    with apex_fake.client(retry=FAST_RETRY) as client:  # its own backoff would be 10 ms
        client.chat.completions.create(messages=HI)

    first, second = apex_fake.calls_to("ChatCompletion")
    assert second.received_at - first.received_at >= 0.4


async def test_a_rate_limit_without_pushback_is_not_retried_async(
    apex_fake: FakeApex, async_apex_client: mc.AsyncApexClient
) -> None:
    apex_fake.on("ChatCompletion", times=1).reply(error("RESOURCE_EXHAUSTED", "quota"))

    with pytest.raises(mc.RateLimitError, match="quota"):
        await async_apex_client.chat.completions.create(messages=HI)
    assert apex_fake.call_count == 1


# deadlines and cancellation


def test_a_slow_answer_exceeds_the_deadline(
    apex_fake: FakeApex, apex_client: mc.ApexClient
) -> None:
    apex_fake.on("ChatCompletion", delay=5).reply("too late")

    started = time.monotonic()
    with pytest.raises(mc.DeadlineExceededError):
        apex_client.chat.completions.create(messages=HI, timeout=0.3)

    assert time.monotonic() - started < 3
    call = apex_fake.last_request
    # The deadline the fake saw is the call's 0.3 s (grpc's clocks may round it up a few µs).
    assert call.time_remaining is not None and 0 < call.time_remaining <= 0.3 + 1e-3
    assert call.wait_ended() and call.cancelled
    assert call.code is not None and call.code.name == "DEADLINE_EXCEEDED"


async def test_a_slow_answer_exceeds_the_deadline_async(
    apex_fake: FakeApex, async_apex_client: mc.AsyncApexClient
) -> None:
    apex_fake.on("ChatCompletion", delay=5).reply("too late")

    with pytest.raises(mc.DeadlineExceededError):
        await async_apex_client.chat.completions.create(messages=HI, timeout=0.3)

    call = apex_fake.last_request
    assert await call.ended_async() and call.cancelled


def test_leaving_a_stream_cancels_it_on_the_server(
    apex_fake: FakeApex, apex_client: mc.ApexClient
) -> None:
    apex_fake.on("ChatCompletionStream").reply(stream(*["token "] * 100, delay=0.05))

    with apex_client.chat.completions.create(messages=HI, stream=True) as chunks:
        for _ in chunks:
            break

    call = apex_fake.last_request
    assert call.wait_ended() and call.cancelled
    assert call.code is not None and call.code.name == "CANCELLED"
    assert call.chunks_sent < 100


async def test_leaving_a_stream_cancels_it_on_the_server_async(
    apex_fake: FakeApex, async_apex_client: mc.AsyncApexClient
) -> None:
    apex_fake.on("ChatCompletionStream").reply(stream(*["token "] * 100, delay=0.05))

    chunks = await async_apex_client.chat.completions.create(messages=HI, stream=True)
    async with chunks:
        async for _ in chunks:
            break

    call = apex_fake.last_request
    assert await call.ended_async() and call.cancelled
    assert call.chunks_sent < 100


@pytest.mark.parametrize(
    ("remaining", "elapsed", "code"),
    [
        (0.3, 0.299, "DEADLINE_EXCEEDED"),  # the client's own deadline, reached a little sooner
        (0.3, 0.26, "DEADLINE_EXCEEDED"),
        (0.3, 0.2, "CANCELLED"),  # well before its deadline: the client gave up
        (0.04, 0.021, "DEADLINE_EXCEEDED"),  # a short deadline: at most half of it as slack
        (0.04, 0.015, "CANCELLED"),
        (None, 5.0, "CANCELLED"),  # no deadline: only the client can cut it short
    ],
)
def test_a_call_cut_short_near_its_deadline_counts_as_past_it(
    remaining: float | None, elapsed: float, code: str
) -> None:
    # The fake's clock starts when its handler runs, after the client's; the client's cancel at
    # its deadline can reach the handler a few ms before the fake's own deadline (seen under load).
    call = RecordedCall("ChatCompletion", completion("x"), (), remaining)
    call.received_at = time.monotonic() - elapsed
    _cut_short(call)
    assert call.cancelled and call.code is not None and call.code.name == code
