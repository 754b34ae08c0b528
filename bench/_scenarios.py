"""Benchmark scenarios: each measures the raw grpcio stub and apex-grpc the same way.

Both sides build their request from the same message dicts on every call,
talk to the same server over one shared channel, and check every answer
(content and chunk counts), so a broken fast path cannot look fast.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio
import grpc.experimental

import apex_grpc as mc
from apex_grpc_proto.apex.v1 import apex_pb2_grpc as pbg

from ._common import BENCH_KEY, MESSAGES, RAW_METADATA, SEARCH_QUERY, check, expected_text
from ._raw import raw_chat_request, raw_search_request

CONCURRENCY = 64


def rate(fn: Callable[[], int], duration: float) -> float:
    """Units per second of `fn` (which returns units done) over `duration` seconds."""
    fn()  # warm up outside the timed window
    done, elapsed = timed(fn, duration)
    return done / elapsed


def timed(fn: Callable[[], int], duration: float) -> tuple[int, float]:
    """(units done, seconds taken) running `fn` repeatedly for about `duration` seconds."""
    done = 0
    started = time.perf_counter()
    deadline = started + duration
    while time.perf_counter() < deadline:
        done += fn()
    return done, time.perf_counter() - started


def interleaved(
    raw: Callable[[], int], ours: Callable[[], int], slices: int, slice_s: float, ours_first: bool
) -> tuple[float, float]:
    """(raw rate, ours rate) from `slices` alternating slices of each side.

    Short alternating slices put both sides under the same machine load,
    which drifts on a shared host.
    """
    raw()
    ours()
    totals = {True: [0, 0.0], False: [0, 0.0]}
    for index in range(slices):
        first = ours_first == (index % 2 == 0)
        for is_ours in (first, not first):
            done, elapsed = timed(ours if is_ours else raw, slice_s)
            totals[is_ours][0] += done
            totals[is_ours][1] += elapsed
    return totals[False][0] / totals[False][1], totals[True][0] / totals[True][1]


async def async_timed(
    fn: Callable[[], Awaitable[int]], duration: float, workers: int
) -> tuple[int, float]:
    """(units, seconds) of `workers` coroutines each looping `fn` for `duration` seconds."""
    done = 0
    started = time.perf_counter()
    deadline = started + duration

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            units = await fn()  # not `done += await fn()`: that reads `done` before awaiting
            done += units

    await asyncio.gather(*(worker() for _ in range(workers)))
    return done, time.perf_counter() - started


async def async_interleaved(
    raw: Callable[[], Awaitable[int]],
    ours: Callable[[], Awaitable[int]],
    slices: int,
    slice_s: float,
    ours_first: bool,
) -> tuple[float, float]:
    """The async twin of `interleaved`, `CONCURRENCY` calls in flight per side."""
    await asyncio.gather(*(raw() for _ in range(CONCURRENCY)))
    await asyncio.gather(*(ours() for _ in range(CONCURRENCY)))
    totals = {True: [0, 0.0], False: [0, 0.0]}
    for index in range(slices):
        first = ours_first == (index % 2 == 0)
        for is_ours in (first, not first):
            done, elapsed = await async_timed(ours if is_ours else raw, slice_s, CONCURRENCY)
            totals[is_ours][0] += done
            totals[is_ours][1] += elapsed
    return totals[False][0] / totals[False][1], totals[True][0] / totals[True][1]


@dataclass
class Context:
    """What every scenario needs: the server, the expected answers, both clients."""

    target: str
    chunks: int
    chunk_size: int

    def __post_init__(self) -> None:
        self.text = expected_text(self.chunks, self.chunk_size)
        options, self.raw_metadata = ours_on_the_wire(self.target)
        # Same channel arguments as apex-grpc's, plus one so the two do not share a connection.
        self.raw_options = [*options, RAW_SIDE_ARG]
        self.raw_channel = grpc.insecure_channel(self.target, options=self.raw_options)
        self.raw_stub = pbg.ApexServiceStub(self.raw_channel)
        self.default_channel = grpc.insecure_channel(self.target)
        self.default_stub = pbg.ApexServiceStub(self.default_channel)
        """A raw stub with grpc's default channel arguments, as a raw-stub user has it."""
        self.client = mc.ApexClient(api_key=BENCH_KEY, base_url=self.target, secure=False)
        self.search_count: int | None = None

    def close(self) -> None:
        """Close every channel."""
        self.raw_channel.close()
        self.default_channel.close()
        self.client.close()


RAW_SIDE_ARG = ("apex_grpc.bench_side", "raw")
"""Channels to one target share a connection unless their arguments differ."""


def ours_on_the_wire(target: str) -> tuple[list[tuple[str, Any]], list[tuple[str, str]]]:
    """(channel options, metadata) of apex-grpc's sync client: what a fair raw stub is given."""
    client = mc.ApexClient(api_key=BENCH_KEY, base_url=target, secure=False)
    options = client.settings.grpc_options()
    if client.settings.single_threaded_streams:  # the sync transport adds it (channels.py)
        options.append((grpc.experimental.ChannelOptions.SingleThreadedUnaryStream, 1))
    metadata = [(str(k), str(v)) for k, v in client.settings.call_defaults.metadata]
    client.close()
    return options, metadata


