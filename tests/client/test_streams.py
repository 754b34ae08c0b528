"""Streaming: chunks in order, helpers, retries only before the first chunk, and every way
of abandoning a stream cancels the RPC on the server."""

from __future__ import annotations

import asyncio
import gc
import time

import grpc
import pytest

import apex_grpc as mc
from apex_grpc.testing import FakeApex, Stream, error

from .conftest import KEY, chunks, next_chunk, settle

pytestmark = pytest.mark.oldest
USER = [{"role": "user", "content": "hello"}]
EXPECTED = "c0 c1 c2 c3 c4 "
UNAVAILABLE = error("UNAVAILABLE")


def numbered(number: int) -> Stream:
    """The five chunks, with the request id ``req-NUMBER`` and the count in the trailers."""
    return chunks(
        initial_metadata=[("x-request-id", f"req-{number}")],
        trailing_metadata=[("x-chunks-sent", "5")],
    )


def cancelled(fake: FakeApex) -> bool:
    """Whether the last stream ends cancelled on the fake's side (waiting for it a while)."""
    call = fake.calls_to("ChatCompletionStream")[-1]
    return call.wait_ended() and call.cancelled


def test_chunks_arrive_in_order(client: mc.ApexClient, apex_fake: FakeApex) -> None:
    apex_fake.on("ChatCompletionStream").reply(numbered(1))
    stream = client.chat.completions.create(messages=USER, stream=True)
    assert isinstance(stream, mc.ChatCompletionStream)
    assert [c.choices[0].delta.content for c in stream] == [f"c{i} " for i in range(5)]
    final = stream.get_final_response()
    assert final.choices[0].message.content == EXPECTED
    assert final.choices[0].finish_reason == "stop"
    assert final.choices[0].message.role == "assistant"
    assert apex_fake.calls_to("ChatCompletionStream")[0].request.stream is True
    assert stream.initial_metadata() == (("x-request-id", "req-1"),)
    assert stream.trailing_metadata() == (("x-chunks-sent", "5"),)


def test_helpers_continue_from_where_iteration_stopped(
    client: mc.ApexClient, apex_fake: FakeApex
) -> None:
    apex_fake.on("ChatCompletionStream").reply(numbered(1))
    with client.chat.completions.create(messages=USER, stream=True) as stream:
        first = next(stream)
        assert first.choices[0].delta.content == "c0 "
        assert stream.text() == EXPECTED
        assert stream.chunk_count == 5
        assert stream.request_id == "req-1"


async def test_async_chunks_and_helpers(aclient: mc.AsyncApexClient, apex_fake: FakeApex) -> None:
    apex_fake.on("ChatCompletionStream").reply(numbered(1), numbered(2))
    stream = await aclient.chat.completions.create(messages=USER, stream=True)
    assert isinstance(stream, mc.AsyncChatCompletionStream)
    contents = [c.choices[0].delta.content async for c in stream]
    assert "".join(contents) == EXPECTED
    final = await stream.get_final_response()
    assert final.choices[0].message.content == EXPECTED
    assert await stream.trailing_metadata() == (("x-chunks-sent", "5"),)
    again = await aclient.chat.completions.create(messages=USER, stream=True)
    assert await again.text() == EXPECTED
    assert await again.request_id() == "req-2"


def test_stream_retried_before_first_chunk(client: mc.ApexClient, apex_fake: FakeApex) -> None:
    apex_fake.on("ChatCompletionStream").reply(UNAVAILABLE, chunks())
    stream = client.chat.completions.create(messages=USER, stream=True)
    assert stream.text() == EXPECTED
    assert len(apex_fake.calls_to("ChatCompletionStream")) == 2


async def test_async_stream_retried_before_first_chunk(
    aclient: mc.AsyncApexClient, apex_fake: FakeApex
) -> None:
    apex_fake.on("ChatCompletionStream").reply(UNAVAILABLE, UNAVAILABLE, chunks())
    stream = await aclient.chat.completions.create(messages=USER, stream=True)
    assert await stream.text() == EXPECTED
    assert len(apex_fake.calls_to("ChatCompletionStream")) == 3


