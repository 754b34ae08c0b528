"""Bursts past one HTTP/2 connection: many slow calls at once through one cold client.

Against the slow server (100 streams per connection, 1-second calls), a
burst starts `count` calls at the same moment through one fresh client (or
one fresh raw grpc channel, for comparison) and waits for all of them. Every
answer is checked against what the server must send for that call's prompt;
a wrong answer fails the benchmark, a failed call is counted (the raw stub on
one connection is expected to lose refused streams).
"""

from __future__ import annotations

import asyncio
import logging
import re
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio

import apex_grpc as mc
from apex_grpc_proto.apex.v1 import apex_pb2 as pb
from apex_grpc_proto.apex.v1 import apex_pb2_grpc as pbg

from ._common import BENCH_KEY, RAW_METADATA, check
from ._report import Row, plural, spread
from ._slow_server import SlowServer, answer_text, chunk_text, slow_server

REFUSED = re.compile(r"RST_STREAM.*(?:error code 7\b|REFUSED_STREAM)", re.DOTALL)
"""How grpc words a stream the server refused before it saw it (HTTP/2 REFUSED_STREAM)."""
BURST_TIMEOUT = 120.0
STREAM_LIMIT = 100
READY = "ready"
"""The floor: the raw stub on as many connections as the burst needs (100 calls each),
opened and connected before the clock starts, which no cold client can do."""
READY_ARG = "apex_grpc.bench_ready_connection"
"""Channels to one target share a connection unless their arguments differ."""


