"""A streaming consumer: print tokens as they arrive, and stop reading once there is enough.

Leaving the stream early (``break`` inside ``with``) closes it, which cancels
the RPC: the server stops generating instead of finishing an answer nobody
reads. The endpoint and key come from the environment (MACROCOSMOS_BASE_URL,
MACROCOSMOS_USE_HTTPS, APEX_API_KEY), as for every apex-grpc client.

    python examples/streaming_consumer.py "Tell me about Bittensor" --max-chars 300
    python examples/streaming_consumer.py "List three colours" --stop-at "3."
"""

from __future__ import annotations

import argparse
import sys
import time

import apex_grpc as mc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prompt", nargs="?", default="Write a short poem about the sea.")
    parser.add_argument("--max-chars", type=int, default=400, help="stop after this many")
    parser.add_argument("--stop-at", help="stop once this text has appeared")
    args = parser.parse_args()

    received = ""
    stopped_early = False
    first_token_s = None
    started = time.monotonic()
    with mc.ApexClient() as client:
        stream = client.chat.completions.create(
            messages=[{"role": "user", "content": args.prompt}],
            stream=True,
            first_chunk_timeout=60,  # give up if the model never starts...
            idle_timeout=30,  # ...or stalls mid-answer
        )
        with stream:
            for chunk in stream:
                text = chunk.choices[0].delta.content if chunk.choices else ""
                if first_token_s is None:
                    first_token_s = time.monotonic() - started
                print(text, end="", flush=True)
                received += text
                if len(received) >= args.max_chars or (args.stop_at and args.stop_at in received):
                    stopped_early = True
                    break  # leaving the with block cancels the RPC
    print()
    outcome = "stopped early, RPC cancelled" if stopped_early else "answer complete"
    first = f"{first_token_s * 1000:.0f} ms" if first_token_s is not None else "-"
    print(
        f"{stream.chunk_count} chunks, {len(received)} characters, first token after {first},"
        f" {time.monotonic() - started:.2f} s in all: {outcome}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
