"""Retry decisions and the deadline budget, driven by a fake clock and fake randomness."""

from __future__ import annotations

import grpc
import pytest

import apex_grpc as mc
from apex_grpc._retry import Attempts, final_error, pushback_seconds

from .test_state_machines import REFUSED, FakeRpcError

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


BACKOFFS = "backoffs must satisfy 0 <= initial_backoff <= max_backoff"


@pytest.mark.parametrize(
    ("kwargs", "argument", "problem"),
    [
        ({"max_retries": True}, "max_retries", "must be an integer, got True"),
        ({"max_retries": 1.5}, "max_retries", "must be an integer, got 1.5"),
        ({"max_retries": -1}, "max_retries", "must be >= 0, got -1"),
        ({"initial_backoff": -0.1}, "retry", BACKOFFS),
        ({"initial_backoff": 2, "max_backoff": 1}, "retry", BACKOFFS),
        ({"multiplier": 0.99}, "retry.multiplier", "must be >= 1, got 0.99"),
        ({"jitter": 1.01}, "retry.jitter", "must be in [0, 1], got 1.01"),
        ({"jitter": -0.01}, "retry.jitter", "must be in [0, 1], got -0.01"),
    ],
)
def test_a_bad_policy_names_the_setting_and_the_problem(
    kwargs: dict[str, object], argument: str, problem: str
) -> None:
    with pytest.raises(mc.ValidationError) as caught:
        mc.RetryPolicy(**kwargs)  # type: ignore[arg-type]
    assert caught.value.argument == argument and caught.value.problem == problem


def test_the_edges_of_a_valid_policy_are_accepted() -> None:
    edge = mc.RetryPolicy(initial_backoff=0.0, max_backoff=0.0, multiplier=1.0, jitter=1.0)
    assert edge.backoff(5, lambda: 0.5) == 0.0
    same = mc.RetryPolicy(initial_backoff=1.0, max_backoff=1.0, multiplier=1.0, jitter=0.0)
    assert [same.backoff(n) for n in range(3)] == [1.0, 1.0, 1.0]


def test_with_max_retries_changes_only_the_count() -> None:
    policy = mc.RetryPolicy(initial_backoff=0.2, jitter=0.0)
    assert policy.with_max_retries(2) == policy
    changed = policy.with_max_retries(5)
    assert changed.max_retries == 5 and changed.initial_backoff == 0.2 and policy.max_retries == 2


def test_refused_attempts_back_off_by_doubling_milliseconds_up_to_a_cap() -> None:
    attempts = Attempts(mc.RetryPolicy(max_retries=0), None)
    delays = [attempts.retry_delay(UNAVAILABLE, None, REFUSED) for _ in range(12)]
    # 5 ms first: the other refusals of a burst arrive meanwhile and teach the pool the limit.
    assert delays[:5] == pytest.approx([0.005, 0.01, 0.02, 0.04, 0.08])
    assert delays[-1] == 0.25 and max(delays) == 0.25  # capped, however many refusals
    assert attempts.refused == 12 and attempts.number == 13 and attempts.retried == 0


def test_only_64_refusals_are_free_then_they_spend_retries() -> None:
    attempts = Attempts(mc.RetryPolicy(max_retries=1), None, rng=lambda: 0.0)
    for _ in range(64):
        assert attempts.retry_delay(UNAVAILABLE, None, REFUSED) is not None
    assert attempts.retry_delay(UNAVAILABLE, None, REFUSED) == 0.5  # the one retry left
    assert attempts.retry_delay(UNAVAILABLE, None, REFUSED) is None
    assert (attempts.refused, attempts.retried) == (64, 1)


def test_a_refused_attempt_is_not_retried_when_its_backoff_would_pass_the_deadline() -> None:
    clock = Clock()
    attempts = Attempts(mc.RetryPolicy(), 0.0075, clock=clock)
    assert attempts.retry_delay(UNAVAILABLE, None, REFUSED) == 0.005  # 5 ms of 7.5 ms left
    assert attempts.retry_delay(UNAVAILABLE, None, REFUSED) is None  # 10 ms > 7.5 ms left