def connections_needed(calls: int) -> int:
    """How many connections hold `calls` concurrent calls at STREAM_LIMIT each (the floor's)."""
    return -(-calls // STREAM_LIMIT)


@dataclass
class Burst:
    """What one burst did."""

    answered: int = 0
    refused: int = 0
    """Calls lost to REFUSED_STREAM."""
    retried: int = 0
    """apex-grpc: attempts refused with REFUSED_STREAM that it retried."""
    seconds: float = 0.0
    cpu_s: float = 0.0
    """CPU time of this (the client's) process over the burst, every thread included."""
    connections: int = 0
    started: float = 0.0
    """time.monotonic() when the burst started (comparable with the server's clock)."""
    server: dict[str, float] = field(default_factory=dict)
    """The server's report: connections, calls, and when calls started and ended."""
    errors: Counter[str] = field(default_factory=Counter)

    def failed(self, error: BaseException) -> None:
        """Count a call that ended in an error."""
        details = str(error.details() if isinstance(error, grpc.RpcError) else error)  # type: ignore[attr-defined]
        if REFUSED.search(details or ""):
            self.refused += 1
        else:
            self.errors[type(error).__name__] += 1

    def finish(self, side: str, streaming: bool, logged: int, server: SlowServer) -> None:
        """Fill in the refusals apex-grpc retried and the connections the server saw.

        A stream's retried refusals are counted from the DEBUG log (`logged`);
        a unary call's from its CallInfo, which must agree with the log.
        """
        if side == "ours" and streaming:
            self.retried = logged
        elif side == "ours":
            check(self.retried == logged, f"CallInfo.refused {self.retried}, logged {logged}")
        self.server = server.report()
        self.connections = int(self.server["connections"])


def prompt(index: int) -> str:
    """The prompt of call `index` of a burst (each call's answer differs)."""
    return f"burst call {index}"


def raw_request(index: int, stream: bool) -> pb.ChatCompletionRequest:
    """The raw-stub request of call `index`."""
    message = pb.ChatMessage(role="user", content=prompt(index))
    return pb.ChatCompletionRequest(messages=[message], stream=stream)


def check_stream(index: int, parts: list[str], chunks: int, side: str) -> None:
    """A streamed answer must be exactly the server's chunks for this call."""
    expected = [chunk_text(prompt(index), n) for n in range(chunks)]
    check(parts == expected, f"{side} burst stream {index}: {parts!r}")


class RefusalCounter(logging.Handler):
    """Counts the apex_grpc DEBUG lines of attempts refused with REFUSED_STREAM.

    A stream has no CallInfo; its attempts are visible in the DEBUG log.
    """

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.refused = 0

    def emit(self, record: logging.LogRecord) -> None:
        if isinstance(record.args, tuple) and record.args[1:2] == ("REFUSED_STREAM",):
            self.refused += 1

    def __enter__(self) -> RefusalCounter:
        logger = logging.getLogger("apex_grpc")
        self._level = logger.level
        logger.addHandler(self)
        logger.setLevel(logging.DEBUG)
        return self

    def __exit__(self, *exc: object) -> None:
        logger = logging.getLogger("apex_grpc")
        logger.removeHandler(self)
        logger.setLevel(self._level)


def async_burst(server: SlowServer, side: str, streaming: bool, count: int, chunks: int) -> Burst:
    """`count` concurrent calls through one fresh AsyncApexClient, one fresh aio channel,
    or (READY) the aio channels the burst needs, connected before the clock starts."""
    burst = Burst()

    async def run() -> None:
        if side == "raw":
            channel = grpc.aio.insecure_channel(server.target)
            call = raw_async_call(pbg.ApexServiceStub(channel), streaming, chunks)
            close: Callable[[], Awaitable[Any]] = channel.close
        elif side == READY:
            channels = [
                grpc.aio.insecure_channel(server.target, options=[(READY_ARG, n)])
                for n in range(connections_needed(count))
            ]
            for ready in channels:  # connected before the clock starts
                await ready.channel_ready()
            calls = [raw_async_call(pbg.ApexServiceStub(c), streaming, chunks) for c in channels]

            async def on_its_connection(index: int) -> None:
                await calls[index // STREAM_LIMIT](index)

            async def close_channels() -> None:
                for ready in channels:
                    await ready.close()

            call, close = on_its_connection, close_channels
        else:
            client = mc.AsyncApexClient(api_key=BENCH_KEY, base_url=server.target, secure=False)
            call = ours_async_call(client, streaming, chunks, burst)
            close = client.close

        async def one(index: int) -> None:
            try:
                await call(index)
            except (grpc.RpcError, mc.ApexError) as error:
                burst.failed(error)
            else:
                burst.answered += 1

        try:
            started = burst.started = time.monotonic()
            cpu = time.process_time()
            await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(count))), BURST_TIMEOUT)
            burst.seconds = time.monotonic() - started
            burst.cpu_s = time.process_time() - cpu
        finally:
            await close()

    with RefusalCounter() as refusals:
        asyncio.run(run())
    burst.finish(side, streaming, refusals.refused, server)
    return burst


def raw_async_call(
    stub: pbg.ApexServiceStub, streaming: bool, chunks: int
) -> Callable[[int], Awaitable[None]]:
    """One checked raw grpc.aio call (stream or unary) of a burst."""

    async def call(index: int) -> None:
        if streaming:
            rpc = stub.ChatCompletionStream(
                raw_request(index, True), metadata=RAW_METADATA, timeout=BURST_TIMEOUT
            )
            parts = [chunk.choices[0].delta.content async for chunk in rpc]
            check_stream(index, parts, chunks, "raw")
        else:
            response = await stub.ChatCompletion(
                raw_request(index, False), metadata=RAW_METADATA, timeout=BURST_TIMEOUT
            )
            content = response.choices[0].message.content
            check(content == answer_text(prompt(index)), f"raw burst unary {index}")

    return call


def ours_async_call(
    client: Any, streaming: bool, chunks: int, burst: Burst
) -> Callable[[int], Awaitable[None]]:
    """One checked AsyncApexClient call of a burst; unary calls add their refusals to `burst`."""

    async def call(index: int) -> None:
        messages = [{"role": "user", "content": prompt(index)}]
        if streaming:
            stream = await client.chat.completions.create(
                messages=messages, stream=True, timeout=BURST_TIMEOUT
            )
            parts = [chunk.choices[0].delta.content async for chunk in stream]
            check_stream(index, parts, chunks, "apex-grpc")
        else:
            info = mc.CallInfo()
            response = await client.chat.completions.create(
                messages=messages, timeout=BURST_TIMEOUT, call_info=info
            )
            burst.retried += info.refused
            content = response.choices[0].message.content
            check(content == answer_text(prompt(index)), f"apex-grpc burst unary {index}")

    return call


