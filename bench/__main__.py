"""Run the benchmarks: ``python -m bench`` (full, ~3-4 min) or ``python -m bench --quick``.

Every ratio compares apex-grpc with the raw generated grpcio stub measured in
the same run, interleaved round by round (alternating which side goes first)
against the same echo-engine server in its own process.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from google.protobuf import __version__ as protobuf_version

import apex_grpc

from . import _official, _process_metrics, _scenarios
from ._server import echo_server

ROOT = Path(__file__).resolve().parent
CHUNKS, CHUNK_SIZE = 100, 16


@dataclass
class Row:
    """One line of the results table."""

    scenario: str
    unit: str
    target: str
    raw: list[float] = field(default_factory=list)
    ours: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)
    value: float | None = None
    spread: tuple[float, float] | None = None
    met: bool | None = None
    note: str = ""


def ratio_row(row: Row, minimum: float) -> None:
    """Fill a ratio row's summary and verdict."""
    median = statistics.median(row.ratios)
    row.value = median
    row.spread = (min(row.ratios), max(row.ratios))
    row.met = median >= minimum


def measure(args: argparse.Namespace) -> tuple[list[Row], dict[str, object]]:
    rows = {
        "sync unary": Row("sync unary chat.completions.create", "calls/s", ">= 0.95x raw"),
        "sync stream": Row("sync streaming, 100 chunks/stream", "chunks/s", ">= 1.0x raw"),
        "async unary": Row("async unary, 64 in flight, one client", "calls/s", ">= 0.9x raw"),
        "async stream": Row("async streaming, 64 concurrent streams", "chunks/s", ">= 0.9x raw"),
        "web search": Row("web_search.search unary", "calls/s", ">= 0.95x raw"),
        "official": Row("vs official SDK 2.1.0, sync unary", "calls/s", "apex-grpc >= 5x it"),
    }
    extra: dict[str, object] = {}
    # Unary scenarios get a server answering in one 1,600-character chunk; streaming ones
    # one answering in 100 chunks of 16. Same text, same size on both.
    with (
        echo_server(1, CHUNKS * CHUNK_SIZE) as unary_target,
        echo_server(CHUNKS, CHUNK_SIZE) as stream_target,
    ):
        unary = _scenarios.Context(unary_target, 1, CHUNKS * CHUNK_SIZE)
        streams = _scenarios.Context(stream_target, CHUNKS, CHUNK_SIZE)
        plan = [
            ("sync unary", unary, _scenarios.SYNC_SCENARIOS["sync unary"]),
            ("web search", unary, _scenarios.SYNC_SCENARIOS["web search"]),
            ("sync stream", streams, _scenarios.SYNC_SCENARIOS["sync stream"]),
        ]
        try:
            for round_number in range(args.rounds):
                ours_first = bool(round_number % 2)
                for key, ctx, scenario in plan:
                    raw, ours = _scenarios.run_sync(
                        ctx, scenario, args.slices, args.slice, ours_first
                    )
                    add(rows[key], raw, ours)
                for key, ctx, streaming in (
                    ("async unary", unary, False),
                    ("async stream", streams, True),
                ):
                    raw, ours = _scenarios.async_pair(
                        ctx, streaming, args.slices, args.slice, ours_first
                    )
                    add(rows[key], raw, ours)
                if args.official:
                    duration = args.slices * args.slice
                    ours_fn = _scenarios.ours_unary(unary)
                    if ours_first:
                        ours = _scenarios.rate(ours_fn, duration)
                    official = _official.official_unary_rate(unary_target, unary.text, duration)
                    if not ours_first:
                        ours = _scenarios.rate(ours_fn, duration)
                    add(rows["official"], official, ours)
                print(f"  round {round_number + 1}/{args.rounds} done", file=sys.stderr)

            raw_ttfc, our_ttfc = _scenarios.first_chunk_latencies(streams, args.ttfc_samples)
            extra["server_echo_calls_per_s"] = statistics.median(rows["async unary"].raw)
            rss = _process_metrics.rss_with_open_streams(stream_target, args.streams)
        finally:
            unary.close()
            streams.close()

    for key, minimum in (
        ("sync unary", 0.95),
        ("sync stream", 1.0),
        ("async unary", 0.9),
        ("async stream", 0.9),
        ("web search", 0.95),
        ("official", 5.0),
    ):
        if rows[key].ratios:
            ratio_row(rows[key], minimum)
        else:
            rows[key].note = "skipped (--quick or --no-official)"

    added = [(o - r) * 1e6 for r, o in zip(sorted(raw_ttfc), sorted(our_ttfc), strict=False)]
    ttfc = Row("time to first chunk, added over raw", "µs", "< 50 µs median")
    ttfc.value = _scenarios.median(our_ttfc) * 1e6 - _scenarios.median(raw_ttfc) * 1e6
    ttfc.spread = (min(added), max(added)) if added else None
    ttfc.met = ttfc.value < 50
    ttfc.note = (
        f"raw median {_scenarios.median(raw_ttfc) * 1e6:.0f} µs, "
        f"apex-grpc {_scenarios.median(our_ttfc) * 1e6:.0f} µs, {len(our_ttfc)} samples each"
    )

    imports = _process_metrics.import_time(args.import_runs)
    import_row = Row('python -c "import apex_grpc" wall time', "ms", "< 150 ms")
    import_row.value = statistics.median(imports) * 1000
    import_row.spread = (min(imports) * 1000, max(imports) * 1000)
    import_row.met = import_row.value < 150

    rss_row = Row(
        f"RSS with {rss['open_streams']:,.0f} open streams, one async client", "MB", "< 200 MB"
    )
    rss_row.value = rss["rss_mb"]
    rss_row.met = rss["rss_mb"] < 200 if rss["open_streams"] >= 1000 else None
    rss_row.note = f"{rss['rss_before_mb']:.0f} MB before opening them"

    ordered = [
        rows["sync unary"],
        rows["sync stream"],
        rows["async unary"],
        rows["async stream"],
        ttfc,
        rows["web search"],
        import_row,
        rss_row,
        rows["official"],
    ]
    if args.model:
        from ._model import model_tokens_per_second

        extra["local_model"] = model_tokens_per_second(args.model_runs)
    return ordered, extra


