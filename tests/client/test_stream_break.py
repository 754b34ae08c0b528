"""What ``break`` means on a stream you still hold: a pause, as with any iterator.

The RPC goes on (the server sees no cancel); the next loop or `text()`
continues where the first stopped; dropping or closing the stream then
cancels it. A stream you do not hold (``for chunk in create(...)``) is
dropped by the break, so that RPC is cancelled (see test_streams.py).
"""

from __future__ import annotations

import asyncio
import gc

import pytest

import apex_grpc as mc

from ._scripted_server import ScriptedServer

pytestmark = pytest.mark.oldest
USER = [{"role": "user", "content": "hello"}]


def slow(scripted: ScriptedServer) -> None:
    scripted.stream.chunks = 6
    scripted.stream.delay = 0.1


def test_break_on_a_held_stream_pauses_it(client: mc.ApexClient, scripted: ScriptedServer) -> None:
    slow(scripted)
    stream = client.chat.completions.create(messages=USER, stream=True)
    for _ in stream:
        break
    # Long enough for a cancel to reach the server, had break sent one.
    assert not scripted.wait_for(lambda: bool(scripted.cancelled), timeout=0.3)
    assert stream.text() == "c0 c1 c2 c3 c4 c5 "  # goes on where the loop stopped
    assert scripted.finished == [("ChatCompletionStream", "OK")]


def test_dropping_a_paused_stream_cancels_it(
    client: mc.ApexClient, scripted: ScriptedServer
) -> None:
    slow(scripted)
    stream = client.chat.completions.create(messages=USER, stream=True)
    for _ in stream:
        break
    del stream
    gc.collect()
    assert scripted.wait_for(lambda: "ChatCompletionStream" in scripted.cancelled)


async def test_async_break_on_a_held_stream_pauses_it(
    aclient: mc.AsyncApexClient, scripted: ScriptedServer
) -> None:
    slow(scripted)
    stream = await aclient.chat.completions.create(messages=USER, stream=True)
    async for _ in stream:
        break
    gc.collect()  # the loop's generator is gone; the stream is not
    await asyncio.sleep(0.3)
    assert scripted.cancelled == []
    assert await stream.text() == "c0 c1 c2 c3 c4 c5 "
    paused = await aclient.chat.completions.create(messages=USER, stream=True)
    async for _ in paused:
        break
    await paused.close()
    assert await asyncio.to_thread(
        scripted.wait_for, lambda: "ChatCompletionStream" in scripted.cancelled
    )
