"""Metrics that need a fresh process: import time and memory with many open streams."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

from ._common import BENCH_KEY


def import_time(runs: int) -> list[float]:
    """Wall seconds of `python -c "import apex_grpc"`, one fresh interpreter per run.

    Measured as installed: with bytecode cached (pip compiles a wheel's modules
    at install time), so PYTHONDONTWRITEBYTECODE is dropped for the first run
    to write it.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    times = []
    for i in range(runs + 1):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import apex_grpc"], check=True, env=env)
        if i:  # the first run warms the OS file cache
            times.append(time.perf_counter() - started)
    return times


_RSS_PROBE = """
import asyncio, json, sys, psutil
import apex_grpc as mc

async def main(target, key, count):
    process = psutil.Process()
    client = mc.AsyncApexClient(api_key=key, base_url=target, secure=False)
    await client.chat.completions.create(messages=[{"role": "user", "content": "warm"}])
    before = process.memory_info().rss
    hold = (("x-echo-chunks", "2"), ("x-echo-delay-ms", "60000"))
    streams = await asyncio.gather(*(
        client.chat.completions.create(
            messages=[{"role": "user", "content": f"stream {i}"}], stream=True, metadata=hold
        )
        for i in range(count)
    ))
    firsts = await asyncio.gather(*(s.__anext__() for s in streams))
    assert len(firsts) == count and all(f.choices[0].delta.content for f in firsts)
    during = process.memory_info().rss
    for s in streams:
        await s.close()
    await client.close()
    print(json.dumps({"before": before, "during": during, "open": count}))

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


def rss_with_open_streams(target: str, count: int) -> dict[str, float]:
    """Client process RSS (MB) before and with `count` streams open on one async client."""
    out = subprocess.run(
        [sys.executable, "-c", _RSS_PROBE, target, BENCH_KEY, str(count)],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    data = json.loads(out.stdout.strip().splitlines()[-1])
    return {
        "open_streams": data["open"],
        "rss_before_mb": data["before"] / 2**20,
        "rss_mb": data["during"] / 2**20,
    }


def summary(values: list[float]) -> tuple[float, float, float]:
    """(median, min, max)."""
    return statistics.median(values), min(values), max(values)