# Sync unary chat


def raw_unary(ctx: Context) -> Callable[[], int]:
    def call() -> int:
        response = ctx.raw_stub.ChatCompletion(
            raw_chat_request(False), metadata=ctx.raw_metadata, timeout=600
        )
        check(response.choices[0].message.content == ctx.text, "raw unary content")
        return 1

    return call


def ours_unary(ctx: Context) -> Callable[[], int]:
    def call() -> int:
        response = ctx.client.chat.completions.create(messages=MESSAGES)
        check(response.choices[0].message.content == ctx.text, "apex-grpc unary content")
        return 1

    return call


# Sync streaming


def raw_stream(ctx: Context) -> Callable[[], int]:
    def call() -> int:
        parts = [
            chunk.choices[0].delta.content
            for chunk in ctx.default_stub.ChatCompletionStream(
                raw_chat_request(True), metadata=RAW_METADATA, timeout=600
            )
        ]
        check(len(parts) == ctx.chunks and "".join(parts) == ctx.text, "raw stream content")
        return len(parts)

    return call


def ours_stream(ctx: Context) -> Callable[[], int]:
    def call() -> int:
        parts = [
            chunk.choices[0].delta.content
            for chunk in ctx.client.chat.completions.create(messages=MESSAGES, stream=True)
        ]
        check(len(parts) == ctx.chunks and "".join(parts) == ctx.text, "apex-grpc stream content")
        return len(parts)

    return call


# Web search


def raw_search(ctx: Context) -> Callable[[], int]:
    def call() -> int:
        response = ctx.raw_stub.WebRetrieval(
            raw_search_request(), metadata=ctx.raw_metadata, timeout=40
        )
        check_search(ctx, len(response.results), "raw")
        return 1

    return call


def ours_search(ctx: Context) -> Callable[[], int]:
    def call() -> int:
        response = ctx.client.web_search.search(search_query=SEARCH_QUERY)
        check_search(ctx, len(response.results), "apex-grpc")
        return 1

    return call


def check_search(ctx: Context, count: int, side: str) -> None:
    """Both sides must get the same, non-empty result count."""
    if ctx.search_count is None:
        ctx.search_count = count
    check(count > 0 and count == ctx.search_count, f"{side} search results")


# Async unary and streaming, 64 in flight on one channel / one client


def async_pair(
    ctx: Context, streaming: bool, slices: int, slice_s: float, ours_first: bool
) -> tuple[float, float]:
    """(raw rate, ours rate): raw grpc.aio stub vs AsyncApexClient in one event loop."""

    async def run() -> tuple[float, float]:
        channel = grpc.aio.insecure_channel(ctx.target, options=ctx.raw_options)
        stub = pbg.ApexServiceStub(channel)
        client = mc.AsyncApexClient(api_key=BENCH_KEY, base_url=ctx.target, secure=False)

        async def raw_unary() -> int:
            response = await stub.ChatCompletion(
                raw_chat_request(False), metadata=ctx.raw_metadata, timeout=600
            )
            check(response.choices[0].message.content == ctx.text, "raw async unary")
            return 1

        async def our_unary() -> int:
            response = await client.chat.completions.create(messages=MESSAGES)
            check(response.choices[0].message.content == ctx.text, "apex-grpc async unary")
            return 1

        async def raw_stream() -> int:
            call = stub.ChatCompletionStream(
                raw_chat_request(True), metadata=ctx.raw_metadata, timeout=600
            )
            parts = [chunk.choices[0].delta.content async for chunk in call]
            check(len(parts) == ctx.chunks and "".join(parts) == ctx.text, "raw aio stream")
            return len(parts)

        async def our_stream() -> int:
            stream = await client.chat.completions.create(messages=MESSAGES, stream=True)
            parts = [chunk.choices[0].delta.content async for chunk in stream]
            check(len(parts) == ctx.chunks and "".join(parts) == ctx.text, "apex-grpc aio")
            return len(parts)

        try:
            if streaming:
                return await async_interleaved(raw_stream, our_stream, slices, slice_s, ours_first)
            return await async_interleaved(raw_unary, our_unary, slices, slice_s, ours_first)
        finally:
            await client.close()
            await channel.close()

    return asyncio.run(run())


def median(values: list[float]) -> float:
    """The median (0 for no values)."""
    return statistics.median(values) if values else 0.0


Scenario = tuple[
    str, Callable[[Context], Callable[[], int]], Callable[[Context], Callable[[], int]]
]
SYNC_SCENARIOS: dict[str, Scenario] = {
    "sync unary": ("sync unary", raw_unary, ours_unary),
    "sync stream": ("sync stream", raw_stream, ours_stream),
    "web search": ("web search", raw_search, ours_search),
}


def run_sync(
    ctx: Context, scenario: Scenario, slices: int, slice_s: float, ours_first: bool
) -> tuple[float, float]:
    """(raw rate, ours rate) for one round of a sync scenario."""
    _, make_raw, make_ours = scenario
    return interleaved(make_raw(ctx), make_ours(ctx), slices, slice_s, ours_first)
