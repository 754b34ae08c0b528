"""Run the benchmarks: ``python -m bench`` (full, ~6 min) or ``python -m bench --quick``.

Every ratio compares apex-grpc with a baseline measured in the same run
(the raw generated grpcio stub, or the official SDK), interleaved round by
round, against the same server in its own process; every answer is checked.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from . import (
    _burst,
    _first_chunk,
    _fleet,
    _hostile,
    _http,
    _otel,
    _per_call,
    _process_metrics,
    _resume,
    _scenarios,
    _storage,
)
from ._common import expected_text
from ._report import Row, machine, ratio_row, render, value_row
from ._server import echo_server

ROOT = Path(__file__).resolve().parent
CHUNKS, CHUNK_SIZE = 100, 16
SECTIONS = (
    "client",
    "bursts",
    "cpu",
    "otel",
    "tls",
    "fleet",
    "resume",
    "storage",
    "hostile",
    "http",
    "model",
    "engine",
)
"""Parts of the run that `--only` can pick."""

CLIENT_OVERHEAD = {
    # key: (scenario, unit, target, minimum ratio over raw)
    "sync unary": (
        "sync unary chat.completions.create, many short alternating slices",
        "calls/s",
        ">= 0.98x raw",
        0.98,
    ),
    "sync stream": (
        "sync streaming, 100 chunks/stream, raw with grpc's default channel arguments",
        "chunks/s",
        ">= 1.0x raw",
        1.0,
    ),
    "async unary": ("async unary, 64 in flight, one client", "calls/s", ">= 0.9x raw", 0.9),
    "async stream": ("async streaming, 64 concurrent streams", "chunks/s", ">= 0.9x raw", 0.9),
    "web search": ("web_search.search unary", "calls/s", ">= 0.95x raw", 0.95),
}


def client_overhead(args: argparse.Namespace) -> tuple[list[Row], list[str]]:
    """apex-grpc against the raw stub on the echo server: rates, first chunk, imports, memory."""
    raw: dict[str, list[float]] = {key: [] for key in CLIENT_OVERHEAD}
    ours: dict[str, list[float]] = {key: [] for key in CLIENT_OVERHEAD}
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
                    slices, slice_s = args.short_slices.get(key, (args.slices, args.slice))
                    rates = _scenarios.run_sync(ctx, scenario, slices, slice_s, ours_first)
                    raw[key].append(rates[0])
                    ours[key].append(rates[1])
                for key, ctx, streaming in (
                    ("async unary", unary, False),
                    ("async stream", streams, True),
                ):
                    rates = _scenarios.async_pair(
                        ctx, streaming, args.slices, args.slice, ours_first
                    )
                    raw[key].append(rates[0])
                    ours[key].append(rates[1])
                print(f"  client overhead: round {round_number + 1}/{args.rounds}", file=sys.stderr)
            first_chunk = _first_chunk.first_chunk_latencies(streams, args.ttfc_samples)
            rss = _process_metrics.rss_with_open_streams(stream_target, args.streams)
        finally:
            unary.close()
            streams.close()

    rows = {
        key: ratio_row(name, unit, target, raw[key], ours[key], lambda r, m=minimum: r >= m)
        for key, (name, unit, target, minimum) in CLIENT_OVERHEAD.items()
    }
    imports = [seconds * 1000 for seconds in _process_metrics.import_time(args.import_runs)]
    import_row = value_row(
        'python -c "import apex_grpc" wall time', "ms", "< 150 ms", imports, lambda v: v < 150
    )
    rss_row = value_row(
        f"RSS with {rss['open_streams']:,.0f} open streams, one async client",
        "MB",
        "< 200 MB",
        [rss["rss_mb"]],
        lambda v: v < 200,
    )
    if rss["open_streams"] < 1000:
        rss_row.met = None
    rss_row.notes.append(f"{rss['rss_before_mb']:.0f} MB before opening them")
    ordered = [
        rows["sync unary"],
        rows["sync stream"],
        rows["async unary"],
        rows["async stream"],
        *_first_chunk.rows(first_chunk),
        rows["web search"],
        import_row,
        rss_row,
    ]
    server = statistics.median(raw["async unary"])
    notes = [
        f"The echo server itself (its own process, one core) serves about {server:,.0f} "
        "unary calls/s to 64 concurrent raw grpc.aio callers: the ceiling both sides share.",
        f"Client-overhead rows: {args.rounds} rounds; in each, raw and apex-grpc alternate "
        f"{args.slices} slices of {args.slice:g} s per scenario ("
        + "; ".join(
            f"{n} slices of {s * 1000:g} ms for {key}" for key, (n, s) in args.short_slices.items()
        )
        + ", so that load drifting on a shared machine cannot favour either side); every "
        "answer verified (content and chunk "
        "counts). The raw stub has apex-grpc's channel arguments and metadata unless a row "
        "says otherwise.",
    ]
    return ordered, notes


def per_call(args: argparse.Namespace) -> list[Row]:
    """CPU per sequential unary call (apex-grpc, raw, official SDK)."""
    text = expected_text(1, CHUNKS * CHUNK_SIZE)
    with echo_server(1, CHUNKS * CHUNK_SIZE) as target:
        probes = _per_call.cpu_per_call(
            target, text, args.cpu_rounds, args.cpu_seconds, args.official
        )
    return _per_call.cpu_rows(probes)


def otel_cost(args: argparse.Namespace) -> list[Row]:
    """CPU per sequential unary call without OpenTelemetry, with it idle, and instrumented."""
    text = expected_text(1, CHUNKS * CHUNK_SIZE)
    with echo_server(1, CHUNKS * CHUNK_SIZE) as target:
        return _otel.measure(target, text, args.otel_rounds, args.cpu_seconds)


def over_tls(args: argparse.Namespace) -> list[Row]:
    """Sequential calls over TLS through a 20 ms round-trip delay proxy."""
    text = expected_text(1, CHUNKS * CHUNK_SIZE)
    result = _per_call.over_tls_with_latency(text, args.tls_rounds, args.tls_seconds, args.official)
    return _per_call.tls_rows(result)


def measure(args: argparse.Namespace) -> tuple[list[Row], list[str], dict[str, Any]]:
    """Every section picked: the rows in table order, notes, and extra numbers."""
    rows: list[Row] = []
    notes: list[str] = []
    extra: dict[str, Any] = {}
    if "client" in args.only:
        client_rows, notes = client_overhead(args)
        rows += client_rows
    if "bursts" in args.only:
        rows += _burst.measure(
            args.burst_calls, args.burst_threads, args.burst_call_s, args.burst_rounds
        )
    if "cpu" in args.only:
        rows += per_call(args)
    if "otel" in args.only:
        rows += otel_cost(args)
    if "tls" in args.only:
        rows += over_tls(args)
    if "fleet" in args.only:
        rows += _fleet.measure(args.quick)
    if "resume" in args.only:
        rows += _resume.measure(args.quick)
    if "hostile" in args.only:
        rows += _hostile.measure(args.quick)
    if "storage" in args.only:
        rows += _storage.measure(args.storage_rounds, args.storage_calls)
    if args.engine:
        from ._engine_process import measure as engine_process

        rows += engine_process(args.engine_rounds, args.engine_tokens, args.engine_samples)
    if "http" in args.only:
        rows += _http.measure(
            args.http_rounds, args.http_slices, args.http_seconds, args.http_samples
        )
    if args.model:
        from ._model import model_tokens_per_second

        model = model_tokens_per_second(args.model_runs)
        extra["local_model"] = model
        notes.append(
            f"Local model (SmolLM2-135M-Instruct Q4_1, llama.cpp, 2 threads): "
            f"{model['tokens_per_s']:.0f} tokens/s streamed, first token after "
            f"{model['first_token_s'] * 1000:.0f} ms (median of {model['runs']:.0f} runs); "
            "server-side speed, separate from client overhead."
        )
    return rows, notes, extra


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The command line, with the full or quick defaults filled in."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds: CI smoke test")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--slices", type=int, help="alternating slices per side and round")
    parser.add_argument("--slice", type=float, help="seconds per slice")
    parser.add_argument("--no-official", dest="official", action="store_false", default=None)
    parser.add_argument("--no-model", dest="model", action="store_false", default=None)
    parser.add_argument(
        "--only", help=f"comma-separated sections to run (of {','.join(SECTIONS)}; default all)"
    )
    parser.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    args = parser.parse_args(argv)
    quick = args.quick
    args.only = set((args.only or ",".join(SECTIONS)).split(","))
    if not args.only <= set(SECTIONS):
        parser.error(f"--only takes {', '.join(SECTIONS)}")
    args.rounds = args.rounds or (1 if quick else 5)
    args.slices = args.slices or (2 if quick else 6)
    args.slice = args.slice or (0.1 if quick else 0.3)
    # Sequential unary rows alternate many short slices (web search calls take ~7 ms).
    args.short_slices = {
        "sync unary": (10, 0.01) if quick else (100, 0.02),
        "web search": (4, 0.05) if quick else (30, 0.1),
    }
    args.official = (not quick) if args.official is None else args.official
    args.model = "model" in args.only and ((not quick) if args.model is None else args.model)
    args.ttfc_samples = 20 if quick else 1000
    args.import_runs = 2 if quick else 10
    args.streams = 100 if quick else 1000
    args.model_runs = 3
    # The engine process against llama.cpp direct: the local model, so not in --quick.
    args.engine = "engine" in args.only and not quick
    args.engine_rounds, args.engine_tokens, args.engine_samples = 6, 200, 40
    # Bursts: quick mode keeps the 100-stream limit but sends 2 connections' worth of calls.
    args.burst_calls, args.burst_threads = (200, 120) if quick else (1000, 250)
    args.burst_call_s = 0.2 if quick else 1.0
    args.burst_rounds = 1 if quick else 3
    args.cpu_rounds, args.cpu_seconds = (1, 0.3) if quick else (args.rounds, 2.0)
    # Two sides that run the same code: a 2% target needs more rounds than noise gives in 5.
    args.otel_rounds = 1 if quick else max(args.rounds, 9)
    args.tls_rounds, args.tls_seconds = (1, 0.3) if quick else (3, 3.0)
    args.storage_rounds, args.storage_calls = (1, 30) if quick else (5, 200)
    # The HTTP face: short slices alternating between the sides, many per round.
    args.http_rounds, args.http_slices = (1, 2) if quick else (7, 20)
    args.http_seconds, args.http_samples = (0.05, 20) if quick else (0.1, 500)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    started = time.monotonic()
    load_before = machine()["load"]
    rows, notes, extra = measure(args)
    info = machine()
    info["load"] = f"{load_before} at the start, {info['load']} at the end"
    report = render(rows, notes, info)
    print(report)
    print(f"benchmarks took {time.monotonic() - started:.0f}s", file=sys.stderr)
    if args.write or (not args.quick and args.only == set(SECTIONS)):
        header = (
            "# Benchmark results\n\n"
            "Produced by `make bench` (`python -m bench`); ratios are apex-grpc over the raw\n"
            "generated grpcio stub (or the other side named) in the same run. See\n"
            "bench/README.md for the method.\n\n"
        )
        (ROOT / "RESULTS.md").write_text(header + report)
        raw = {"machine": info, "rows": [vars(row) for row in rows], "extra": extra}
        (ROOT / f"results-{int(time.time())}.json").write_text(
            json.dumps(raw, indent=1, default=str)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
