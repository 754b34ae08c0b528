"""Retry decisions and the deadline budget, driven by a fake clock and fake randomness."""

from __future__ import annotations

import grpc
import pytest

import apex_grpc as mc
from apex_grpc._retry import Attempts, pushback_seconds

pytestmark = pytest.mark.oldest
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_default_is_two_retries_of_unavailable_only() -> None:
    policy = mc.RetryPolicy()
    assert policy.max_retries == 2
    attempts = Attempts(policy, None, rng=lambda: 0.0)
    assert attempts.retry_delay(grpc.StatusCode.INTERNAL, None) is None
    assert attempts.retry_delay(grpc.StatusCode.RESOURCE_EXHAUSTED, None) is None
    assert attempts.retry_delay(UNAVAILABLE, None) == 0.5
    assert attempts.retry_delay(UNAVAILABLE, None) == 1.0
    assert attempts.retry_delay(UNAVAILABLE, None) is None
    assert attempts.number == 3


@pytest.mark.parametrize("draw", [0.0, 0.3, 0.999])
def test_backoff_is_exponential_capped_and_jittered_within_bounds(draw: float) -> None:
    policy = mc.RetryPolicy(max_retries=10, initial_backoff=0.1, max_backoff=1.0, jitter=0.5)
    for n in range(10):
        nominal = min(0.1 * 2**n, 1.0)
        delay = policy.backoff(n, lambda: draw)
        assert nominal * 0.5 <= delay <= nominal
        assert delay == pytest.approx(nominal * (1 - 0.5 * draw))


def test_pushback_overrides_backoff_and_enables_resource_exhausted() -> None:
    attempts = Attempts(mc.RetryPolicy(), None, rng=lambda: 0.0)
    hint = [("grpc-retry-pushback-ms", "250")]
    assert attempts.retry_delay(grpc.StatusCode.RESOURCE_EXHAUSTED, hint) == 0.25
    assert attempts.retry_delay(UNAVAILABLE, [("grpc-retry-pushback-ms", b"40")]) == 0.04


@pytest.mark.parametrize("value", ["-1", "soon", ""])
def test_negative_or_malformed_pushback_stops_retrying(value: str) -> None:
    attempts = Attempts(mc.RetryPolicy(), None)
    assert attempts.retry_delay(UNAVAILABLE, [("grpc-retry-pushback-ms", value)]) is None


def test_pushback_parsing() -> None:
    assert pushback_seconds(None) is None
    assert pushback_seconds([("other", "1")]) is None
    assert pushback_seconds([("grpc-retry-pushback-ms", "1500")]) == 1.5


def test_deadline_covers_all_attempts() -> None:
    clock = Clock()
    attempts = Attempts(mc.RetryPolicy(max_retries=5), 2.0, clock=clock, rng=lambda: 0.0)
    assert attempts.remaining() == 2.0
    clock.now += 1.2
    assert attempts.remaining() == pytest.approx(0.8)
    assert attempts.retry_delay(UNAVAILABLE, None) == 0.5  # fits in the 0.8 s left
    clock.now += 0.5
    assert attempts.remaining() == pytest.approx(0.3)
    assert attempts.retry_delay(UNAVAILABLE, None) is None  # 1.0 s backoff would pass the deadline


def test_no_deadline_means_no_limit() -> None:
    assert Attempts(mc.RetryPolicy(), None).remaining() is None


def test_custom_retryable_codes() -> None:
    policy = mc.RetryPolicy(retryable_codes=frozenset({grpc.StatusCode.INTERNAL}))
    attempts = Attempts(policy, None, rng=lambda: 0.0)
    assert attempts.retry_delay(UNAVAILABLE, None) is None
    assert attempts.retry_delay(grpc.StatusCode.INTERNAL, None) == 0.5


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_retries": -1},
        {"initial_backoff": -0.1},
        {"initial_backoff": 2, "max_backoff": 1},
        {"multiplier": 0.5},
        {"jitter": 1.5},
    ],
)
def test_bad_policies_are_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(mc.ValidationError):
        mc.RetryPolicy(**kwargs)  # type: ignore[arg-type]