@pytest.mark.parametrize("code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL])
def test_stream_failing_after_first_chunk_is_not_retried(
    client: mc.ApexClient, apex_fake: FakeApex, code: grpc.StatusCode
) -> None:
    apex_fake.on("ChatCompletionStream").reply(chunks(2, then=error(code, "lost the miner")))
    stream = client.chat.completions.create(messages=USER, stream=True, resume=False)
    got = []
    with pytest.raises(mc.APIError) as caught:
        for chunk in stream:
            got.append(chunk.choices[0].delta.content)
    assert got == ["c0 ", "c1 "]  # nothing duplicated, nothing lost before the failure
    assert caught.value.code is code and caught.value.details == "lost the miner"
    # UNAVAILABLE mid-answer says how far it got and that resuming is off; another failure
    # is its own class.
    interrupted = isinstance(caught.value, mc.StreamInterruptedError)
    assert interrupted is (code is grpc.StatusCode.UNAVAILABLE)
    assert ("after 2 chunks (6 characters); resuming is off" in str(caught.value)) is interrupted
    assert len(apex_fake.calls_to("ChatCompletionStream")) == 1


async def test_async_stream_failing_after_first_chunk_is_not_retried(
    aclient: mc.AsyncApexClient, apex_fake: FakeApex
) -> None:
    apex_fake.on("ChatCompletionStream").reply(chunks(1, then=error("UNAVAILABLE", "gone")))
    stream = await aclient.chat.completions.create(messages=USER, stream=True, resume=False)
    got = []
    with pytest.raises(mc.StreamInterruptedError, match="resuming is off"):
        async for chunk in stream:
            got.append(chunk.choices[0].delta.content)
    assert got == ["c0 "]
    assert len(apex_fake.calls_to("ChatCompletionStream")) == 1


def slow(fake: FakeApex) -> None:
    """Streams of 50 chunks, 50 ms apart."""
    fake.on("ChatCompletionStream").reply(chunks(50, delay=0.05))


def test_break_cancels_the_rpc(client: mc.ApexClient, apex_fake: FakeApex) -> None:
    slow(apex_fake)
    for chunk in client.chat.completions.create(messages=USER, stream=True):
        assert chunk.choices[0].delta.content == "c0 "
        break
    assert cancelled(apex_fake)


def test_close_cancels_the_rpc(client: mc.ApexClient, apex_fake: FakeApex) -> None:
    slow(apex_fake)
    stream = client.chat.completions.create(messages=USER, stream=True)
    next(stream)
    stream.close()
    assert cancelled(apex_fake)
    assert list(stream) == []


def test_leaving_with_cancels_the_rpc(client: mc.ApexClient, apex_fake: FakeApex) -> None:
    slow(apex_fake)
    with client.chat.completions.create(messages=USER, stream=True) as stream:
        next(stream)
    assert cancelled(apex_fake)


def test_garbage_collection_cancels_the_rpc(client: mc.ApexClient, apex_fake: FakeApex) -> None:
    slow(apex_fake)
    stream = client.chat.completions.create(messages=USER, stream=True)
    next(stream)
    del stream
    gc.collect()
    assert cancelled(apex_fake)


def test_finished_stream_is_not_cancelled(client: mc.ApexClient, apex_fake: FakeApex) -> None:
    apex_fake.on("ChatCompletionStream").reply(chunks())
    stream = client.chat.completions.create(messages=USER, stream=True)
    stream.until_done()
    stream.close()
    del stream
    time.sleep(0.1)
    (call,) = apex_fake.requests
    assert call.ended and call.code is grpc.StatusCode.OK and not call.cancelled


async def test_async_break_and_gc_cancel_the_rpc(
    aclient: mc.AsyncApexClient, apex_fake: FakeApex
) -> None:
    slow(apex_fake)
    async for _chunk in await aclient.chat.completions.create(messages=USER, stream=True):
        break
    gc.collect()
    await asyncio.sleep(0)
    assert await asyncio.to_thread(cancelled, apex_fake)


async def test_async_close_cancels_the_rpc(
    aclient: mc.AsyncApexClient, apex_fake: FakeApex
) -> None:
    slow(apex_fake)
    stream = await aclient.chat.completions.create(messages=USER, stream=True)
    await stream.__anext__()
    await stream.close()
    assert await asyncio.to_thread(cancelled, apex_fake)


async def test_async_with_exit_cancels_the_rpc(
    aclient: mc.AsyncApexClient, apex_fake: FakeApex
) -> None:
    slow(apex_fake)
    async with await aclient.chat.completions.create(messages=USER, stream=True) as stream:
        await stream.__anext__()
    assert await asyncio.to_thread(cancelled, apex_fake)


async def test_cancelling_the_consuming_task_cancels_the_rpc(
    aclient: mc.AsyncApexClient, apex_fake: FakeApex
) -> None:
    slow(apex_fake)
    started = asyncio.Event()

    async def consume() -> None:
        async for _ in await aclient.chat.completions.create(messages=USER, stream=True):
            started.set()

    task = asyncio.create_task(consume())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.to_thread(cancelled, apex_fake)


LIMIT = 0.2
LATE = 0.15
"""How late a first-chunk or idle timeout may fire. The sync client's watchdog thread wakes
from a timed wait at the deadline and cancels the call; the reading thread then gets the
cancellation from grpc's poller; the async client's asyncio timer wakes its task the same
way. Each step takes a few ms; threads and tasks waiting for one of 2 cores shared with other
test runs can add tens of ms more. 0.15 s covers that, and a timer running at twice its limit
(0.4 s) or more fails."""


async def test_first_chunk_timeout_fires_on_time(
    either_client: mc.ApexClient | mc.AsyncApexClient, apex_fake: FakeApex
) -> None:
    apex_fake.on("ChatCompletionStream").reply(chunks(first_delay=2.0))
    stream = await settle(
        either_client.chat.completions.create(messages=USER, stream=True, first_chunk_timeout=LIMIT)
    )
    started = time.monotonic()  # the limit counts time spent waiting for a chunk
    with pytest.raises(mc.StreamTimeoutError, match=r"first-chunk timeout of 0\.2s"):
        await next_chunk(stream)
    assert LIMIT <= time.monotonic() - started < LIMIT + LATE
    assert await asyncio.to_thread(cancelled, apex_fake)


async def test_idle_timeout_fires_on_time(
    either_client: mc.ApexClient | mc.AsyncApexClient, apex_fake: FakeApex
) -> None:
    apex_fake.on("ChatCompletionStream").reply(chunks(4, delay=2.0))
    limited = either_client.with_options(stream_idle_timeout=LIMIT)
    stream = await settle(limited.chat.completions.create(messages=USER, stream=True))
    assert (await next_chunk(stream)).choices[0].delta.content == "c0 "
    started = time.monotonic()
    with pytest.raises(mc.StreamTimeoutError, match=r"idle timeout of 0\.2s \(1 chunks"):
        await next_chunk(stream)
    assert LIMIT <= time.monotonic() - started < LIMIT + LATE
    assert await asyncio.to_thread(cancelled, apex_fake)


def test_idle_timeout_does_not_fire_on_a_steady_stream(
    client: mc.ApexClient, apex_fake: FakeApex
) -> None:
    apex_fake.on("ChatCompletionStream").reply(chunks(6, delay=0.05))
    stream = client.chat.completions.create(messages=USER, stream=True, idle_timeout=0.5)
    assert stream.chunk_count == 0
    assert len(stream.text()) > 0


def test_watched_stream_dropped_after_a_watchdog_check_is_cancelled(
    apex_fake: FakeApex,
) -> None:
    slow(apex_fake)
    with mc.ApexClient(
        api_key=KEY, base_url=apex_fake.target, secure=False, stream_idle_timeout=0.1
    ) as c:
        stream = c.chat.completions.create(messages=USER, stream=True)
        next(stream)
        next(stream)  # waits under the idle limit, so the watchdog takes the stream
        time.sleep(0.3)  # the watchdog looks at the stream, which is not waiting
        del stream
        gc.collect()
        assert cancelled(apex_fake)


def test_overall_deadline_bounds_a_stream(client: mc.ApexClient, apex_fake: FakeApex) -> None:
    slow(apex_fake)
    stream = client.chat.completions.create(messages=USER, stream=True, timeout=0.3)
    with pytest.raises(mc.DeadlineExceededError):
        stream.until_done()
    assert 0 < stream.chunk_count < 50


async def test_async_close_inside_the_loop_ends_iteration(
    aclient: mc.AsyncApexClient, apex_fake: FakeApex
) -> None:
    slow(apex_fake)
    stream = await aclient.chat.completions.create(messages=USER, stream=True)
    seen = []
    async for chunk in stream:
        seen.append(chunk.choices[0].delta.content)
        if len(seen) == 3:
            await stream.close()
    assert seen == ["c0 ", "c1 ", "c2 "]
    assert await asyncio.to_thread(cancelled, apex_fake)


async def test_async_iteration_resumes_after_a_break(
    aclient: mc.AsyncApexClient, apex_fake: FakeApex
) -> None:
    apex_fake.on("ChatCompletionStream").reply(chunks())
    stream = await aclient.chat.completions.create(messages=USER, stream=True)
    async for _ in stream:
        break
    rest = [c.choices[0].delta.content async for c in stream]
    assert rest == ["c1 ", "c2 ", "c3 ", "c4 "]
    assert (await stream.get_final_response()).choices[0].message.content == EXPECTED