def test_a_zero_pushback_retries_at_once() -> None:
    attempts = Attempts(mc.RetryPolicy(), None)
    hint = [("grpc-retry-pushback-ms", "0")]
    assert attempts.retry_delay(grpc.StatusCode.RESOURCE_EXHAUSTED, hint) == 0.0
    assert attempts.retried == 1


def test_a_malformed_pushback_reads_as_stop() -> None:
    assert pushback_seconds([("grpc-retry-pushback-ms", "soon")]) < 0
    assert pushback_seconds([("grpc-retry-pushback-ms", b" 250 ")]) == 0.25


def test_a_refused_call_out_of_time_ends_in_deadline_exceeded_saying_how_often() -> None:
    clock = Clock()
    attempts = Attempts(mc.RetryPolicy(), 1.0, clock=clock)
    for _ in range(3):
        attempts.retry_delay(UNAVAILABLE, None, REFUSED)
    clock.now += 0.9  # 0.1 s left: less than a refusal's longest backoff
    refusal = FakeRpcError(UNAVAILABLE, REFUSED, (("x-request-id", "r-7"),))
    error = final_error(refusal, "/apex.v1.S/M", attempts)
    assert isinstance(error, mc.DeadlineExceededError) and error.request_id == "r-7"
    assert error.code is grpc.StatusCode.DEADLINE_EXCEEDED and error.method == "/apex.v1.S/M"
    assert error.attempts == 4 and "refused the call 4 times" in error.details
    assert "(no stream free on its connections) until the deadline passed" in str(error)


def test_a_refused_call_with_time_left_or_no_deadline_stays_unavailable() -> None:
    clock = Clock()
    for timeout in (None, 10.0):
        attempts = Attempts(mc.RetryPolicy(), timeout, clock=clock)
        error = final_error(FakeRpcError(UNAVAILABLE, REFUSED), "/apex.v1.S/M", attempts)
        assert type(error) is mc.UnavailableError and error.method == "/apex.v1.S/M"
        assert error.details == REFUSED


# Pushback is bounded (issue #19 item 6): never past the deadline, never past max_pushback.

RESOURCE_EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED


def _hint(value: str | bytes) -> list[tuple[str, str | bytes]]:
    return [("grpc-retry-pushback-ms", value)]


def test_the_default_policy_as_a_value() -> None:
    # Pinned as values, not through behaviour only: retrying DEADLINE_EXCEEDED (the server's
    # max_response_time, an upstream timeout) would make users wait and pay 3 times.
    policy = mc.RetryPolicy()
    assert policy.retryable_codes == frozenset({UNAVAILABLE})
    assert policy.retry_on_pushback_codes == frozenset({RESOURCE_EXHAUSTED})
    assert policy.max_pushback == 60.0
    assert (policy.max_retries, policy.initial_backoff, policy.max_backoff) == (2, 0.5, 8.0)
    assert (policy.multiplier, policy.jitter) == (2.0, 0.25)


def test_deadline_exceeded_is_never_retried_by_default() -> None:
    attempts = Attempts(mc.RetryPolicy(), None)
    assert attempts.retry_delay(grpc.StatusCode.DEADLINE_EXCEEDED, None) is None
    assert attempts.retry_delay(grpc.StatusCode.DEADLINE_EXCEEDED, _hint("10")) is None


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("1000000000", 1_000_000.0),
        (str(10**14), 1e11),
        (str(10**30), 1e15),  # capped at 10**18 ms: read, never an OverflowError
        ("9" * 400, 1e15),  # past a float's range
        ("-5", -0.005),
        ("1e5", -1.0),  # not an integer: "stop"
        ("\u0661\u0662", 0.012),  # int() reads other scripts' digits; still a number
        (b"\xff\xfe", -1.0),  # undecodable bytes
        ("9" * 5000, -1.0),  # past Python's int-from-text limit (ValueError)
    ],
)
def test_any_pushback_value_reads_as_a_number_never_an_exception(
    value: str | bytes, seconds: float
) -> None:
    assert pushback_seconds(_hint(value)) == seconds


