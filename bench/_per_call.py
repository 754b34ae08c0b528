"""Per-call costs of sequential unary calls, each client in a fresh process of its own.

`cpu_per_call`: client CPU per call of apex-grpc, the raw stub (the same
channel options and metadata as apex-grpc) and the official SDK, against one
echo server, interleaved over rounds. `over_tls_with_latency`: calls/s of
apex-grpc and the official SDK over TLS through a proxy adding 20 ms of
round-trip time, with what the proxy saw on each connection.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import _official
from ._delay_proxy import DOWN, UP, ConnectionLog, DelayProxy
from ._probe import run_probe
from ._report import Row, plural, ratio_row, spread
from ._scenarios import ours_on_the_wire
from ._server import echo_server


@dataclass
class Sample:
    """One probe process: how many calls, in how long, for how much CPU."""

    calls: int
    wall_s: float
    cpu_s: float
    thread_cpu_s: float

    @property
    def cpu_us_per_call(self) -> float:
        """Process CPU time per call, in microseconds."""
        return self.cpu_s / self.calls * 1e6

    @property
    def thread_cpu_us_per_call(self) -> float:
        """The calling thread's CPU time per call, in microseconds."""
        return self.thread_cpu_s / self.calls * 1e6

    @property
    def calls_per_s(self) -> float:
        """Sequential calls per second of wall time."""
        return self.calls / self.wall_s


@dataclass
class Probes:
    """The samples of each side over the rounds, in order."""

    samples: dict[str, list[Sample]] = field(default_factory=dict)

    def add(self, side: str, measured: dict[str, float]) -> None:
        """Record one probe's result."""
        sample = Sample(
            int(measured["calls"]), measured["wall_s"], measured["cpu_s"], measured["thread_cpu_s"]
        )
        self.samples.setdefault(side, []).append(sample)

    def ratios(self, side: str, base: str, metric: str) -> list[float]:
        """`side`'s metric over `base`'s, round by round."""
        return [
            getattr(a, metric) / getattr(b, metric)
            for a, b in zip(self.samples[side], self.samples[base], strict=True)
        ]

    def median(self, side: str, metric: str) -> float:
        """The median of `side`'s metric over the rounds."""
        return statistics.median(getattr(s, metric) for s in self.samples[side])


def interpreter(side: str) -> str:
    """The Python that runs `side`'s probe (the official SDK has a venv of its own)."""
    return str(_official.python()) if side == "official" else sys.executable


def run_rounds(
    sides: list[str], rounds: int, base: dict[str, Any], env: dict[str, str] | None = None
) -> Probes:
    """Each side in a fresh process per round; the order rotates from round to round."""
    probes = Probes()
    for round_number in range(rounds):
        shift = round_number % len(sides)
        for side in sides[shift:] + sides[:shift]:
            config = {**base, "side": side}
            probes.add(side, run_probe(interpreter(side), config, env or {}))
        print(f"  {'/'.join(sides)} probes: round {round_number + 1}/{rounds}", file=sys.stderr)
    return probes


def loopback_probe(target: str, expected: str, duration: float) -> dict[str, Any]:
    """A probe's configuration for sequential plaintext calls to `target` (warm-up included)."""
    return {
        "target": target,
        "tls": False,
        "expected": expected,
        "duration": duration,
        "warmup": min(0.5, duration / 2),
    }


def cpu_per_call(
    target: str, expected: str, rounds: int, duration: float, official: bool
) -> Probes:
    """Client CPU per sequential unary call: apex-grpc, the raw stub, the official SDK."""
    options, metadata = ours_on_the_wire(target)
    base = {**loopback_probe(target, expected, duration), "options": options, "metadata": metadata}
    sides = ["ours", "raw", "official"] if official else ["ours", "raw"]
    return run_rounds(sides, rounds, base)


@dataclass
class TlsResult:
    """The TLS-with-latency row: the probes and the proxy's connection logs per side."""

    probes: Probes
    one_way_s: float
    connections: dict[str, list[ConnectionLog]]
    answer_bytes: int


