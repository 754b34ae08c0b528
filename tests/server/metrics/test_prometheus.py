"""The server's Prometheus metrics (--metrics-port): real calls, then a real scrape of /metrics.

Each test starts its own server with ``metrics_port=0``, makes calls over
gRPC, fetches ``http://127.0.0.1:PORT/metrics`` with urllib and parses it with
prometheus_client's own parser.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from apex_grpc_proto.apex.v1 import apex_pb2 as pb
from apex_grpc_proto.apex.v1 import apex_pb2_grpc as pb_grpc

prometheus_parser = pytest.importorskip(
    "prometheus_client.parser", reason="the server extra installs prometheus-client"
)

SERVICE = "apex.v1.ApexService"
OK, INVALID_ARGUMENT, RESOURCE_EXHAUSTED, UNAUTHENTICATED = "0", "3", "8", "16"
CHUNKS, CHUNK_SIZE = 4, 8
Samples = list[tuple[str, dict[str, str], float]]


def scrape(port: int) -> Samples:
    """Every sample of http://127.0.0.1:PORT/metrics: (name, labels, value)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode("utf-8")
    return [
        (sample.name, sample.labels, sample.value)
        for family in prometheus_parser.text_string_to_metric_families(text)
        for sample in family.samples
    ]


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` whose labels include ``labels``."""
    found = [v for n, ls, v in samples if n == name and labels.items() <= ls.items()]
    assert found, f"no sample {name} {labels}"
    return sum(found)


def calls(samples: Samples, method: str, code: str) -> float:
    """How many calls of ``method`` ended with ``code``, by the RPC duration histogram."""
    return value(
        samples,
        "rpc_server_duration_seconds_count",
        rpc_method=f"{SERVICE}/{method}",
        rpc_grpc_status_code=code,
    )


def ask(text: str) -> pb.ChatCompletionRequest:
    return pb.ChatCompletionRequest(messages=[pb.ChatMessage(role="user", content=text)])


@pytest.fixture
def metered(start_server: Callable[..., Any], connect: Callable[[str], Any]):
    """``metered(**overrides)``: (server with metrics on a free port, a stub on it)."""

    def start(**overrides: Any) -> tuple[Any, pb_grpc.ApexServiceStub]:
        settings = {"metrics_port": 0, "echo_chunks": CHUNKS, "echo_chunk_size": CHUNK_SIZE}
        server = start_server(**{**settings, **overrides})
        return server, connect(server.target)

    return start


def test_calls_are_counted_and_timed_by_method_status_and_model(metered, auth) -> None:
    server, stub = metered(echo_delay_s=0.02)
    assert isinstance(server.metrics_port, int) and server.metrics_port > 0
    for text in ("hello", "again"):
        stub.ChatCompletion(ask(text), metadata=auth)
    chunks = list(stub.ChatCompletionStream(ask("streamed"), metadata=auth))
    assert len(chunks) == CHUNKS
    with pytest.raises(grpc.RpcError) as invalid:
        stub.ChatCompletion(pb.ChatCompletionRequest(), metadata=auth)
    assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as refused:
        stub.GetChatSessions(pb.GetChatSessionsRequest())  # no key
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    stub.GetChatSessions(pb.GetChatSessionsRequest(), metadata=auth)

    samples = scrape(server.metrics_port)
    # Per RPC: counts by method and numeric status code, durations observed.
    assert calls(samples, "ChatCompletion", OK) == 2
    assert calls(samples, "ChatCompletion", INVALID_ARGUMENT) == 1
    assert calls(samples, "ChatCompletionStream", OK) == 1
    assert calls(samples, "GetChatSessions", UNAUTHENTICATED) == 1
    assert calls(samples, "GetChatSessions", OK) == 1
    assert value(samples, "rpc_server_duration_seconds_count") == 6
    assert value(samples, "rpc_server_duration_seconds_count", rpc_system="grpc") == 6
    stream_s = value(
        samples, "rpc_server_duration_seconds_sum", rpc_method=f"{SERVICE}/ChatCompletionStream"
    )
    assert stream_s >= (CHUNKS - 1) * 0.02  # the echo engine's delays between chunks
    assert value(samples, "apex_server_calls_in_flight") == 0

    # Chat completions: the engine's model, not the request's; errors before the engine
    # (INVALID_ARGUMENT) are not completions.
    chat = {
        "gen_ai_operation_name": "chat",
        "gen_ai_request_model": "echo",
        "gen_ai_response_model": "echo",
    }
    assert value(samples, "gen_ai_server_request_duration_seconds_count", **chat) == 3
    assert value(samples, "gen_ai_server_request_duration_seconds_count", error_type="") == 3
    assert value(samples, "gen_ai_server_request_duration_seconds_sum") >= (CHUNKS - 1) * 0.02
    assert value(samples, "gen_ai_server_time_to_first_token_seconds_count", **chat) == 1
    per_chunk = "gen_ai_server_time_per_output_token_seconds"
    assert value(samples, f"{per_chunk}_count", **chat) == CHUNKS - 1
    assert value(samples, f"{per_chunk}_sum") >= (CHUNKS - 1) * 0.02
    # One bucket above the echo delay holds every gap; the first bucket (10 ms) none.
    assert value(samples, f"{per_chunk}_bucket", le="0.01") == 0
    assert value(samples, f"{per_chunk}_bucket", le="+Inf") == CHUNKS - 1
    # Usage as the echo engine counts it: characters of the prompt and of the answer.
    prompts = len("hello") + len("again") + len("streamed")
    assert value(samples, "apex_server_tokens_total", gen_ai_token_type="input", **chat) == prompts
    assert value(samples, "apex_server_tokens_total", gen_ai_token_type="output") == (
        3 * CHUNKS * CHUNK_SIZE
    )
    # No queue in front of an engine that answers everything at once.
    assert not [name for name, _, _ in samples if name.startswith("apex_server_queue")]


def test_queue_depth_refusals_and_calls_in_flight(metered, auth) -> None:
    server, stub = metered(echo_concurrency=1, queue_size=0, echo_delay_s=0.05)
    slow = (*auth, ("x-echo-chunks", "40"))
    holder = stub.ChatCompletionStream(ask("hold"), metadata=slow)
    next(holder)  # it holds the engine's one turn for about two seconds
    held = scrape(server.metrics_port)
    assert value(held, "apex_server_queue_running") == 1
    assert value(held, "apex_server_queue_waiting") == 0
    assert value(held, "apex_server_calls_in_flight") == 1
    assert value(held, "gen_ai_server_time_to_first_token_seconds_count") == 1

    with pytest.raises(grpc.RpcError) as refused:
        stub.ChatCompletion(ask("no room"), metadata=auth)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    holder.cancel()
    deadline = time.monotonic() + 10
    while value(samples := scrape(server.metrics_port), "apex_server_calls_in_flight"):
        assert time.monotonic() < deadline, "the cancelled stream is still in flight"
        time.sleep(0.05)

    assert value(samples, "apex_server_queue_refused_total") == 1
    assert value(samples, "apex_server_queue_running") == 0
    assert calls(samples, "ChatCompletion", RESOURCE_EXHAUSTED) == 1
    assert calls(samples, "ChatCompletionStream", "1") == 1  # CANCELLED
    duration = "gen_ai_server_request_duration_seconds_count"
    assert value(samples, duration, error_type="RESOURCE_EXHAUSTED") == 1
    assert value(samples, duration, error_type="CANCELLED") == 1


def test_each_server_has_its_own_registry(metered, auth) -> None:
    first, first_stub = metered()
    second, _ = metered()
    assert first.metrics_port != second.metrics_port
    first_stub.ChatCompletion(ask("only here"), metadata=auth)
    assert calls(scrape(first.metrics_port), "ChatCompletion", OK) == 1
    assert not [n for n, _, _ in scrape(second.metrics_port) if n.startswith("rpc_server_")]


def test_metrics_stop_with_the_server_and_a_busy_port_fails_start(metered) -> None:
    server, _ = metered()
    port = server.metrics_port
    with pytest.raises(OSError, match=rf"metrics_port: cannot listen on 127\.0\.0\.1:{port} "):
        metered(metrics_port=port)
    server.stop()
    with pytest.raises(OSError):  # connection refused: nothing listens any more
        scrape(port)


def test_without_metrics_port_prometheus_client_is_never_imported(tmp_path, api_key) -> None:
    script = f"""
import sys
from apex_grpc_server import ServerConfig, run_server
config = ServerConfig(port=0, engine="echo", api_keys={{{api_key!r}}}, data_dir={str(tmp_path)!r})
with run_server(config) as server:
    import grpc
    from apex_grpc_proto.apex.v1 import apex_pb2 as pb, apex_pb2_grpc as pb_grpc
    with grpc.insecure_channel(server.target) as channel:
        stub = pb_grpc.ApexServiceStub(channel)
        stub.ChatCompletion(
            pb.ChatCompletionRequest(messages=[pb.ChatMessage(role="user", content="hi")]),
            metadata=(("authorization", "Bearer {api_key}"),),
        )
    assert server.metrics_port is None
print(sorted(name for name in sys.modules if name.startswith("prometheus")))
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"


def test_serve_metrics_port_logs_where_to_scrape(tmp_path: Path) -> None:
    port_file = tmp_path / "port"
    proc = subprocess.Popen(
        [
            sys.executable,
            *("-m", "apex_grpc.cli", "serve", "--engine", "echo", "--allow-any-key"),
            *("--port", "0", "--port-file", str(port_file), "--metrics-port", "0"),
            *("--data-dir", str(tmp_path / "data"), "--no-default-corpus"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "APEX_GRPC_METRICS_PORT": "1"},  # the flag wins
    )
    try:
        assert proc.stderr is not None
        line = ""
        deadline = time.monotonic() + 30
        while "serving apex.v1.ApexService" not in line:
            assert time.monotonic() < deadline and proc.poll() is None, line
            line = proc.stderr.readline()
        found = re.search(r", metrics on http://127\.0\.0\.1:(\d+)/metrics$", line.rstrip())
        assert found, line
        assert value(scrape(int(found.group(1))), "apex_server_calls_in_flight") == 0
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    assert proc.returncode == 0


def test_metrics_flags_environment_and_checks(monkeypatch, capsys) -> None:
    from apex_grpc_server import ServerConfig
    from apex_grpc_server import cli as _cli

    def parse(*argv: str) -> ServerConfig:
        parser = argparse.ArgumentParser()
        _cli.add_serve_arguments(parser)
        return _cli.config_from_args(parser.parse_args(argv))

    assert (parse().metrics_port, parse().metrics_host) == (None, "127.0.0.1")  # off
    monkeypatch.setenv("APEX_GRPC_METRICS_PORT", "9464")
    monkeypatch.setenv("APEX_GRPC_METRICS_HOST", "0.0.0.0")
    assert (parse().metrics_port, parse().metrics_host) == (9464, "0.0.0.0")
    assert parse("--metrics-port", "0", "--metrics-host", "::1").metrics_port == 0
    monkeypatch.setenv("APEX_GRPC_METRICS_PORT", "ninety")
    with pytest.raises(SystemExit):
        parse()
    assert "--metrics-port: invalid int value: 'ninety'" in capsys.readouterr().err
    config = ServerConfig(metrics_port=70000, allow_any_key=True)
    with pytest.raises(ValueError, match=r"^metrics_port: must be in \[0, 65535\], got 70000$"):
        config.validate()


def test_continued_answers_are_counted(metered, auth) -> None:
    server, stub = metered()
    list(stub.ChatCompletionStream(ask("fresh"), metadata=auth))
    continuation = ask("streamed")
    continuation.messages.add(role="assistant", content="streamed")
    resume = (*auth, ("x-apex-continue", "1"))
    rest = list(stub.ChatCompletionStream(continuation, metadata=resume))
    assert "".join(c.choices[0].delta.content for c in rest) == "streamed" * 3
    stub.ChatCompletion(continuation, metadata=resume)
    samples = scrape(server.metrics_port)
    assert value(samples, "apex_server_continuations_total", gen_ai_request_model="echo") == 2
