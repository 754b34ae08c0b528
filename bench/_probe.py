"""Sequential unary calls in a fresh process of their own: calls/s and client CPU per call.

``python -m bench._probe CONFIG_JSON`` makes one client (apex-grpc, the raw
generated stub, or the official SDK), warms it up, then calls
chat.completions.create back to back for ``duration`` seconds, checking every
answer. It prints the calls made, the wall time and the process CPU time
they took (time.process_time: every thread of the process, grpc core's
included). The official SDK's probe runs in its own virtualenv, so this
module imports nothing outside the standard library at the top.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._common import BENCH_KEY, MESSAGES, check

ROOT = Path(__file__).resolve().parent.parent


def ours_call(config: dict[str, Any]) -> Callable[[], str]:
    """apex-grpc's sync client, default settings."""
    import apex_grpc as mc

    client = mc.ApexClient(api_key=BENCH_KEY, base_url=config["target"], secure=config["tls"])

    def call() -> str:
        response = client.chat.completions.create(messages=MESSAGES)
        return str(response.choices[0].message.content)

    return call


def raw_call(config: dict[str, Any]) -> Callable[[], str]:
    """The generated stub on one grpc channel, with the channel options and metadata given."""
    import grpc

    from apex_grpc_proto.apex.v1 import apex_pb2_grpc as pbg

    from ._raw import raw_chat_request

    options = [tuple(option) for option in config["options"]]
    metadata = tuple(tuple(pair) for pair in config["metadata"])
    if config["tls"]:
        credentials = grpc.ssl_channel_credentials()
        channel = grpc.secure_channel(config["target"], credentials, options=options)
    else:
        channel = grpc.insecure_channel(config["target"], options=options)
    stub = pbg.ApexServiceStub(channel)

    def call() -> str:
        response = stub.ChatCompletion(raw_chat_request(False), metadata=metadata, timeout=600)
        return str(response.choices[0].message.content)

    return call


def official_call(config: dict[str, Any]) -> Callable[[], str]:
    """The official SDK's sync client (a new channel and event loop per call)."""
    import macrocosmos  # type: ignore[import-not-found]

    client = macrocosmos.ApexClient(
        api_key=BENCH_KEY, base_url=config["target"], secure=config["tls"], app_name="bench"
    )

    def call() -> str:
        response = client.chat.completions.create(messages=MESSAGES)
        return str(response.choices[0].message.content)

    return call


class _NoOpenTelemetry:
    """A meta-path finder refusing ``opentelemetry``: this process runs as without the extra."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name.split(".")[0] == "opentelemetry":
            raise ImportError(f"{name} is hidden: the probe runs without the otel extra")


def ours_without_otel(config: dict[str, Any]) -> Callable[[], str]:
    """apex-grpc's sync client in a process where OpenTelemetry cannot be imported."""
    sys.meta_path.insert(0, _NoOpenTelemetry())
    return ours_call(config)


def ours_instrumented(config: dict[str, Any]) -> Callable[[], str]:
    """apex-grpc's sync client with ApexGrpcInstrumentor on, exporting to memory."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from apex_grpc.instrumentation.otel import ApexGrpcInstrumentor

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    ApexGrpcInstrumentor().instrument(
        tracer_provider=tracer_provider, meter_provider=meter_provider
    )
    return ours_call(config)


def probe(config: dict[str, Any]) -> dict[str, float]:
    """Warm up, then call for `duration` seconds; returns calls, wall_s, cpu_s (the process)
    and thread_cpu_s (the calling thread alone)."""
    makers = {
        "ours": ours_call,
        "raw": raw_call,
        "official": official_call,
        "ours_without_otel": ours_without_otel,
        "ours_instrumented": ours_instrumented,
    }
    call = makers[config["side"]](config)
    expected = config["expected"]
    warm_until = time.perf_counter() + config["warmup"]
    while True:  # at least one call: it connects
        check(call() == expected, f"{config['side']} probe content")
        if time.perf_counter() >= warm_until:
            break
    calls = 0
    cpu_started = time.process_time()
    thread_started = time.thread_time()
    started = time.perf_counter()
    deadline = started + config["duration"]
    while time.perf_counter() < deadline:
        check(call() == expected, f"{config['side']} probe content")
        calls += 1
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    thread_cpu = time.thread_time() - thread_started
    if config["side"] in ("ours", "ours_without_otel"):  # not instrumented: none loaded
        loaded = [m for m in sys.modules if m.split(".")[0] == "opentelemetry"]
        check(not loaded, f"{config['side']} probe imported {loaded[:3]}")
    return {"calls": calls, "wall_s": wall, "cpu_s": cpu, "thread_cpu_s": thread_cpu}


def run_probe(interpreter: str, config: dict[str, Any], env: dict[str, str]) -> dict[str, float]:
    """Run one probe in a fresh process of `interpreter`; returns its measurements."""
    out = subprocess.run(
        [interpreter, "-m", "bench._probe", json.dumps(config)],
        cwd=ROOT,
        env={**clean_environment(), **env},
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if out.returncode:
        raise RuntimeError(f"the {config['side']} probe failed:\n{out.stderr[-3000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def clean_environment() -> dict[str, str]:
    """This environment without the SDKs' own settings (APEX_*, MACROCOSMOS_*)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("APEX_", "MACROCOSMOS_"))}


if __name__ == "__main__":
    print(json.dumps(probe(json.loads(sys.argv[1]))))