def test_a_pushback_past_the_deadline_fails_at_once_saying_so() -> None:
    clock = Clock()
    attempts = Attempts(mc.RetryPolicy(), 5.0, clock=clock)
    assert attempts.retry_delay(RESOURCE_EXHAUSTED, _hint("4000")) == 4.0  # fits
    clock.now += 2.0  # 3 s left
    assert attempts.retry_delay(RESOURCE_EXHAUSTED, _hint("3000")) is None
    assert attempts.refusal == (
        "the server asked to retry in 3000 ms, past the call's deadline; not retried"
    )
    error = final_error(
        FakeRpcError(RESOURCE_EXHAUSTED, "busy", tuple(_hint("3000"))), "/m/M", attempts
    )
    assert type(error) is mc.RateLimitError
    assert error.hint == attempts.refusal and error.hint in str(error)


@pytest.mark.parametrize("value", ["1000000000", str(10**14), str(10**30)])
def test_without_a_deadline_a_pushback_past_max_pushback_fails_at_once(value: str) -> None:
    attempts = Attempts(mc.RetryPolicy(), None)
    assert attempts.retry_delay(UNAVAILABLE, _hint(value)) is None
    assert attempts.refusal is not None
    assert "past RetryPolicy.max_pushback (60 s)" in attempts.refusal


def test_without_a_deadline_max_pushback_itself_is_waited_for() -> None:
    assert Attempts(mc.RetryPolicy(), None).retry_delay(UNAVAILABLE, _hint("60000")) == 60.0
    assert mc.RetryPolicy(max_pushback=86_400).max_pushback == 86_400  # the largest
    short = mc.RetryPolicy(max_pushback=0.5)
    assert Attempts(short, None).retry_delay(UNAVAILABLE, _hint("501")) is None
    assert Attempts(short, None).retry_delay(UNAVAILABLE, _hint("500")) == 0.5


@pytest.mark.parametrize("bad", [-1.0, 86_400.5, 1e20, float("inf"), float("nan")])
def test_max_pushback_must_be_a_finite_number_of_seconds(bad: float) -> None:
    with pytest.raises(mc.ValidationError, match=r"retry\.max_pushback"):
        mc.RetryPolicy(max_pushback=bad)


def test_a_backoff_past_the_deadline_carries_no_pushback_hint() -> None:
    clock = Clock()
    attempts = Attempts(mc.RetryPolicy(), 0.1, clock=clock, rng=lambda: 0.0)
    assert attempts.retry_delay(UNAVAILABLE, None) is None  # 0.5 s backoff > 0.1 s left
    assert attempts.refusal is None


# A message over grpc's size limit (issue #19 item 3) is its own error, never retried.

TOO_LARGE = [
    "Sent message larger than max (9437300 vs. 4194304)",
    "Received message larger than max (18874502 vs. 4194304)",
]


@pytest.mark.parametrize("details", TOO_LARGE)
def test_a_message_over_the_limit_is_not_retried_even_with_pushback(details: str) -> None:
    attempts = Attempts(mc.RetryPolicy(), None)
    assert attempts.retry_delay(RESOURCE_EXHAUSTED, _hint("10"), details) is None
    error = final_error(FakeRpcError(RESOURCE_EXHAUSTED, details), "/m/M", attempts)
    assert type(error) is mc.MessageTooLargeError
    assert not isinstance(error, mc.RateLimitError)
    assert error.code is RESOURCE_EXHAUSTED and error.hint


def test_a_rate_limit_is_still_a_rate_limit_error() -> None:
    error = final_error(
        FakeRpcError(RESOURCE_EXHAUSTED, "quota exceeded"), "/m/M", Attempts(mc.RetryPolicy(), 1)
    )
    assert type(error) is mc.RateLimitError
    assert mc.error_class_for(RESOURCE_EXHAUSTED) is mc.RateLimitError
    assert mc.error_class_for(RESOURCE_EXHAUSTED, TOO_LARGE[1]) is mc.MessageTooLargeError
