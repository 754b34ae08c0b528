"""The overall deadline covers all attempts: a retry gets what is left of it, not a new one.

Checked from the server's side, where the testing kit's fake records the deadline
(grpc-timeout) each attempt arrived with. A client that gave every attempt the
full timeout would still end on time (its retry loop stops at the deadline), so
only the per-attempt deadline shows the difference.
"""

from __future__ import annotations

import pytest

import apex_grpc as mc
from apex_grpc.testing import FakeApex, error

from .conftest import chunks, echo, settle

pytestmark = pytest.mark.oldest
USER = [{"role": "user", "content": "hello"}]

TIMEOUT = 3.0
PUSHBACK = 1.0
"""The server's retry hint: a fixed wait between the attempts, instead of a jittered backoff."""
TOLERANCE = 0.35
"""Both deadlines are read on the server against the same monotonic clock, so what the
server's scheduling adds cancels out. What is left: grpc-timeout travels in 100 ms steps
between 1 and 10 s (rounded up, so each deadline is up to 0.1 s long), and the two attempts
may spend different times on the wire (under 10 ms on loopback, up to ~0.2 s seen on a
2-core machine at load 8). A retry given the full timeout is off by the whole 1 s pushback."""


@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
async def test_a_retry_gets_what_is_left_of_the_deadline(
    either_client: mc.ApexClient | mc.AsyncApexClient, apex_fake: FakeApex, stream: bool
) -> None:
    rpc = "ChatCompletionStream" if stream else "ChatCompletion"
    again = error("UNAVAILABLE", "try again", retry_pushback_ms=int(PUSHBACK * 1000))
    apex_fake.on(rpc).reply(again, chunks() if stream else echo)
    result = await settle(
        either_client.chat.completions.create(messages=USER, stream=stream, timeout=TIMEOUT)
    )
    if stream:  # a stream is retried before its first chunk, so reading it retries
        assert await settle(result.text()) == "c0 c1 c2 c3 c4 "
    first, second = apex_fake.calls_to(rpc)
    assert TIMEOUT / 2 < first.time_remaining <= TIMEOUT + 0.1  # the call's, not the default
    spent = second.received_at - first.received_at
    assert spent >= PUSHBACK
    assert second.time_remaining == pytest.approx(first.time_remaining - spent, abs=TOLERANCE)
