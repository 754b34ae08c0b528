"""Time to first chunk: apex-grpc against the raw stub with its own and with grpc's default options.

A sync stream's first chunk arrives sooner on a channel with grpcio's
SingleThreadedUnaryStream option (the stream is read on the caller's thread),
which apex-grpc sets. Comparing it only with a raw stub on default options
would credit apex-grpc with a channel option anyone can set, so the raw stub
runs here on several channels: grpc's defaults, exactly apex-grpc's options,
and grpc's defaults plus one group of apex-grpc's options at a time, to show
which option makes the difference.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import grpc.experimental

from apex_grpc_proto.apex.v1 import apex_pb2_grpc as pbg

from ._common import MESSAGES, RAW_METADATA, check
from ._raw import raw_chat_request
from ._report import Row
from ._scenarios import Context, ours_on_the_wire

OURS = "apex-grpc"
DEFAULTS = "raw, grpc's default options"
SAME = "raw, apex-grpc's channel options"
WARM_UP = 5
OPTION_GROUPS = {
    "SingleThreadedUnaryStream": (grpc.experimental.ChannelOptions.SingleThreadedUnaryStream,),
    "keepalive": (
        "grpc.keepalive_time_ms",
        "grpc.keepalive_timeout_ms",
        "grpc.keepalive_permit_without_calls",
        "grpc.http2.max_pings_without_data",
    ),
    "message sizes": ("grpc.max_send_message_length", "grpc.max_receive_message_length"),
    "user agent": ("grpc.primary_user_agent",),
}
"""apex-grpc's sync channel options, grouped by what they are for."""


def channel_variants(target: str) -> dict[str, list[tuple[str, Any]]]:
    """The raw stub's channel options per variant: defaults, apex-grpc's, and one group each."""
    ours, _ = ours_on_the_wire(target)
    variants: dict[str, list[tuple[str, Any]]] = {DEFAULTS: [], SAME: ours}
    grouped: set[str] = set()
    for group, names in OPTION_GROUPS.items():
        variants[f"raw, defaults + {group}"] = [o for o in ours if o[0] in names]
        grouped.update(names)
    others = [o for o in ours if o[0] not in grouped]
    if others:  # an option apex-grpc gained since the groups were written
        variants["raw, defaults + other options"] = others
    return variants


def first_chunk_latencies(ctx: Context, samples: int) -> dict[str, list[float]]:
    """Seconds from starting a one-chunk stream to holding its chunk, per side, interleaved.

    Each sample runs every side once, in a shuffled order (a fixed order
    would give each side the same predecessor, and a predecessor's leftover
    work would always land on the same side); the first WARM_UP samples are
    dropped.
    """
    one_chunk = (("x-echo-chunks", "1"),)
    raw_metadata = RAW_METADATA + one_chunk
    channels = {
        name: grpc.insecure_channel(ctx.target, options=options)
        for name, options in channel_variants(ctx.target).items()
    }
    openers: dict[str, Callable[[], Iterator[Any]]] = {
        OURS: lambda: ctx.client.chat.completions.create(
            messages=MESSAGES, stream=True, metadata=one_chunk
        )
    }
    for name, channel in channels.items():
        stub = pbg.ApexServiceStub(channel)
        openers[name] = lambda stub=stub: stub.ChatCompletionStream(
            raw_chat_request(True), metadata=raw_metadata, timeout=600
        )
    times: dict[str, list[float]] = {side: [] for side in openers}
    order = list(openers)
    shuffle = random.Random(12).shuffle
    try:
        for index in range(samples + WARM_UP):
            shuffle(order)
            for side in order:
                elapsed = time_to_first_chunk(openers[side], ctx.text[: ctx.chunk_size], side)
                if index >= WARM_UP:
                    times[side].append(elapsed)
    finally:
        for channel in channels.values():
            channel.close()
    return times


def time_to_first_chunk(
    open_stream: Callable[[], Iterator[Any]], expected: str, side: str
) -> float:
    """Seconds until a new stream's first chunk; the stream is read to its end and checked.

    The stream is released when this returns, after the clock stopped, so
    its clean-up is never timed as part of the next sample.
    """
    started = time.perf_counter()
    chunks = open_stream()
    first = next(chunks)
    elapsed = time.perf_counter() - started
    rest = list(chunks)
    check(first.choices[0].delta.content == expected and not rest, f"first chunk, {side}")
    return elapsed


def rows(times: dict[str, list[float]]) -> list[Row]:
    """The two time-to-first-chunk rows (against each raw baseline) and the option toggles."""
    medians = {side: statistics.median(values) * 1e6 for side, values in times.items()}
    made = []
    for baseline, label in ((SAME, "apex-grpc's channel options"), (DEFAULTS, "grpc's defaults")):
        added = [
            (o - r) * 1e6 for r, o in zip(sorted(times[baseline]), sorted(times[OURS]), strict=True)
        ]
        row = Row(
            f"time to first chunk, added over raw with {label}",
            "< 50 µs median",
            raw=f"{medians[baseline]:,.0f} µs",
            ours=f"{medians[OURS]:,.0f} µs",
            data={"raw": times[baseline], "ours": times[OURS]},
        )
        value = medians[OURS] - medians[baseline]
        row.result = f"**{value:+.0f} µs** ({min(added):+.0f} to {max(added):+.0f})"
        row.met = value < 50
        made.append(row)
    toggles = {
        side: medians[side] - medians[DEFAULTS]
        for side in times
        if side.startswith("raw, defaults +")
    }
    decisive = min(toggles, key=lambda side: toggles[side])
    gap = medians[SAME] - medians[DEFAULTS]
    made[0].notes.append(
        "raw medians by channel options, against grpc's defaults "
        f"({medians[DEFAULTS]:,.0f} µs): "
        + "; ".join(
            f"{side.removeprefix('raw, defaults + ')} alone {delta:+.0f} µs"
            for side, delta in toggles.items()
        )
        + f"; all of apex-grpc's options {gap:+.0f} µs. "
        f"The option that makes the difference: {decisive.removeprefix('raw, defaults + ')} "
        f"({toggles[decisive]:+.0f} µs of the {gap:+.0f} µs); "
        f"{len(times[OURS])} interleaved samples per side"
    )
    return made
