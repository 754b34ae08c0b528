"""The resume section: streams cut by a killed replica go on elsewhere (issue #27).

Three rows. SIGKILL of one of 3 replicas under a closed loop of long streams:
streams completed over streams started (every answer checked against what the
echo engine must send). The added delay of a resumed stream: from the kill to
its next chunk, against the time to first chunk of the streams started fresh
in the same rounds. And what resuming costs when nothing fails: time to first
chunk and client CPU per chunk with ``resume`` on against off, interleaved.
"""

from __future__ import annotations

import asyncio
import random
import signal
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import apex_grpc as mc

from ._common import BENCH_KEY, MESSAGES, check, expected_text
from ._replicas import Replica, fleet, ipv4_target
from ._report import Row, plural, ratio_row, spread
from ._server import echo_server

CHUNK_SIZE = 16
LONG_CHUNKS, LONG_DELAY_S = 40, 0.05
"""An answer of about 2 s: a kill always finds streams mid-answer."""
FLAGS = (
    *("--echo-chunks", str(LONG_CHUNKS), "--echo-chunk-size", str(CHUNK_SIZE)),
    *("--echo-delay", str(LONG_DELAY_S)),
)
CALLERS = 30
DELAY_MARGIN_S = 0.050
COST_TARGET = 1.02


@dataclass
class Streams:
    """What a closed loop of streams did around one kill."""

    started: int = 0
    completed: int = 0
    failed: list[str] = field(default_factory=list)
    resumed_delays: list[float] = field(default_factory=list)
    """Seconds from the kill to the next chunk, of each stream that resumed."""
    fresh_first_chunks: list[float] = field(default_factory=list)
    """Seconds to the first chunk of each stream started after the kill."""
    resumes: int = 0


async def one_stream(client: mc.AsyncApexClient, streams: Streams, killed: list[float]) -> None:
    """One checked stream; its timings counted in `streams`."""
    streams.started += 1
    started = time.monotonic()
    stamps: list[float] = []
    try:
        stream = await client.chat.completions.create(messages=MESSAGES, stream=True, timeout=30)
        parts = []
        async for chunk in stream:
            stamps.append(time.monotonic())
            parts.append(chunk.choices[0].delta.content)
        text = "".join(parts)
        check(text == expected_text(LONG_CHUNKS, CHUNK_SIZE), f"resumed stream: {text!r}")
        streams.completed += 1
        resumes = stream._state.resumes  # the bench reads the count the log line gives
        streams.resumes += resumes
        if resumes and killed:
            after = [stamp for stamp in stamps if stamp > killed[0]]
            streams.resumed_delays.append(after[0] - killed[0])
        elif killed and started > killed[0]:
            streams.fresh_first_chunks.append(stamps[0] - started)
    except mc.ApexError as error:
        streams.failed.append(type(error).__name__)


async def kill_round(replicas: Sequence[Replica], seconds: float, at: float) -> Streams:
    """CALLERS streams back to back for `seconds`; SIGKILL of replica 0 `at` s in."""
    client = mc.AsyncApexClient(
        api_key=BENCH_KEY, base_url=ipv4_target(replicas), secure=False,
        load_balancing="round_robin",
    )  # fmt: skip
    streams = Streams()
    killed: list[float] = []
    try:
        for _ in range(6):  # connect to every replica first
            await client.chat.completions.create(
                messages=MESSAGES, metadata={"x-echo-delay-ms": "0"}
            )
        deadline = time.monotonic() + seconds

        async def caller() -> None:
            while time.monotonic() < deadline:
                await one_stream(client, streams, killed)

        async def kill() -> None:
            await asyncio.sleep(at)
            killed.append(time.monotonic())
            replicas[0].signal(signal.SIGKILL)

        await asyncio.gather(kill(), *(caller() for _ in range(CALLERS)))
    finally:
        await client.close()
    return streams


