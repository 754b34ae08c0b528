"""The queue in front of a one-at-a-time engine: order, leaving, pushback; and under load.

The echo engine with ``echo_concurrency=1`` queues exactly like the local
model, so these run without the model (tests/server/engines/test_llama.py runs
the same load on the real one).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import grpc
import pytest

import apex_grpc as mc
from apex_grpc_proto.apex.v1 import apex_pb2 as pb
from apex_grpc_proto.apex.v1 import apex_pb2_grpc as pb_grpc
from apex_grpc_server._chat.queue import FIRST_ESTIMATE_S, JITTER, PRIOR_MARGIN, EngineQueue
from apex_grpc_server._config import DEFAULT_QUEUE_SIZE
from apex_grpc_server._status import RpcAbort

pytestmark = pytest.mark.oldest


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def slow(chunks: int, delay_ms: int) -> list[tuple[str, str]]:
    """Metadata making the echo engine hold its turn for ``chunks * delay_ms``."""
    return [("x-echo-chunks", str(chunks)), ("x-echo-delay-ms", str(delay_ms))]


# The queue alone -----------------------------------------------------------


async def test_turns_go_in_arrival_order_one_at_a_time() -> None:
    queue = EngineQueue(1, 10)
    order: list[int] = []
    running = 0

    async def call(number: int) -> None:
        nonlocal running
        async with queue.turn():
            running += 1
            assert running == 1
            order.append(number)
            await asyncio.sleep(0.001)
            running -= 1

    await asyncio.gather(*(call(n) for n in range(8)))
    assert order == list(range(8))
    assert (queue.running, queue.waiting) == (0, 0)


@pytest.mark.parametrize(
    ("expected_turn_s", "jitter_draw", "turn_s", "factor"),
    [
        (None, 0.0, FIRST_ESTIMATE_S, 1.0),  # no estimate: FIRST_ESTIMATE_S
        (None, 1.0, FIRST_ESTIMATE_S, 1.0 + JITTER),  # jitter only ever makes it later
        (0.08, 0.0, 0.08 * PRIOR_MARGIN, 1.0),  # the engine's estimate, with the margin
    ],
)
async def test_a_full_queue_refuses_with_staggered_pushback(
    expected_turn_s: float | None, jitter_draw: float, turn_s: float, factor: float
) -> None:
    now = [100.0]
    queue = EngineQueue(
        1,
        1,
        clock=lambda: now[0],
        rng=lambda: jitter_draw,
        expected_turn_s=expected_turn_s,
    )
    holder_in, release = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        async with queue.turn():
            holder_in.set()
            await release.wait()

    holder = asyncio.create_task(hold())
    await holder_in.wait()
    waiter = asyncio.create_task(_take_turn(queue))
    await asyncio.sleep(0)
    assert queue.waiting == 1
    pushbacks = []
    for _ in range(3):
        with pytest.raises(RpcAbort) as refused:
            await _take_turn(queue)
        assert refused.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "busy: 1 running and 1 waiting" in refused.value.details
        (key, value), *_ = refused.value.trailing_metadata
        assert key == "grpc-retry-pushback-ms"
        pushbacks.append(int(value))
    # One turn takes `turn_s` until measured; each refusal is sent one turn later.
    assert pushbacks == [round(k * turn_s * factor * 1000) for k in (1, 2, 3)]
    first = pushbacks[0]
    now[0] += 10 * turn_s  # the promises are past: the count starts again
    with pytest.raises(RpcAbort) as refused:
        await _take_turn(queue)
    assert refused.value.trailing_metadata == (("grpc-retry-pushback-ms", str(first)),)
    release.set()
    await asyncio.gather(holder, waiter)


async def _take_turn(queue: EngineQueue) -> None:
    async with queue.turn():
        pass


async def test_a_waiter_that_gives_up_leaves_and_never_runs() -> None:
    queue = EngineQueue(1, 5)
    ran: list[str] = []
    release = asyncio.Event()

    async def call(name: str, timeout_s: float | None = None) -> None:
        async with queue.turn(timeout_s):
            ran.append(name)
            if name == "holder":
                await release.wait()

    holder = asyncio.create_task(call("holder"))
    await asyncio.sleep(0)
    cancelled = asyncio.create_task(call("cancelled"))
    timed_out = asyncio.create_task(call("timed out", timeout_s=0.05))
    last = asyncio.create_task(call("last"))
    await asyncio.sleep(0)
    assert queue.waiting == 3
    cancelled.cancel()
    with pytest.raises(RpcAbort) as expired:
        await timed_out
    assert expired.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert queue.waiting == 1  # both left at once, not when their turn came
    release.set()
    await asyncio.wait_for(asyncio.gather(holder, last), 5)
    assert cancelled.cancelled()
    assert ran == ["holder", "last"]
    assert (queue.running, queue.waiting) == (0, 0)


async def test_a_waiter_leaves_at_its_deadline_not_when_its_turn_comes() -> None:
    # Asserted with a tolerance: a waiter that stayed queued past its deadline must fail
    # this test within 2 s (asyncio.wait_for), not hang until pytest's own timeout.
    queue = EngineQueue(1, 5)
    release = asyncio.Event()

    async def hold() -> None:
        async with queue.turn():
            await release.wait()

    async def wait_for_turn(timeout_s: float) -> None:
        async with queue.turn(timeout_s):
            raise AssertionError("a turn came while the holder still held it")

    holder = asyncio.create_task(hold())
    await asyncio.sleep(0)
    started = time.monotonic()
    with pytest.raises(RpcAbort) as expired:
        await asyncio.wait_for(wait_for_turn(0.1), 2.0)
    waited = time.monotonic() - started
    assert expired.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert 0.09 <= waited < 0.1 + 0.9, f"left the queue after {waited:.3f} s (deadline 0.1 s)"
    assert (queue.running, queue.waiting) == (1, 0)
    release.set()
    await asyncio.wait_for(holder, 2.0)
    assert (queue.running, queue.waiting) == (0, 0)


async def test_a_turn_handed_to_a_waiter_cancelled_at_that_moment_goes_on() -> None:
    queue = EngineQueue(1, 5)
    ran: list[str] = []
    first_in = asyncio.Event()
    release = asyncio.Event()

    async def call(name: str) -> None:
        async with queue.turn():
            ran.append(name)
            if name == "first":
                first_in.set()
                await release.wait()

    first = asyncio.create_task(call("first"))
    await first_in.wait()
    second = asyncio.create_task(call("second"))
    third = asyncio.create_task(call("third"))
    await asyncio.sleep(0)
    release.set()
    await asyncio.sleep(0)  # "first" ends and hands its turn to "second"...
    assert first.done() and (queue.running, queue.waiting) == (1, 1)
    second.cancel()  # ...which is cancelled before it resumes
    await asyncio.wait_for(asyncio.gather(second, third, return_exceptions=True), 5)
    assert ran == ["first", "third"]
    assert (queue.running, queue.waiting) == (0, 0)


# Through gRPC ----------------------------------------------------------------


async def test_100_concurrent_calls_through_the_async_client_all_answered(
    start_server: Callable[..., Any], api_key: str
) -> None:
    # Each answer holds the engine's only turn for at least 10 ms (2 chunks, 10 ms apart).
    server = start_server(echo_concurrency=1, echo_chunks=2, echo_chunk_size=8, echo_delay_s=0.01)
    assert server.config.queue_size == DEFAULT_QUEUE_SIZE
    started = time.monotonic()
    async with mc.AsyncApexClient(
        api_key=api_key, base_url=server.target, secure=False, max_retries=0
    ) as client:
        answers = await asyncio.gather(
            *(client.chat.completions.create(messages=user(f"call {n:03d} ")) for n in range(100))
        )
    elapsed = time.monotonic() - started
    # Every call got its own answer: its prompt, repeated, cut to 2 chunks of 8 characters.
    assert [a.choices[0].message.content for a in answers] == [
        (f"call {n:03d} " * 2)[:16] for n in range(100)
    ]
    # One at a time: 100 turns of >= 10 ms each cannot take less than a second.
    assert elapsed >= 1.0


def test_a_call_leaves_the_queue_when_its_deadline_passes(
    start_server: Callable[..., Any], connect: Callable[[str], Any], auth: Any
) -> None:
    server = start_server(echo_concurrency=1, queue_size=1)
    stub: pb_grpc.ApexServiceStub = connect(server.target)
    holder = stub.ChatCompletionStream(ask("hold"), metadata=(*auth, *slow(20, 50)))
    next(holder)  # holds the engine for about a second
    with pytest.raises(grpc.RpcError) as expired:
        stub.CreateChatAndCompletion(
            pb.CreateChatAndCompletionRequest(user_prompt="too late"), metadata=auth, timeout=0.2
        )
    assert expired.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # Its place is free again: another call can wait (the queue holds one), and is answered.
    answered = stub.ChatCompletion(ask("next"), metadata=auth, timeout=10)
    assert answered.choices[0].message.content.startswith("next")
    assert len(list(holder)) == 19
    # The call that left never ran: it would have stored a chat.
    sessions = stub.GetChatSessions(pb.GetChatSessionsRequest(), metadata=auth).chat_sessions
    assert sessions == []


async def test_a_cancelled_call_leaves_the_queue(
    start_server: Callable[..., Any], api_key: str
) -> None:
    server = start_server(echo_concurrency=1, queue_size=1)
    async with mc.AsyncApexClient(api_key=api_key, base_url=server.target, secure=False) as client:
        holder = await client.chat.completions.create(
            messages=user("hold"), stream=True, metadata=slow(20, 50)
        )
        await anext(holder)  # generating now, for about a second
        waiting = asyncio.create_task(client.chats.create(user_prompt="never stored"))
        await asyncio.sleep(0.2)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await asyncio.sleep(0.1)  # the server sees the cancellation
        # The queue's one place is free: this call waits there instead of being refused.
        answered = await client.chat.completions.create(messages=user("next"), max_retries=0)
        assert answered.choices[0].message.content.startswith("next")
        assert len([chunk async for chunk in holder]) == 19
        assert (await client.chats.list_sessions()).chat_sessions == []


async def test_a_full_queue_sends_pushback_and_the_client_retries_then(
    start_server: Callable[..., Any], api_key: str
) -> None:
    server = start_server(echo_concurrency=1, queue_size=1)
    async with mc.AsyncApexClient(api_key=api_key, base_url=server.target, secure=False) as client:
        holder = asyncio.create_task(
            client.chat.completions.create(messages=user("hold"), metadata=slow(6, 50))
        )
        await asyncio.sleep(0.1)  # generating now, for 0.25 s more
        waiter = asyncio.create_task(client.chat.completions.create(messages=user("wait")))
        await asyncio.sleep(0.05)  # the queue's one place is taken
        with pytest.raises(mc.RateLimitError) as refused:
            await client.chat.completions.create(messages=user("refused"), max_retries=0)
        pushback = dict(refused.value.trailing_metadata)["grpc-retry-pushback-ms"]
        assert 10 <= int(pushback) <= 60_000
        info = mc.CallInfo()
        retried = await client.chat.completions.create(messages=user("retried"), call_info=info)
        assert retried.choices[0].message.content.startswith("retried")
        assert info.attempts == 2  # refused once, answered after the pushback
        await asyncio.gather(holder, waiter)


def ask(text: str) -> pb.ChatCompletionRequest:
    return pb.ChatCompletionRequest(messages=[pb.ChatMessage(role="user", content=text)])
