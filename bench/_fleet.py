"""The fleet section: replicas of `apex-grpc serve` behind one round_robin AsyncApexClient.

Three rows. Throughput against 1 and against 3 replicas when the server is the
bottleneck (each replica answers 2 calls at a time), interleaved round by round.
SIGTERM of one of 3 replicas under a closed loop of mixed streams and unary
calls: the replica drains, and no call may fail. SIGKILL of one under the same
load: every unary call and every stream must be answered by the survivors (a
stream cut after its first chunk resumes; with resuming off it would end in
StreamInterruptedError, counted as cut). Every answer is checked against what
the echo engine must send.
"""

from __future__ import annotations

import asyncio
import signal
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import apex_grpc as mc

from ._common import BENCH_KEY, MESSAGES, check, expected_text
from ._replicas import Replica, fleet, ipv4_target
from ._report import Row, plural, ratio_row, spread

CHUNK_SIZE = 16
SCALE_CHUNKS, SCALE_DELAY_S, SCALE_CONCURRENCY = 2, 0.05, 2
"""One call takes 50 ms and a replica answers 2 at a time: about 40 calls/s each."""
SCALE_FLAGS = (
    *("--echo-chunks", str(SCALE_CHUNKS), "--echo-chunk-size", str(CHUNK_SIZE)),
    *("--echo-delay", str(SCALE_DELAY_S), "--echo-concurrency", str(SCALE_CONCURRENCY)),
)
SCALE_CALLERS = 24
LOAD_CHUNKS, LOAD_DELAY_S = 8, 0.05
"""A call under load takes 0.35 s: SIGTERM or SIGKILL always finds calls in flight."""
LOAD_FLAGS = (
    *("--echo-chunks", str(LOAD_CHUNKS), "--echo-chunk-size", str(CHUNK_SIZE)),
    *("--echo-delay", str(LOAD_DELAY_S)),
)
LOAD_CALLERS = 32
CALL_TIMEOUT = 30.0
WARM_UP_S = 0.3
SCALE_TARGET = 2.7


@dataclass
class Load:
    """What a closed loop of calls did."""

    answered: Counter[str] = field(default_factory=Counter)
    """Answers checked, by kind ("unary", "stream")."""
    cut: int = 0
    """Streams cut after their first chunk (StreamInterruptedError)."""
    failed: Counter[str] = field(default_factory=Counter)
    """Other failures, by kind and error class."""
    calls: list[tuple[float, float]] = field(default_factory=list)
    """(started, ended) of every call, time.monotonic()."""
    attempts: Counter[int] = field(default_factory=Counter)
    """Unary calls answered, by their number of attempts (CallInfo.attempts)."""
    event_at: float = 0.0
    """time.monotonic() when the event (a signal) happened."""
    event_wall: float = 0.0
    """The same moment, time.time(), to compare with the replicas' logs."""

    @property
    def total(self) -> int:
        """Every call that ended."""
        return len(self.calls)

    def durations(self) -> str:
        """`M/S s`: the median and the slowest call's time."""
        seconds = [ended - started for started, ended in self.calls]
        return f"{statistics.median(seconds):.2f}/{max(seconds):.2f} s"


async def one_call(client: mc.AsyncApexClient, kind: str, chunks: int, load: Load) -> None:
    """One checked call of `kind` ("unary" or "stream") to replicas answering `chunks` chunks;
    its outcome is counted in `load`."""
    started = time.monotonic()
    text = expected_text(1, chunks * CHUNK_SIZE)
    try:
        if kind == "stream":
            stream = await client.chat.completions.create(
                messages=MESSAGES, stream=True, timeout=CALL_TIMEOUT
            )
            parts = [chunk.choices[0].delta.content async for chunk in stream]
            check("".join(parts) == text and len(parts) == chunks, f"fleet stream: {parts!r}")
        else:
            info = mc.CallInfo()
            response = await client.chat.completions.create(
                messages=MESSAGES, timeout=CALL_TIMEOUT, call_info=info
            )
            content = response.choices[0].message.content
            check(content == text, f"fleet unary call: {content!r}")
            load.attempts[info.attempts] += 1
        load.answered[kind] += 1
    except mc.StreamInterruptedError:
        load.cut += 1
    except mc.ApexError as error:
        load.failed[f"{kind} {type(error).__name__}"] += 1
    finally:
        load.calls.append((started, time.monotonic()))


async def closed_loop(
    client: mc.AsyncApexClient,
    callers: int,
    seconds: float,
    kinds: Sequence[str],
    chunks: int,
    event: tuple[float, Callable[[], None]] | None = None,
) -> Load:
    """`callers` coroutines each calling back to back for `seconds`, cycling through `kinds`,
    against replicas answering `chunks` chunks; `event` is (seconds in, what to do then)."""
    load = Load()
    deadline = time.monotonic() + seconds

    async def caller(number: int) -> None:
        while time.monotonic() < deadline:
            await one_call(client, kinds[number % len(kinds)], chunks, load)
            number += 1

    async def at_event(delay: float, action: Callable[[], None]) -> None:
        await asyncio.sleep(delay)
        load.event_at, load.event_wall = time.monotonic(), time.time()
        action()

    tasks = [caller(number) for number in range(callers)]
    if event is not None:
        tasks.append(at_event(*event))
    await asyncio.gather(*tasks)
    return load