def over_tls_with_latency(
    expected: str, rounds: int, duration: float, official: bool, one_way: float = 0.010
) -> TlsResult:
    """Sequential calls over TLS through a proxy adding `one_way` seconds each way."""
    import trustme

    with tempfile.TemporaryDirectory(prefix="apex-bench-tls-") as folder:
        paths = certificates(trustme.CA(), Path(folder))
        env = {"GRPC_DEFAULT_SSL_ROOTS_FILE_PATH": str(paths["ca"])}
        with echo_server(1, len(expected), tls=(str(paths["cert"]), str(paths["key"]))) as target:
            sides = ["ours", "official"] if official else ["ours"]
            probes = Probes()
            logs: dict[str, list[ConnectionLog]] = {side: [] for side in sides}
            for round_number in range(rounds):
                shift = round_number % len(sides)
                for side in sides[shift:] + sides[:shift]:
                    with DelayProxy(target, one_way) as proxy:
                        config = {
                            "side": side,
                            "target": f"localhost:{proxy.port}",
                            "tls": True,
                            "expected": expected,
                            "duration": duration,
                            "warmup": 0.0,
                        }
                        probes.add(side, run_probe(interpreter(side), config, env))
                    logs[side].extend(proxy.connections)
                print(f"  TLS probes: round {round_number + 1}/{rounds}", file=sys.stderr)
    return TlsResult(probes, one_way, logs, len(expected))


def certificates(ca: Any, folder: Path) -> dict[str, Path]:
    """A CA and a server certificate for `localhost`, written as PEM files in `folder`."""
    server = ca.issue_cert("localhost")
    paths = {"ca": folder / "ca.pem", "cert": folder / "server.pem", "key": folder / "key.pem"}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    server.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    for extra in server.cert_chain_pems[1:]:
        extra.write_to_path(str(paths["cert"]), append=True)
    server.private_key_pem.write_to_path(str(paths["key"]))
    os.chmod(paths["key"], 0o600)
    return paths


def cpu_rows(probes: Probes) -> list[Row]:
    """apex-grpc's CPU per call against the raw stub's, and the official SDK's multiple of it."""
    cpu = {side: [s.cpu_us_per_call for s in samples] for side, samples in probes.samples.items()}
    rate = {side: probes.median(side, "calls_per_s") for side in probes.samples}
    raw_row = ratio_row(
        "client CPU per sequential unary call (process CPU time, grpc threads included)",
        "µs",
        "<= 1.1x raw",
        cpu["raw"],
        cpu["ours"],
        lambda ratio: ratio <= 1.1,
    )
    raw_row.notes.append(
        f"each side in a fresh process per round ({len(cpu['ours'])} rounds, order rotating); "
        "the raw stub has apex-grpc's channel options and metadata; sequential calls/s in "
        f"the same probes: raw {rate['raw']:,.0f}, apex-grpc {rate['ours']:,.0f}"
    )
    if "official" not in cpu:
        return [raw_row]
    multiples = probes.ratios("official", "ours", "cpu_us_per_call")
    official_row = Row(
        "client CPU per call, official SDK 2.1.0 as a multiple of apex-grpc",
        "report (about 10x before)",
        raw=f"official {statistics.median(cpu['official']):,.0f} µs",
        ours=f"{statistics.median(cpu['ours']):,.0f} µs",
        result=spread(multiples, ".1f", "x"),
        data={"official": cpu["official"], "ours": cpu["ours"], "multiples": multiples},
    )
    calls = probes.ratios("ours", "official", "calls_per_s")
    official_row.notes.append(
        f"sequential sync calls/s (the retired target \"apex-grpc >= 5x the official SDK's "
        f'calls/s"): official {rate["official"]:,.0f}, apex-grpc {rate["ours"]:,.0f}, '
        f"{statistics.median(calls):.2f}x; both wait for the server's own time per call "
        f"(about {1000 / rate['raw']:.2f} ms with the raw stub), which caps that ratio whatever "
        "the client costs, so CPU per call is the client's measure now"
    )
    return [raw_row, official_row]


