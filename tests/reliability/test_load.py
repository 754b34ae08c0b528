"""Load through one async client: 1,000 concurrent streams x 100 chunks, nothing lost,
duplicated or reordered; threads and descriptors return to baseline, and memory does not
grow from round to round."""

from __future__ import annotations

import asyncio
import gc
import itertools
import statistics
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
TREND_ROUNDS = 10 if LONG else 5
"""Rounds whose RSS gives the trend, after one warm-up round (allocator and grpc caches)."""
MAX_GROWTH_MB_PER_ROUND = 1.5
"""Bound on the RSS trend. Measured here without a leak: -0.2 to +0.3 MB per round, with an
occasional one-off jump of ~8 MB (an allocator arena), which the median of pairwise slopes
ignores. Each stream of a round holds ~140 KB of chunks while it lives, so 1.5 MB per round
is 1 % of a round's streams kept alive, or 1.5 KB per stream kept forever; keeping every
stream costs ~140 MB per round."""


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


def trend(values: list[float]) -> float:
    """Growth per round: the median of the slopes between every two rounds (Theil-Sen).

    A least-squares slope over a handful of rounds is dragged by one jump in the last
    round; the median of pairwise slopes needs a rise over most of the rounds.
    """
    pairs = itertools.combinations(enumerate(values), 2)
    return statistics.median((b - a) / (j - i) for (i, a), (j, b) in pairs)


def test_trend_ignores_one_jump_but_not_a_steady_rise() -> None:
    assert trend([70.0, 69.2, 69.8, 68.3, 70.0, 78.1]) < 0.5
    assert trend([70.0, 71.6, 73.1, 74.4, 76.2, 77.5]) == pytest.approx(1.5, abs=0.05)


def resources() -> tuple[int, int, float]:
    process = psutil.Process()
    return threading.active_count(), process.num_fds(), process.memory_info().rss / 2**20


@pytest.mark.timeout(300)
async def test_thousand_streams_through_one_async_client(server_process: Any) -> None:
    server = server_process("--echo-chunks", str(CHUNKS), "--echo-chunk-size", str(SIZE))
    warm = mc.AsyncApexClient(api_key=KEY, base_url=server.target, secure=False)
    await one_round(warm, 20, -1)  # grpc's own threads start on first use
    await warm.close()
    gc.collect()
    threads_before, fds_before, _ = resources()

    client = mc.AsyncApexClient(api_key=KEY, base_url=server.target, secure=False, timeout=120)
    rss: list[float] = []
    for round_number in range(1 + TREND_ROUNDS):
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
    after_warm_up = rss[1:]
    assert trend(after_warm_up) < MAX_GROWTH_MB_PER_ROUND, (
        f"RSS per round (MB): {[round(r, 1) for r in rss]}"
    )