def client_for(replicas: Sequence[Replica]) -> mc.AsyncApexClient:
    """A round_robin client over `replicas` (made inside the event loop that uses it)."""
    return mc.AsyncApexClient(
        api_key=BENCH_KEY,
        base_url=ipv4_target(replicas),
        secure=False,
        load_balancing="round_robin",
    )


async def throughput(
    replicas: Sequence[Replica], seconds: float
) -> tuple[float, list[int], list[int]]:
    """Unary calls/s of a closed loop against `replicas`, and each replica's calls in the
    timed window and in the cold warm-up before it."""
    client = client_for(replicas)
    try:
        # Warm up: connect to every replica before the clock starts.
        cold = time.time()
        await closed_loop(client, SCALE_CALLERS, WARM_UP_S, ("unary",), SCALE_CHUNKS)
        since = time.time()
        started = time.monotonic()
        load = await closed_loop(client, SCALE_CALLERS, seconds, ("unary",), SCALE_CHUNKS)
        until = since + seconds
    finally:
        await client.close()
    check(not load.failed, f"fleet throughput: failed calls {dict(load.failed)}")
    done = sum(1 for _, ended in load.calls if ended <= started + seconds)
    await asyncio.sleep(0.2)  # the replicas' log lines of the last calls
    return (
        done / seconds,
        [replica.started_between(since, until) for replica in replicas],
        [replica.started_between(cold, since) for replica in replicas],
    )


def scaling(rounds: int, seconds: float) -> Row:
    """1 replica against 3 replicas, alternating which goes first each round."""
    one: list[float] = []
    three: list[float] = []
    shares: list[list[int]] = []
    cold_shares: list[list[int]] = []
    with fleet(3, SCALE_FLAGS) as replicas:
        for round_number in range(rounds):
            sides = (1, 3) if round_number % 2 == 0 else (3, 1)
            for side in sides:
                rate, share, cold_share = asyncio.run(throughput(replicas[:side], seconds))
                (one if side == 1 else three).append(rate)
                if side == 3:
                    shares.append(share)
                    cold_shares.append(cold_share)
            print(f"  fleet scaling: round {round_number + 1}/{rounds}", file=sys.stderr)
    capacity = SCALE_CONCURRENCY / (SCALE_DELAY_S * (SCALE_CHUNKS - 1))
    row = ratio_row(
        f"unary calls/s against 3 replicas over 1, {SCALE_CALLERS} callers, "
        f"each replica answering {SCALE_CONCURRENCY} at a time (round_robin)",
        "calls/s",
        f">= {SCALE_TARGET}x",
        one,
        three,
        lambda ratio: ratio >= SCALE_TARGET,
        raw_label="1 replica: ",
    )
    row.ours = f"3 replicas: {statistics.median(three):,.0f} calls/s"
    row.data["shares"], row.data["cold_shares"] = shares, cold_shares
    row.notes.append(
        f"{plural(rounds, 'round')} of {seconds:g} s per side, 1 and 3 alternating first, "
        f"each a fresh client warmed up for {WARM_UP_S:g} s; a replica's ceiling is about "
        f"{capacity:.0f} calls/s "
        f"({SCALE_CONCURRENCY} at a time, {SCALE_DELAY_S * (SCALE_CHUNKS - 1) * 1000:.0f} ms "
        "a call). Calls per replica in each 3-replica window (its INFO log): "
        + "; ".join("/".join(str(n) for n in share) for share in shares)
        + f". In each fresh client's warm-up (cold: its first {SCALE_CALLERS} calls go to the "
        "replicas it has connected to by then, mostly the first): "
        + "; ".join("/".join(str(n) for n in share) for share in cold_shares)
    )
    return row


async def under_load(
    replicas: Sequence[Replica], seconds: float, at: float, number: signal.Signals
) -> Load:
    """A warmed-up round_robin client's mixed closed loop; `number` sent to replica 0 `at` s in."""
    client = client_for(replicas)
    try:
        await closed_loop(client, len(replicas) * 2, WARM_UP_S, ("unary",), LOAD_CHUNKS)
        return await closed_loop(
            client,
            LOAD_CALLERS,
            seconds,
            ("stream", "unary"),
            LOAD_CHUNKS,
            (at, lambda: replicas[0].signal(number)),
        )
    finally:
        await client.close()


