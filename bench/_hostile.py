"""Hostile and unlucky callers: what they cost the local server (``--only hostile``).

- **Unauthenticated large calls.** 48 concurrent 15 MB ChatCompletion calls with a wrong
  key, twice, against a server process: its RSS may rise at most 50 MB over idle. The
  key is checked from the metadata before any body is read, and HTTP/2 flow control
  keeps the rest of each body on the caller's side.
- **A burst past the engine's queue.** 200 concurrent streams against
  ``--echo-concurrency 2 --queue-size 16``: the 184 refused at once come back when the
  server's pushback says; the burst must finish within 1.5x the engine's own time: the
  same burst against a twin server whose queue holds all 200.
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time

import grpc
import grpc.aio
import psutil

import apex_grpc as mc
from apex_grpc_proto.apex.v1 import apex_pb2 as pb
from apex_grpc_proto.apex.v1 import apex_pb2_grpc as pb_grpc

from ._common import BENCH_KEY
from ._replicas import fleet
from ._report import Row, value_row

MiB = 1024 * 1024
CHUNKS, DELAY_S = 8, 0.01


def unauthenticated_rss(rounds: int, calls: int, size_mb: int) -> Row:
    """The server's RSS rise under concurrent large calls that carry a wrong key."""
    rises: list[float] = []
    codes: dict[str, int] = {}
    flags = ("--max-message-bytes", str(64 * MiB))
    with fleet(1, flags) as (replica,):
        assert replica.process is not None
        process = psutil.Process(replica.process.pid)
        time.sleep(0.5)
        idle = process.memory_info().rss
        request = pb.ChatCompletionRequest(
            messages=[pb.ChatMessage(role="user", content="x" * (size_mb * MiB))]
        )
        for _ in range(rounds):
            peak = [idle]
            done = threading.Event()

            def watch(peak: list[int] = peak, done: threading.Event = done) -> None:
                while not done.is_set():
                    peak[0] = max(peak[0], process.memory_info().rss)
                    time.sleep(0.005)

            watcher = threading.Thread(target=watch)
            watcher.start()
            try:
                asyncio.run(_flood(replica.target, request, calls, codes))
            finally:
                done.set()
                watcher.join()
            rises.append((peak[0] - idle) / MiB)
    row = value_row(
        f"server RSS under {calls} concurrent {size_mb} MB unauthenticated calls",
        "MB",
        "<= 50 MB over idle",
        rises,
        lambda rise: rise <= 50,
    )
    row.raw = f"idle {idle / MiB:.0f} MB"
    row.notes.append(
        f"{rounds} rounds; every call answered {', '.join(f'{n} {c}' for c, n in codes.items())}"
        " (the key is checked before the body is read; was +671 MB before that)"
    )
    return row


async def _flood(
    target: str, request: pb.ChatCompletionRequest, calls: int, codes: dict[str, int]
) -> None:
    options = [("grpc.max_send_message_length", 64 * MiB)]
    channels = [
        grpc.aio.insecure_channel(target, options=[*options, ("bench.connection", n)])
        for n in range(4)
    ]

    async def one(number: int) -> None:
        stub = pb_grpc.ApexServiceStub(channels[number % len(channels)])
        metadata = (("authorization", "Bearer not-the-key"),)
        try:
            await stub.ChatCompletion(request, metadata=metadata, timeout=60)
            code = "OK"
        except grpc.RpcError as error:
            code = error.code().name
        codes[code] = codes.get(code, 0) + 1

    try:
        await asyncio.gather(*(one(number) for number in range(calls)))
    finally:
        for channel in channels:
            await channel.close()


def pushback_burst(rounds: int, streams: int) -> Row:
    """A burst past a 16-place queue, over the same burst with room in the queue for all.

    Both run in the same round against twin servers (alternating which goes first), so
    the baseline is the engine's own time on this machine, load included.
    """
    engine = (
        *("--echo-concurrency", "2"),
        *("--echo-chunks", str(CHUNKS), "--echo-delay", str(DELAY_S)),
    )
    nominal_s = streams * (CHUNKS - 1) * DELAY_S / 2
    pushed: list[float] = []
    queued: list[float] = []
    failures: list[int] = []
    with (
        fleet(1, (*engine, "--queue-size", "16")) as (small,),
        fleet(1, (*engine, "--queue-size", str(streams))) as (roomy,),
    ):
        for number in range(rounds):
            order = [(small, pushed), (roomy, queued)]
            for replica, times in order if number % 2 == 0 else reversed(order):
                started = time.monotonic()
                failed = asyncio.run(_burst(replica.target, streams))
                times.append(time.monotonic() - started)
                if replica is small:
                    failures.append(failed)
    ratios = [p / q for p, q in zip(pushed, queued, strict=True)]
    row = value_row(
        f"{streams} concurrent streams on --echo-concurrency 2, 16 queue places",
        "x",
        "<= 1.5x the engine's own time, every stream answered",
        ratios,
        lambda ratio: ratio <= 1.5 and not any(failures),
    )
    row.result = f"**{statistics.median(ratios):.2f}x** ({min(ratios):.2f}-{max(ratios):.2f})"
    row.raw = f"{statistics.median(queued):.1f} s with room for all"
    row.ours = f"{statistics.median(pushed):.1f} s"
    row.notes.append(
        f"{rounds} rounds alternating; the engine's own time is the same burst against a twin "
        f"server whose queue holds every stream (nominal: {nominal_s:.1f} s of chunk delays); "
        f"failed streams per round: {failures}; the refused streams came back when the queue's "
        "pushback said (was 41 s for 7.7 s of engine work)"
    )
    return row


async def _burst(target: str, streams: int) -> int:
    failed = 0
    async with mc.AsyncApexClient(api_key=BENCH_KEY, base_url=target, secure=False) as client:

        async def one() -> None:
            nonlocal failed
            try:
                stream = await client.chat.completions.create(
                    messages=[{"role": "user", "content": "hi"}], stream=True
                )
                await stream.text()
            except mc.ApexError:
                failed += 1

        await asyncio.gather(*(one() for _ in range(streams)))
    return failed


def measure(quick: bool) -> list[Row]:
    """The two rows (quick: one small round each)."""
    if quick:
        return [unauthenticated_rss(1, 8, 2), pushback_burst(1, 40)]
    return [unauthenticated_rss(3, 48, 15), pushback_burst(3, 200)]
