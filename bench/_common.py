"""What every side of every benchmark shares: the prompt, the metadata, the answer checks.

Standard library only: the official SDK's probe imports it in a virtualenv
that has neither apex-grpc nor its generated stubs.
"""

from __future__ import annotations

PROMPT = "Benchmark prompt: tell me about the apex subnet. "
MESSAGES = [{"role": "user", "content": PROMPT}]
BENCH_KEY = "bench-key"
RAW_METADATA = (
    ("authorization", f"Bearer {BENCH_KEY}"),
    ("x-source", "bench"),
    ("x-client-id", "raw"),
    ("x-client-version", "0"),
)
SEARCH_QUERY = "python exceptions try except"


def expected_text(chunks: int, chunk_size: int) -> str:
    """What the echo engine answers to MESSAGES."""
    total = chunks * chunk_size
    return (PROMPT * (total // len(PROMPT) + 1))[:total]


class VerificationError(AssertionError):
    """An answer did not match what the server must send."""


def check(condition: bool, what: str) -> None:
    """Fail the benchmark loudly when an answer is wrong."""
    if not condition:
        raise VerificationError(what)