def sync_burst(server: SlowServer, side: str, threads: int, chunks: int) -> Burst:
    """`threads` concurrent streams, one per thread, through one fresh client or channel(s)."""
    burst = Burst()
    lock = threading.Lock()
    if side in ("raw", READY):
        count = 1 if side == "raw" else connections_needed(threads)
        channels = [
            grpc.insecure_channel(server.target, options=[(READY_ARG, n)]) for n in range(count)
        ]
        if side == READY:  # connected before the clock starts
            for channel in channels:
                grpc.channel_ready_future(channel).result(timeout=BURST_TIMEOUT)
        stubs = [pbg.ApexServiceStub(channel) for channel in channels]

        def close_channels() -> None:
            for channel in channels:
                channel.close()

        close: Callable[[], None] = close_channels

        def stream(index: int) -> list[str]:
            rpc = stubs[index // STREAM_LIMIT % count].ChatCompletionStream(
                raw_request(index, True), metadata=RAW_METADATA, timeout=BURST_TIMEOUT
            )
            return [chunk.choices[0].delta.content for chunk in rpc]
    else:
        client = mc.ApexClient(api_key=BENCH_KEY, base_url=server.target, secure=False)
        close = client.close

        def stream(index: int) -> list[str]:
            messages = [{"role": "user", "content": prompt(index)}]
            chunks_iter = client.chat.completions.create(
                messages=messages, stream=True, timeout=BURST_TIMEOUT
            )
            return [chunk.choices[0].delta.content for chunk in chunks_iter]

    start = threading.Barrier(threads + 1)
    wrong: list[BaseException] = []

    def worker(index: int) -> None:
        start.wait()
        try:
            check_stream(index, stream(index), chunks, side)
        except (grpc.RpcError, mc.ApexError) as error:
            with lock:
                burst.failed(error)
        except BaseException as error:  # a wrong answer: raised again in the caller's thread
            wrong.append(error)
        else:
            with lock:
                burst.answered += 1

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in workers:
        thread.start()
    with RefusalCounter() as refusals:
        start.wait()
        started = burst.started = time.monotonic()
        cpu = time.process_time()
        for thread in workers:
            thread.join(BURST_TIMEOUT)
        burst.seconds = time.monotonic() - started
        burst.cpu_s = time.process_time() - cpu
    close()
    if wrong:
        raise wrong[0]
    burst.finish(side, True, refusals.refused, server)
    return burst


KINDS = ("async streams", "async unary calls", "sync streams")
SIDES = ("ours", "raw", READY)
CHUNKS = 4
TARGET_S = 1.3


def measure(count: int, threads: int, call_s: float, rounds: int) -> list[Row]:
    """Every burst kind, apex-grpc and raw alternating first, against one slow server."""
    bursts: dict[tuple[str, str], list[Burst]] = {}
    with slow_server(STREAM_LIMIT, call_s, CHUNKS) as server:
        for round_number in range(rounds):
            # Each side goes first in turn.
            sides = SIDES[round_number % 3 :] + SIDES[: round_number % 3]
            for kind in KINDS:
                for side in sides:
                    if kind == "sync streams":
                        burst = sync_burst(server, side, threads, CHUNKS)
                    else:
                        streaming = kind == "async streams"
                        burst = async_burst(server, side, streaming, count, CHUNKS)
                    bursts.setdefault((kind, side), []).append(burst)
            print(f"  bursts: round {round_number + 1}/{rounds}", file=sys.stderr)
    sizes = {"async streams": count, "async unary calls": count, "sync streams": threads}
    return [
        row(
            kind,
            sizes[kind],
            call_s,
            bursts[kind, "ours"],
            bursts[kind, "raw"],
            bursts[kind, READY],
        )
        for kind in KINDS
    ]


