"""A service calling several Apex backends through client-side load balancing.

One ApexClient, one channel, several backends: the ``ipv4:`` target lists
them and ``load_balancing="round_robin"`` spreads calls across every backend
that is up (a backend that goes down is skipped; calls that found no backend
are retried). The sync client is thread-safe, so a pool of worker threads
shares it, as request handlers of a web service would.

    python examples/load_balanced_service.py --backends 10.0.0.5:50051,10.0.0.6:50051

Backends also come from $APEX_BACKENDS; the key and TLS setting from the
environment (APEX_API_KEY, MACROCOSMOS_USE_HTTPS), as for every client.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import apex_grpc as mc


def handle(client: mc.ApexClient, number: int) -> str:
    """One request of the service: ask, and describe the answer."""
    started = time.perf_counter()
    response = client.chat.completions.create(
        messages=[{"role": "user", "content": f"Say hello to visitor {number}."}],
        sampling_parameters={"max_new_tokens": 32},
    )
    answer = response.choices[0].message.content
    elapsed_ms = (time.perf_counter() - started) * 1000
    return f"request {number}: {len(answer)} characters from {response.model}, {elapsed_ms:.1f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backends",
        default=os.environ.get("APEX_BACKENDS", "127.0.0.1:50051,127.0.0.1:50052"),
        help="comma-separated host:port list (default: $APEX_BACKENDS)",
    )
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()

    target = "ipv4:" + ",".join(b.strip() for b in args.backends.split(",") if b.strip())
    with mc.ApexClient(
        base_url=target, load_balancing="round_robin", max_retries=3, timeout=60
    ) as client:
        client.wait_until_ready(timeout=10)
        started = time.perf_counter()
        with ThreadPoolExecutor(args.workers) as pool:
            for line in pool.map(lambda n: handle(client, n), range(1, args.requests + 1)):
                print(line)
        elapsed = time.perf_counter() - started
    print(f"{args.requests} requests through {target} (round_robin) in {elapsed:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
