"""Load through one async client: 1,000 concurrent streams x 100 chunks, nothing lost,
duplicated or reordered; threads, descriptors and memory return to baseline."""

from __future__ import annotations

import asyncio
import gc
import threading
from typing import Any

import psutil
import pytest

import apex_grpc as mc

from ._process import KEY
from .conftest import LONG

STREAMS = 1_000
CHUNKS = 100
SIZE = 16


def expected_chunks(prompt: str) -> list[str]:
    total = CHUNKS * SIZE
    text = (prompt * (total // len(prompt) + 1))[:total]
    return [text[i * SIZE : (i + 1) * SIZE] for i in range(CHUNKS)]


async def one_round(client: mc.AsyncApexClient, streams: int, round_number: int) -> dict[str, int]:
    """Run `streams` concurrent streams; count what was lost, duplicated or out of order."""

    async def consume(i: int) -> tuple[list[str], str]:
        prompt = f"round {round_number} stream {i:04d} | "
        stream = await client.chat.completions.create(
            messages=[{"role": "user", "content": prompt}], stream=True, timeout=120
        )
        return [chunk.choices[0].delta.content async for chunk in stream], prompt

    results = await asyncio.gather(*(consume(i) for i in range(streams)))
    counts = {"lost": 0, "duplicated": 0, "reordered": 0, "chunks": 0}
    for parts, prompt in results:
        want = expected_chunks(prompt)
        counts["chunks"] += len(parts)
        counts["lost"] += max(0, len(want) - len(parts))
        counts["duplicated"] += max(0, len(parts) - len(want))
        counts["reordered"] += sum(1 for got, exp in zip(parts, want, strict=False) if got != exp)
    return counts


def resources() -> tuple[int, int, float]:
    process = psutil.Process()
    return threading.active_count(), process.num_fds(), process.memory_info().rss / 2**20


@pytest.mark.timeout(300)
async def test_thousand_streams_through_one_async_client(server_process: Any) -> None:
    server = server_process("--echo-chunks", str(CHUNKS), "--echo-chunk-size", str(SIZE))
    rounds = 6 if LONG else 3
    warm = mc.AsyncApexClient(api_key=KEY, base_url=server.target, secure=False)
    await one_round(warm, 20, -1)  # grpc's own threads start on first use
    await warm.close()
    gc.collect()
    threads_before, fds_before, _ = resources()

    client = mc.AsyncApexClient(api_key=KEY, base_url=server.target, secure=False, timeout=120)
    rss: list[float] = []
    for round_number in range(rounds):
        counts = await one_round(client, STREAMS, round_number)
        assert counts == {"lost": 0, "duplicated": 0, "reordered": 0, "chunks": STREAMS * CHUNKS}
        gc.collect()
        rss.append(resources()[2])
    await client.close()
    await asyncio.sleep(0.2)
    gc.collect()

    threads_after, fds_after, _ = resources()
    assert threads_after <= threads_before
    assert fds_after <= fds_before
    # No leak: after the first round (allocator and grpc warm-up), memory stays flat.
    growth = rss[-1] - rss[1]
    assert growth < 15, f"RSS per round (MB): {[round(r) for r in rss]}"