def kill_rows(rounds: int, seconds: float, at: float) -> list[Row]:
    """Completed/started streams, and the added delay of the resumed ones."""
    runs: list[Streams] = []
    for number in range(rounds):
        with fleet(3, FLAGS) as replicas:
            runs.append(asyncio.run(kill_round(replicas, seconds, at)))
        print(f"  resume kill: round {number + 1}/{rounds}", file=sys.stderr)
    shares = [run.completed / run.started for run in runs]
    complete = Row(
        f"SIGKILL of 1 of 3 replicas under {CALLERS} streams of {LONG_CHUNKS} chunks "
        f"({LONG_DELAY_S * (LONG_CHUNKS - 1):.1f} s), round_robin AsyncApexClient, resume on: "
        "streams completed / started",
        "100 %",
        ours=", ".join(f"{run.completed}/{run.started}" for run in runs),
        result=spread([100 * share for share in shares], ".1f", " %"),
        met=all(run.completed == run.started for run in runs),
        data={"completed": [r.completed for r in runs], "started": [r.started for r in runs]},
    )
    complete.notes.append(
        f"{plural(rounds, 'round')} of {seconds:g} s, SIGKILL {at:g} s in; every text checked "
        "against the uninterrupted echo answer. Resumes per round: "
        + ", ".join(str(run.resumes) for run in runs)
        + "".join(f"; failed {run.failed}" for run in runs if run.failed)
    )
    delays = [d for run in runs for d in run.resumed_delays]
    fresh = [f for run in runs for f in run.fresh_first_chunks]
    delay = Row(
        "added delay of a resumed stream (kill to its next chunk) against the time to first "
        "chunk of streams started fresh after the kill, same rounds",
        f"<= fresh + {DELAY_MARGIN_S * 1000:.0f} ms",
        raw=f"fresh first chunk {statistics.median(fresh) * 1000:.1f} ms" if fresh else "",
        ours=f"resumed {statistics.median(delays) * 1000:.1f} ms" if delays else "",
    )
    if delays and fresh:
        delay.result = spread([d * 1000 for d in delays], ".1f", " ms")
        delay.met = statistics.median(delays) <= statistics.median(fresh) + DELAY_MARGIN_S
        delay.notes.append(
            f"{len(delays)} resumed streams, {len(fresh)} fresh ones; medians; the range is "
            "the resumed streams'. The resume is at once (no backoff) on a connection to a "
            "replica still up; the continuation's first chunk needs no echo delay, as a fresh "
            "stream's first does not."
        )
    else:
        delay.result = "no resumed stream measured"
    delay.data = {"resumed_s": delays, "fresh_s": fresh}
    return [complete, delay]


ONE_CHUNK = {"x-echo-chunks": "1"}


def _first_chunk(client: mc.ApexClient, resume: bool) -> float:
    """Seconds to the first chunk of a one-chunk stream."""
    started = time.perf_counter()
    stream = client.chat.completions.create(
        messages=MESSAGES, stream=True, resume=resume, metadata=ONE_CHUNK
    )
    chunk = next(stream)
    took = time.perf_counter() - started
    check(bool(chunk.choices[0].delta.content), "resume cost: empty first chunk")
    stream.close()
    return took


def _cpu_per_chunk(client: mc.ApexClient, resume: bool, streams: int) -> float:
    """Client CPU seconds per chunk over `streams` 100-chunk streams."""
    chunks = 0
    cpu = time.process_time()
    for _ in range(streams):
        for chunk in client.chat.completions.create(messages=MESSAGES, stream=True, resume=resume):
            chunks += 1
            check(bool(chunk.choices[0].delta.content), "resume cost: empty chunk")
    return (time.process_time() - cpu) / chunks


def cost_rows(rounds: int, streams: int) -> list[Row]:
    """Resume on against off when nothing fails, one sync client. Time to first chunk: per
    sample both sides once, in a random order; CPU: rounds alternating which goes first."""
    ttft: dict[bool, list[float]] = {True: [], False: []}
    cpu: dict[bool, list[float]] = {True: [], False: []}
    shuffle = random.Random(27)
    with (
        echo_server(100, CHUNK_SIZE) as target,
        mc.ApexClient(api_key=BENCH_KEY, base_url=target, secure=False) as client,
    ):
        _cpu_per_chunk(client, True, 5)  # warm up
        for number in range(rounds):
            samples: dict[bool, list[float]] = {True: [], False: []}
            for _ in range(streams * 2):
                sides = [True, False]
                shuffle.shuffle(sides)
                for resume in sides:
                    samples[resume].append(_first_chunk(client, resume))
            for resume in (True, False):
                ttft[resume].append(statistics.median(samples[resume]) * 1e6)
            for resume in (True, False) if number % 2 == 0 else (False, True):
                cpu[resume].append(_cpu_per_chunk(client, resume, streams) * 1e6)
    meets = lambda ratio: ratio <= COST_TARGET  # noqa: E731
    first_row = ratio_row(
        "time to first chunk with resume on / off, nothing failing (sync, one-chunk streams)",
        "µs",
        f"<= {COST_TARGET}x",
        ttft[False],
        ttft[True],
        meets,
        raw_label="off: ",
    )
    first_row.notes.append(
        f"{plural(rounds, 'round')} of {streams * 2} samples; in each both sides once, in a "
        "random order; the row is the ratio of the rounds' medians"
    )
    cpu_row = ratio_row(
        "client CPU per chunk with resume on / off, nothing failing (sync, 100-chunk streams)",
        "µs",
        f"<= {COST_TARGET}x",
        cpu[False],
        cpu[True],
        meets,
        raw_label="off: ",
    )
    cpu_row.notes.append(
        f"{plural(rounds, 'round')} of {streams} streams per side, alternating which goes "
        "first; CPU is time.process_time() of the client process (grpc's threads too)"
    )
    return [first_row, cpu_row]


def measure(quick: bool) -> list[Row]:
    """The resume rows (quick: one short round each)."""
    if quick:
        return [*kill_rows(1, 2.5, 0.8), *cost_rows(2, 20)]
    return [*kill_rows(3, 5.0, 1.5), *cost_rows(10, 100)]