def row(
    kind: str, size: int, call_s: float, ours: list[Burst], raw: list[Burst], ready: list[Burst]
) -> Row:
    """One burst row: apex-grpc's answers and time against the target, raw beside it."""
    on = "on as many threads" if kind == "sync streams" else "through one"
    client = "ApexClient" if kind == "sync streams" else "AsyncApexClient"
    scenario = (
        f"{size:,} concurrent {call_s:g} s {kind} {on} cold {client}, "
        f"server limit {STREAM_LIMIT} streams/connection"
    )
    seconds = [b.seconds for b in ours]
    all_answered = all(b.answered == size for b in ours)
    limit = TARGET_S * call_s
    result = Row(
        scenario,
        f"{size:,}/{size:,} answered, <= {limit:g} s",
        raw=(
            f"one channel: {median_of(raw, 'answered'):,.0f}/{size:,} answered "
            f"({median_of(raw, 'refused'):,.0f} refused), {median_of(raw, 'seconds'):.1f} s"
        ),
        ours=(
            f"{min(b.answered for b in ours):,}/{size:,} answered, "
            f"{plural(median_of(ours, 'connections'), 'connection')}"
        ),
        result=spread(seconds, ".2f", " s"),
        met=all_answered and statistics.median(seconds) <= limit,
        data={
            "ours": [vars(b) for b in ours],
            "raw": [vars(b) for b in raw],
            READY: [vars(b) for b in ready],
        },
    )
    timeline, ready_timeline = (
        {
            moment: statistics.median((b.server[moment] - b.started) * 1000 for b in bursts)
            for moment in ("first_started", "last_started", "last_ended")
        }
        for bursts in (ours, ready)
    )
    retried = [b.retried for b in ours]
    errors = sum((b.errors for b in ours), Counter(lost_to_refusals=sum(b.refused for b in ours)))
    result.notes.append(
        f"apex-grpc: {sum(b.answered for b in ours):,} answers checked over {len(ours)} bursts, "
        f"refused attempts retried per burst {min(retried)}-{max(retried)}, "
        f"connections {min(b.connections for b in ours)}-{max(b.connections for b in ours)}"
        + (f", failed calls {dict(+errors)}" if +errors else "")
        + f"; raw stub: refused per burst {min(b.refused for b in raw)}-"
        f"{max(b.refused for b in raw)}, {plural(median_of(raw, 'connections'), 'connection')}. "
        f"apex-grpc's calls reached the server from +{timeline['first_started']:.0f} to "
        f"+{timeline['last_started']:.0f} ms after the burst started, the last answer left it "
        f"at +{timeline['last_ended']:.0f} ms (medians; the rest is the client reading answers); "
        f"client process CPU over the burst: apex-grpc {median_of(ours, 'cpu_s') * 1000:.0f} ms "
        f"for {median_of(ours, 'answered'):,.0f} answers, raw "
        f"{median_of(raw, 'cpu_s') * 1000:.0f} ms for {median_of(raw, 'answered'):,.0f}"
    )
    result.notes.append(
        f"the floor, which no cold client reaches: the raw stub on "
        f"{plural(median_of(ready, 'connections'), 'connection')} opened and connected before "
        f"the clock started, {STREAM_LIMIT} calls each: "
        f"{min(b.answered for b in ready):,}/{size:,} answered, "
        f"{spread([b.seconds for b in ready], '.2f', ' s').replace('**', '')}; its calls "
        f"reached the server from +{ready_timeline['first_started']:.0f} to "
        f"+{ready_timeline['last_started']:.0f} ms"
    )
    return result


def median_of(bursts: list[Burst], attribute: str) -> float:
    """The median of one attribute over bursts."""
    return statistics.median(float(getattr(b, attribute)) for b in bursts)
