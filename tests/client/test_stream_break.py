"""What ``break`` means on a stream you still hold: a pause, as with any iterator.

The RPC goes on (the server sees no cancel); the next loop or `text()`
continues where the first stopped; dropping or closing the stream then
cancels it. A stream you do not hold (``for chunk in create(...)``) is
dropped by the break, so that RPC is cancelled (see test_streams.py).
"""

from __future__ import annotations

import asyncio
import gc
import time

import grpc
import pytest

import apex_grpc as mc
from apex_grpc.testing import FakeApex, RecordedCall

from .conftest import chunks

pytestmark = pytest.mark.oldest
USER = [{"role": "user", "content": "hello"}]


def slow(fake: FakeApex) -> None:
    """Streams of six chunks, 0.1 s apart."""
    fake.on("ChatCompletionStream").reply(chunks(6, delay=0.1))


def finished(call: RecordedCall) -> bool:
    """Whether the fake sent the whole stream and the call ended OK, not cancelled."""
    return call.wait_ended() and call.code is grpc.StatusCode.OK and not call.cancelled


def test_break_on_a_held_stream_pauses_it(client: mc.ApexClient, apex_fake: FakeApex) -> None:
    slow(apex_fake)
    stream = client.chat.completions.create(messages=USER, stream=True)
    for _ in stream:
        break
    time.sleep(0.3)  # long enough for a cancel to reach the server, had break sent one
    (call,) = apex_fake.requests
    assert not call.cancelled
    assert stream.text() == "c0 c1 c2 c3 c4 c5 "  # goes on where the loop stopped
    assert finished(call)


def test_dropping_a_paused_stream_cancels_it(client: mc.ApexClient, apex_fake: FakeApex) -> None:
    slow(apex_fake)
    stream = client.chat.completions.create(messages=USER, stream=True)
    for _ in stream:
        break
    del stream
    gc.collect()
    call = apex_fake.last_request
    assert call.wait_ended() and call.cancelled


async def test_async_break_on_a_held_stream_pauses_it(
    aclient: mc.AsyncApexClient, apex_fake: FakeApex
) -> None:
    slow(apex_fake)
    stream = await aclient.chat.completions.create(messages=USER, stream=True)
    async for _ in stream:
        break
    gc.collect()  # the loop's generator is gone; the stream is not
    await asyncio.sleep(0.3)
    held = apex_fake.last_request
    assert not held.cancelled
    assert await stream.text() == "c0 c1 c2 c3 c4 c5 "
    assert await asyncio.to_thread(finished, held)
    paused = await aclient.chat.completions.create(messages=USER, stream=True)
    async for _ in paused:
        break
    await paused.close()
    closed = apex_fake.last_request
    assert await closed.ended_async() and closed.cancelled
