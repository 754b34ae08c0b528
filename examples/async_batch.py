"""A concurrent batch with the async client: many completions at once, bounded, with throughput.

One AsyncApexClient (one channel) serves every request; a semaphore caps how
many are in flight, so a big batch neither floods the server nor the event
loop. Failures are counted, not fatal. The endpoint and key come from the
environment (MACROCOSMOS_BASE_URL, MACROCOSMOS_USE_HTTPS, APEX_API_KEY).

    python examples/async_batch.py --count 50 --concurrency 10
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time

import apex_grpc as mc


async def complete(
    client: mc.AsyncApexClient, semaphore: asyncio.Semaphore, question: str
) -> tuple[float, mc.ChatCompletionResponse]:
    async with semaphore:
        started = time.perf_counter()
        response = await client.chat.completions.create(
            messages=[{"role": "user", "content": question}],
            sampling_parameters={"max_new_tokens": 64},
        )
        return time.perf_counter() - started, response


async def run(count: int, concurrency: int, topic: str) -> int:
    questions = [f"In one sentence, fact #{n} about {topic}." for n in range(1, count + 1)]
    semaphore = asyncio.Semaphore(concurrency)
    async with mc.AsyncApexClient() as client:
        started = time.perf_counter()
        outcomes = await asyncio.gather(
            *(complete(client, semaphore, q) for q in questions), return_exceptions=True
        )
        elapsed = time.perf_counter() - started

    latencies = [o[0] for o in outcomes if not isinstance(o, BaseException)]
    tokens = sum(o[1].usage.completion_tokens for o in outcomes if not isinstance(o, BaseException))
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    print(
        f"{len(latencies)}/{count} completions in {elapsed:.2f} s"
        f" ({len(latencies) / elapsed:.1f}/s, {tokens / elapsed:.0f} tokens/s)"
        f" with {concurrency} in flight"
    )
    if latencies:
        ordered = sorted(latencies)
        p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
        print(
            f"latency: median {statistics.median(ordered) * 1000:.1f} ms,"
            f" p95 {p95 * 1000:.1f} ms, max {ordered[-1] * 1000:.1f} ms"
        )
    for error in errors[:5]:
        print(f"failed: {type(error).__name__}: {error}", file=sys.stderr)
    return 1 if errors else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=50, help="completions (%(default)s)")
    parser.add_argument("--concurrency", type=int, default=10, help="in flight (%(default)s)")
    parser.add_argument("--topic", default="Bittensor")
    args = parser.parse_args()
    return asyncio.run(run(args.count, args.concurrency, args.topic))


if __name__ == "__main__":
    sys.exit(main())
