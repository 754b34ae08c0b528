"""What OpenTelemetry costs a call: client CPU per sequential unary call, by instrumentation state.

Three sides, each in a fresh process per round (bench/_probe.py, the method of
the CPU row): apex-grpc where OpenTelemetry cannot be imported (as without the
``otel`` extra), apex-grpc with the extra installed but not instrumented (the
probe checks that no ``opentelemetry`` module was loaded), and apex-grpc with
ApexGrpcInstrumentor on, exporting spans and metrics to memory.
"""

from __future__ import annotations

import statistics
import timeit

from ._per_call import loopback_probe, run_rounds
from ._report import Row, ratio_row


def measure(target: str, expected: str, rounds: int, duration: float) -> list[Row]:
    """The two rows: installed-not-instrumented against without, and instrumented (report)."""
    sides = ["ours_without_otel", "ours", "ours_instrumented"]
    probes = run_rounds(sides, rounds, loopback_probe(target, expected, duration))
    # The calling thread's CPU: where an instrumentation's code runs. Process CPU adds grpc
    # core's poller threads, whose time follows the server's latency and varies by a
    # quarter from process to process on this host (identical code measured 0.80-1.25x).
    cpu = {
        side: [s.thread_cpu_us_per_call for s in samples]
        for side, samples in probes.samples.items()
    }
    process = {
        side: statistics.median(s.cpu_us_per_call for s in samples)
        for side, samples in probes.samples.items()
    }
    off = ratio_row(
        "calling thread's CPU per call, otel extra installed but not instrumented",
        "µs",
        "<= 1.02x without",
        cpu["ours_without_otel"],
        cpu["ours"],
        lambda ratio: ratio <= 1.02,
        raw_label="without ",
    )
    hook_ns = _hook_ns()
    off.notes.append(
        f"each side in a fresh process per round ({len(cpu['ours'])} rounds, order rotating); "
        f"'without' hides OpenTelemetry from the probe (an import hook). The code an "
        f"uninstrumented call runs for it: one module attribute read and an `is None` test, "
        f"{hook_ns:.0f} ns (timeit), {hook_ns / 10 / statistics.median(cpu['ours']):.4f}% of the "
        "call's CPU; streams add nothing per chunk. Process CPU per call (grpc threads "
        f"included), medians: without {process['ours_without_otel']:.0f} µs, installed "
        f"{process['ours']:.0f} µs, instrumented {process['ours_instrumented']:.0f} µs"
    )
    on = ratio_row(
        "calling thread's CPU per call, instrumented (in-memory span exporter and metric reader)",
        "µs",
        "report",
        cpu["ours"],
        cpu["ours_instrumented"],
        None,
        raw_label="not instrumented ",
    )
    on.notes.append(
        "one CLIENT span with the GenAI attributes, the duration and token-usage histograms "
        "per call; SimpleSpanProcessor (synchronous export)"
    )
    return [off, on]


def _hook_ns() -> float:
    """Nanoseconds for what an uninstrumented call adds: the observer read and its test."""
    from apex_grpc import _observe

    runs = 1_000_000
    best = min(
        timeit.repeat("_observe.observer is None", globals={"_observe": _observe}, number=runs)
    )
    empty = min(timeit.repeat("pass", number=runs))
    return max(best - empty, 0.0) / runs * 1e9