def drain(rounds: int, seconds: float, at: float) -> Row:
    """SIGTERM of one of 3 replicas (default --drain-delay) under mixed load: no call fails."""
    loads: list[Load] = []
    late: list[int] = []
    in_flight: list[int] = []
    exits: list[int | None] = []
    for round_number in range(rounds):
        with fleet(3, LOAD_FLAGS) as replicas:
            load = asyncio.run(under_load(replicas, seconds, at, signal.SIGTERM))
            exits.append(replicas[0].wait(15))
            served = replicas[0].answered()
        loads.append(load)
        late.append(sum(1 for call in served if call.started >= load.event_wall))
        in_flight.append(sum(1 for call in served if call.started < load.event_wall <= call.ended))
        print(f"  fleet drain: round {round_number + 1}/{rounds}", file=sys.stderr)
    failed = [sum(load.failed.values()) + load.cut for load in loads]
    row = Row(
        f"SIGTERM of 1 of 3 replicas (default drain delay) under {LOAD_CALLERS} callers of "
        "streams and unary calls, one round_robin AsyncApexClient",
        "0 failed calls",
        ours=f"{min(sum(load.answered.values()) for load in loads):,} calls answered (fewest)",
        result=spread([float(n) for n in failed], ".0f", " failed"),
        met=not any(failed),
        data={"loads": [_summary(load) for load in loads], "exits": exits},
    )
    row.notes.append(
        f"{plural(rounds, 'round')} of {seconds:g} s, SIGTERM {at:g} s in. Per round: calls "
        f"{_each(load.total for load in loads)}; call times (median/slowest) "
        f"{_each(load.durations() for load in loads)}; calls in flight on the drained replica "
        f"at its SIGTERM and answered {_each(in_flight)}; calls it started after its SIGTERM "
        f"(before the client's health check moved away) {_each(late)}; its exit codes "
        f"{_each(exits)}"
        + "".join(
            f"; failed {dict(load.failed)}, cut {load.cut}"
            for load in loads
            if load.failed or load.cut
        )
    )
    return row


def kill(rounds: int, seconds: float, at: float) -> Row:
    """SIGKILL of one of 3 replicas under mixed load: what was answered, and how soon."""
    loads: list[Load] = []
    for round_number in range(rounds):
        with fleet(3, LOAD_FLAGS) as replicas:
            loads.append(asyncio.run(under_load(replicas, seconds, at, signal.SIGKILL)))
        print(f"  fleet kill: round {round_number + 1}/{rounds}", file=sys.stderr)
    recovery = [_recovery(load) for load in loads]
    failed = sum((load.failed for load in loads), Counter[str]())
    misses = sum(failed.values())
    streams = sum(load.answered["stream"] for load in loads)
    cut = sum(load.cut for load in loads)
    unary = sum(load.answered["unary"] for load in loads)
    unary_total = unary + sum(n for kind, n in failed.items() if kind.startswith("unary"))
    row = Row(
        f"SIGKILL of 1 of 3 replicas under {LOAD_CALLERS} callers of streams and unary calls: "
        "time until the survivors answered every call in flight",
        "every unary call and unstarted stream answered",
        ours=(
            f"unary {unary:,}/{unary_total:,} answered; streams {streams:,} answered, "
            f"{cut} cut after their first chunk (StreamInterruptedError)"
        ),
        result=spread(recovery, ".2f", " s"),
        met=misses == 0,
        data={"loads": [_summary(load) for load in loads], "recovery_s": recovery},
    )
    attempts = sum((load.attempts for load in loads), Counter[int]())
    retried = ", ".join(f"{n} in {a} attempts" for a, n in sorted(attempts.items()) if a > 1)
    row.notes.append(
        f"{plural(rounds, 'round')} of {seconds:g} s, SIGKILL {at:g} s in. Per round: calls "
        f"{_each(load.total for load in loads)}; call times (median/slowest) "
        f"{_each(load.durations() for load in loads)}. "
        f"Other failures (misses): {dict(failed) if misses else 'none'}. Unary calls answered "
        f"after a retry: {retried or 'none'}. A call takes "
        f"{LOAD_DELAY_S * (LOAD_CHUNKS - 1):.2f} s; the default RetryPolicy waits 0.375-0.5 s "
        "before the first retry and 0.75-1 s before the second, so a call cut by the kill and "
        "retried once ends about 0.7-0.9 s after it (the time row), twice about 1.6-2 s"
    )
    return row


def _recovery(load: Load) -> float:
    """Seconds from the event until the last call in flight at that moment ended."""
    ends = [ended for started, ended in load.calls if started <= load.event_at]
    return max(ends) - load.event_at


def _each(values: Iterable[object]) -> str:
    """`1, 2, 3`: one value per round."""
    return ", ".join(map(str, values))


def _summary(load: Load) -> dict[str, object]:
    """A round's counts, for the JSON file."""
    return {
        "answered": dict(load.answered),
        "cut": load.cut,
        "failed": dict(load.failed),
        "total": load.total,
    }


def measure(quick: bool) -> list[Row]:
    """The three fleet rows (quick: one short round each)."""
    if quick:
        return [scaling(1, 0.5), drain(1, 1.2, 0.4), kill(1, 1.2, 0.4)]
    return [scaling(5, 3.0), drain(3, 5.0, 1.0), kill(3, 4.0, 1.0)]
