"""Connection scaling on real servers with a per-connection stream limit, on both clients.

Calls past a connection's stream limit go to other connections (up to
max_connections); a call the server refuses before it saw it (REFUSED_STREAM)
is retried on a connection with room, within its deadline, without spending
max_retries; every way a call ends gives its slot back.
"""

from __future__ import annotations

import asyncio
import gc
import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest

import apex_grpc as mc
from apex_grpc.testing import FakeApex, RecordedCall, completion, stream

from .conftest import KEY

SIDES = ["sync", "async"]


def ask(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


@contextmanager
def limited(max_streams: int, delay: float = 0.3, chunks: int = 3) -> Iterator[FakeApex]:
    """A fake that takes `max_streams` calls at once per connection, as front ends do.

    ChatCompletion answers the last message after `delay` seconds; ChatCompletionStream
    sends ``TEXT:0 ``... `chunks` chunks spread over `delay`.
    """

    def chunked(call: RecordedCall) -> object:
        text = call.request.messages[-1].content
        pause = delay / chunks
        return stream(*(f"{text}:{i} " for i in range(chunks)), delay=pause, first_delay=pause)

    with FakeApex(max_concurrent_streams=max_streams, assert_all_called=False) as fake:
        fake.on("ChatCompletion", delay=delay).reply(
            lambda call: completion(call.request.messages[-1].content)
        )
        fake.on("ChatCompletionStream").reply(chunked)
        yield fake


def connections(fake: FakeApex) -> int:
    """How many client connections made calls."""
    return len({call.peer for call in fake.requests})


def peaks(fake: FakeApex) -> list[int]:
    """Per connection, the most calls the fake served on it at once."""
    spans: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for call in fake.requests:
        spans[call.peer].append((call.received_at, call.ended_at or math.inf))
    return [
        max(sum(1 for s, e in group if s <= start < e) for start, _ in group)
        for group in spans.values()
    ]


def burst(
    side: str, target: str, count: int, keep_pool: list[Any] | None = None, **options: Any
) -> tuple[list[Any], list[Any], float]:
    """`count` concurrent unary calls through ONE client: (results or errors, infos, seconds)."""
    infos = [mc.CallInfo() for _ in range(count)]
    arguments = {"api_key": KEY, "base_url": target, "secure": False, **options}
    started = time.monotonic()
    if side == "sync":
        with mc.ApexClient(**arguments) as client:

            def one(index: int) -> Any:
                try:
                    return client.chat.completions.create(
                        messages=ask(f"q{index}"), call_info=infos[index]
                    )
                except mc.ApexError as error:
                    return error

            with ThreadPoolExecutor(count) as threads:
                results = list(threads.map(one, range(count)))
            if keep_pool is not None:
                keep_pool.append(client._transport.pool())
    else:

        async def run() -> list[Any]:
            async with mc.AsyncApexClient(**arguments) as client:
                calls = [
                    client.chat.completions.create(messages=ask(f"q{i}"), call_info=infos[i])
                    for i in range(count)
                ]
                answered = list(await asyncio.gather(*calls, return_exceptions=True))
                if keep_pool is not None:
                    keep_pool.append(client._transport.pool())
                return answered

        results = asyncio.run(run())
    return results, infos, time.monotonic() - started


def answers(results: list[Any]) -> list[str]:
    return [
        r.choices[0].message.content if isinstance(r, mc.ChatCompletionResponse) else repr(r)
        for r in results
    ]


@pytest.mark.parametrize("side", SIDES)
def test_calls_past_the_limit_go_to_more_connections(side: str) -> None:
    with limited(max_streams=10, delay=0.5) as server:
        results, _, _ = burst(side, server.target, 40, max_streams_per_connection=10)
    assert answers(results) == [f"q{i}" for i in range(40)]  # every answer, none lost
    # Four connections, none asked for more than the server takes at once (a fifth call on
    # one would wait in grpc's queue there); the time it saves is measured in `make bench`.
    assert connections(server) >= 4 and max(peaks(server)) <= 10


@pytest.mark.parametrize("side", SIDES)
def test_a_refused_burst_is_retried_elsewhere_and_the_limit_is_learned(side: str) -> None:
    # The client starts at 100 streams per connection; this server takes 10, and refuses
    # what a fresh connection sends before the client has its settings.
    pools: list[Any] = []
    with limited(max_streams=10, delay=0.5) as server:
        results, infos, _ = burst(side, server.target, 60, max_retries=0, keep_pool=pools)
    assert answers(results) == [f"q{i}" for i in range(60)]  # max_retries=0, and none lost
    refused = sum(info.refused for info in infos)
    assert refused > 0, "the server refused nothing: the test did not test the retry"
    assert all(info.attempts == info.refused + 1 for info in infos)
    assert connections(server) > 1  # the retries went to other connections
    assert pools[0].stream_limit <= 10  # what the server takes at once, learned from refusals


@pytest.mark.parametrize("side", SIDES)
def test_a_client_within_the_limit_opens_one_connection(side: str) -> None:
    with limited(max_streams=10, delay=0.2) as server:
        results, infos, _ = burst(side, server.target, 8)
    assert answers(results) == [f"q{i}" for i in range(8)]
    assert connections(server) == 1 and sum(info.refused for info in infos) == 0


@pytest.mark.parametrize("side", SIDES)
def test_refused_retries_share_the_calls_deadline(side: str) -> None:
    # One connection allowed, one stream at a time: the refused calls are retried on the same
    # full connection, where grpc queues them; none may outlive its 0.8 s deadline.
    with limited(max_streams=1, delay=0.3) as server:
        results, _, elapsed = burst(
            side, server.target, 10, max_connections=1, timeout=0.8, max_retries=0
        )
    outcomes = {type(r).__name__ for r in results}
    assert outcomes <= {"ChatCompletionResponse", "DeadlineExceededError"}, results
    assert "DeadlineExceededError" in outcomes  # 10 x 0.3 s cannot fit in 0.8 s
    assert elapsed < 0.8 + 0.4  # the deadline, plus thread start-up and teardown on a busy box
    deadlines = [call.time_remaining for call in server.requests]
    assert all(d is None or d <= 0.85 for d in deadlines)  # each attempt: what was left


def pool_of(client: Any) -> Any:
    return client._transport.pool()


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.01)
    return predicate()