def add(row: Row, raw: float, ours: float) -> None:
    row.raw.append(raw)
    row.ours.append(ours)
    row.ratios.append(ours / raw)


def machine() -> dict[str, str]:
    """What the numbers were measured on."""
    return {
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
        "protobuf": protobuf_version,
        "apex-grpc": apex_grpc.__version__,
        "platform": platform.platform(),
    }


def render(rows: list[Row], extra: dict[str, object], args: argparse.Namespace) -> str:
    """The results as a Markdown table plus notes."""
    lines = [
        "| scenario | raw grpcio | apex-grpc | result (median, min-max) | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        raw = f"{statistics.median(row.raw):,.0f} {row.unit}" if row.raw else ""
        ours = f"{statistics.median(row.ours):,.0f} {row.unit}" if row.ours else ""
        if row.scenario.startswith("vs official") and row.raw:
            raw = f"official {raw}"
        if row.value is None:
            result = row.note
        elif row.ratios:
            low, high = row.spread or (row.value, row.value)
            result = f"**{row.value:.2f}x** ({low:.2f}-{high:.2f})"
        else:
            spread = f" ({row.spread[0]:.0f}-{row.spread[1]:.0f})" if row.spread else ""
            result = f"**{row.value:.0f} {row.unit}**{spread}"
        met = {True: "yes", False: "**no**", None: "n/a"}[row.met]
        lines.append(f"| {row.scenario} | {raw} | {ours} | {result} | {row.target} | {met} |")
    by_name = {row.scenario: row for row in rows}
    official, unary = by_name.get("vs official SDK 2.1.0, sync unary"), rows[0]
    if official is not None and official.raw and unary.raw:
        raw_ms = 1000 / statistics.median(unary.raw)
        official_extra = 1000 / statistics.median(official.raw) - raw_ms
        ours_extra = 1000 / statistics.median(unary.ours) - raw_ms
        official.note = (
            f"per call, the official SDK spends {official_extra:.2f} ms more than the raw stub "
            f"(a new channel and asyncio.run each time), apex-grpc {ours_extra * 1000:+.0f} µs; "
            f"the ratio is capped by the server's own {raw_ms:.2f} ms per call"
        )
    notes = [row for row in rows if row.note and row.value is not None]
    lines.append("")
    for row in notes:
        lines.append(f"- {row.scenario}: {row.note}")
    server = extra.get("server_echo_calls_per_s")
    if isinstance(server, float):
        lines.append(
            f"- The echo server itself (its own process, one core) serves about {server:,.0f} "
            "unary calls/s to 64 concurrent raw grpc.aio callers: the ceiling both sides share."
        )
    model = extra.get("local_model")
    if isinstance(model, dict):
        lines.append(
            f"- Local model (SmolLM2-135M-Instruct Q4_1, llama.cpp, 2 threads): "
            f"{model['tokens_per_s']:.0f} tokens/s streamed, first token after "
            f"{model['first_token_s'] * 1000:.0f} ms (median of {model['runs']:.0f} runs); "
            "server-side speed, separate from client overhead."
        )
    info = machine()
    lines.append(
        f"- Machine: {info['cores']} cores, Python {info['python']}, grpcio {info['grpcio']}, "
        f"protobuf {info['protobuf']}, apex-grpc {info['apex-grpc']}, {info['platform']}."
    )
    lines.append(
        f"- {args.rounds} rounds; in each, raw and apex-grpc alternate {args.slices} slices of "
        f"{args.slice:g} s per scenario; every answer verified (content and chunk counts)."
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds: CI smoke test")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--slices", type=int, help="alternating slices per side and round")
    parser.add_argument("--slice", type=float, help="seconds per slice")
    parser.add_argument("--no-official", dest="official", action="store_false", default=None)
    parser.add_argument("--no-model", dest="model", action="store_false", default=None)
    parser.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    args = parser.parse_args(argv)
    quick = args.quick
    args.rounds = args.rounds or (1 if quick else 5)
    args.slices = args.slices or (2 if quick else 6)
    args.slice = args.slice or (0.1 if quick else 0.3)
    args.official = (not quick) if args.official is None else args.official
    args.model = (not quick) if args.model is None else args.model
    args.ttfc_samples = 20 if quick else 300
    args.import_runs = 2 if quick else 10
    args.streams = 100 if quick else 1000
    args.model_runs = 3

    started = time.monotonic()
    rows, extra = measure(args)
    report = render(rows, extra, args)
    print(report)
    print(f"benchmarks took {time.monotonic() - started:.0f}s", file=sys.stderr)
    if args.write or not quick:
        results = ROOT / "RESULTS.md"
        header = (
            "# Benchmark results\n\n"
            "Produced by `make bench` (`python -m bench`); ratios are apex-grpc over the raw\n"
            "generated grpcio stub in the same run. See bench/README.md for the method.\n\n"
        )
        results.write_text(header + report)
        raw = {
            "machine": machine(),
            "rows": [row.__dict__ for row in rows],
            "extra": extra,
        }
        (ROOT / f"results-{int(time.time())}.json").write_text(
            json.dumps(raw, indent=1, default=str)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