def tls_rows(result: TlsResult) -> list[Row]:
    """Calls/s over TLS with 20 ms of round-trip time, and the round trips behind them."""
    probes, rtt_ms = result.probes, result.one_way_s * 2000
    scenario = f"sequential unary calls over TLS, +{rtt_ms:.0f} ms round trip (delay proxy)"
    ours_rate = [s.calls_per_s for s in probes.samples["ours"]]
    row = Row(scenario, "report", ours=f"{statistics.median(ours_rate):.1f} calls/s")
    for side in [side for side in ("official", "ours") if side in probes.samples]:
        per_call_ms = 1000 / probes.median(side, "calls_per_s")
        logs = result.connections[side]
        calls = sum(s.calls + 1 for s in probes.samples[side])  # +1: the warm-up call
        name = "apex-grpc" if side == "ours" else "official SDK"
        processes = plural(len(probes.samples[side]), "client process", "client processes")
        row.notes.append(
            f"{name}: {per_call_ms:.1f} ms per sequential call = {per_call_ms / rtt_ms:.2f} "
            f"round trips; {plural(len(logs), 'connection')} for {calls} calls in "
            f"{processes}. A new connection: "
            + connection_story(logs[min(1, len(logs) - 1)], rtt_ms, result.answer_bytes)
            + (steady_calls(logs[0]) if side == "ours" else "")
        )
    if "official" not in probes.samples:
        row.result = "apex-grpc only (--no-official or --quick)"
        return [row]
    ratios = probes.ratios("ours", "official", "calls_per_s")
    row.raw = f"official {probes.median('official', 'calls_per_s'):.1f} calls/s"
    row.result = spread(ratios, ".2f", "x")
    trips = {side: 1000 / probes.median(side, "calls_per_s") / rtt_ms for side in probes.samples}
    row.notes.append(
        f"so a sequential call costs the official SDK {trips['official']:.2f} round trips of "
        f"time and apex-grpc {trips['ours']:.2f}: four network round trips (TCP, TLS, HTTP/2 "
        "SETTINGS, the call) against one, plus per-call CPU and server time (the TLS "
        "handshake's crypto on both ends for the official SDK)"
    )
    row.data = {"ours": ours_rate, "ratios": ratios}
    return [row]


SETUP_STEPS = (
    "TLS 1.3 ClientHello",
    "TLS Finished, HTTP/2 preface and SETTINGS",
    "the call (HEADERS, DATA)",
)
"""What the client's flights on a new grpc TLS connection carry, up to the first answer."""


def connection_story(log: ConnectionLog, rtt_ms: float, answer_bytes: int) -> str:
    """A new connection up to its first answer, as the proxy saw it, with times and sizes.

    The answer is the first server flight after the handshake's of at least
    `answer_bytes` (the answer text's length). Each client flight before it
    waited for the server's previous one; times count from the proxy
    accepting the connection (the client's connect()).
    """
    flights = log.flights()
    answer = next(
        (
            i
            for i, (_, way, size) in enumerate(flights)
            if i >= 2 and way == DOWN and size >= answer_bytes
        ),
        None,
    )
    if answer is None:
        return describe_flights(log, 8)
    asks = [(sent, size) for sent, way, size in flights[:answer] if way == UP]
    names = SETUP_STEPS if len(asks) == len(SETUP_STEPS) else ("client flight",) * len(asks)
    steps = [
        f"{name} C>S {size} B at +{(sent - log.accepted) * 1000:.0f} ms"
        for name, (sent, size) in zip(names, asks, strict=True)
    ]
    arrived, _, size = flights[answer]
    arrived_ms = (arrived - log.accepted) * 1000
    return (
        f"TCP handshake (modelled by the proxy), then {len(asks)} client flights, each sent "
        f"after the server's answer to the previous: {'; '.join(steps)}; the answer ({size} B) "
        f"arrived at +{arrived_ms:.0f} ms = {arrived_ms / rtt_ms:.1f} round trips after connect()"
    )


def steady_calls(log: ConnectionLog) -> str:
    """What each later call on a kept connection costs: one flight each way."""
    later = log.flights()[len(SETUP_STEPS) * 2 :]
    ups = [size for _, direction, size in later if direction == UP]
    downs = [size for _, direction, size in later if direction == DOWN]
    if not ups or not downs:
        return ""
    return (
        f". Every later call on the kept connection: one round trip, C>S "
        f"{statistics.median(ups):.0f} B, S>C {statistics.median(downs):.0f} B (medians)"
    )


def describe_flights(log: ConnectionLog, limit: int) -> str:
    """A connection's first `limit` flights as `+ms C>S bytes`, from when it was accepted."""
    parts = []
    for sent, direction, size in log.flights()[:limit]:
        arrow = "C>S" if direction == UP else "S>C"
        parts.append(f"+{(sent - log.accepted) * 1000:.0f} ms {arrow} {size} B")
    more = len(log.flights()) - limit
    return ", ".join(parts) + (f", ... ({more} more flights)" if more > 0 else "")