def test_sync_streams_give_their_slot_back_however_they_end() -> None:
    with (
        limited(max_streams=10, delay=0.3, chunks=3) as server,
        mc.ApexClient(api_key=KEY, base_url=server.target, secure=False, max_retries=0) as client,
    ):
        pool = pool_of(client)
        in_flight = lambda: sum(c.in_flight for c in pool.connections)  # noqa: E731
        done = client.chat.completions.create(messages=ask("a"), stream=True)
        assert in_flight() == 1
        assert done.text() == "a:0 a:1 a:2 "
        assert wait_until(lambda: in_flight() == 0)  # ended
        closed = client.chat.completions.create(messages=ask("b"), stream=True)
        next(closed)
        closed.close()
        assert wait_until(lambda: in_flight() == 0)  # cancelled
        abandoned = client.chat.completions.create(messages=ask("c"), stream=True)
        next(abandoned)
        del abandoned
        gc.collect()
        assert wait_until(lambda: in_flight() == 0)  # dropped: cancelled by its finaliser
        failing = client.chat.completions.create(messages=ask("d"), stream=True, timeout=0.05)
        with pytest.raises(mc.DeadlineExceededError):
            failing.text()
        assert wait_until(lambda: in_flight() == 0)  # failed
        assert wait_until(lambda: sum(call.cancelled for call in server.requests) >= 2)


async def test_async_streams_give_their_slot_back_however_they_end() -> None:
    with limited(max_streams=10, delay=0.3, chunks=3) as server:
        async with mc.AsyncApexClient(
            api_key=KEY, base_url=server.target, secure=False, max_retries=0
        ) as client:
            pool = pool_of(client)
            in_flight = lambda: sum(c.in_flight for c in pool.connections)  # noqa: E731

            async def settled() -> bool:
                for _ in range(200):
                    if in_flight() == 0:
                        return True
                    await asyncio.sleep(0.01)
                return False

            done = await client.chat.completions.create(messages=ask("a"), stream=True)
            assert in_flight() == 1
            assert await done.text() == "a:0 a:1 a:2 "
            assert await settled()
            closed = await client.chat.completions.create(messages=ask("b"), stream=True)
            await closed.__anext__()
            await closed.close()
            assert await settled()
            abandoned = await client.chat.completions.create(messages=ask("c"), stream=True)
            await abandoned.__anext__()
            del abandoned
            gc.collect()
            assert await settled()
            reader = asyncio.create_task(
                (await client.chat.completions.create(messages=ask("d"), stream=True)).text()
            )
            await asyncio.sleep(0.05)
            reader.cancel()
            with pytest.raises(asyncio.CancelledError):
                await reader
            assert await settled()
            unary = asyncio.create_task(client.chat.completions.create(messages=ask("e")))
            await asyncio.sleep(0.05)
            unary.cancel()
            with pytest.raises(asyncio.CancelledError):
                await unary
            assert await settled()


def test_extra_connections_close_when_idle_and_with_options_shares_the_pool() -> None:
    with (
        limited(max_streams=10, delay=0.2) as server,
        mc.ApexClient(
            api_key=KEY,
            base_url=server.target,
            secure=False,
            max_streams_per_connection=2,
            connection_idle_timeout=0.3,
        ) as client,
    ):
        derived = client.with_options(timeout=5)
        with ThreadPoolExecutor(6) as threads:
            list(
                threads.map(lambda i: derived.chat.completions.create(messages=ask("x")), range(6))
            )
        pool = pool_of(client)
        assert pool is pool_of(derived) and len(pool.connections) == 3
        assert wait_until(
            lambda: len(pool.connections) == 1, timeout=3.0
        )  # the watchdog closed them
        client.chat.completions.create(messages=ask("again"))  # the primary still works


async def test_async_extra_connections_close_when_idle() -> None:
    # The async twin of the test above: its sweep is a loop timer, not the sync watchdog.
    with limited(max_streams=10, delay=0.2) as server:
        async with mc.AsyncApexClient(
            api_key=KEY,
            base_url=server.target,
            secure=False,
            max_streams_per_connection=2,
            connection_idle_timeout=0.3,
        ) as client:
            derived = client.with_options(timeout=5)
            await asyncio.gather(
                *(derived.chat.completions.create(messages=ask("x")) for _ in range(6))
            )
            pool = pool_of(client)
            assert pool is pool_of(derived) and len(pool.connections) == 3
            extras = list(pool.connections[1:])
            for _ in range(300):  # up to 3 s: the timer fires 0.3 s after the last call
                if len(pool.connections) == 1:
                    break
                await asyncio.sleep(0.01)
            assert len(pool.connections) == 1
            await client.chat.completions.create(messages=ask("again"))  # the primary works
            assert len(pool.connections) == 1 and pool.connections[0] not in extras
