"""`python -m bench --quick` runs end to end (a smoke test: no thresholds on shared CI)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(300)
def test_quick_benchmark_runs_and_verifies_answers() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    for scenario in (
        "sync unary chat.completions.create",
        "sync streaming, 100 chunks/stream",
        "async unary, 64 in flight",
        "async streaming, 64 concurrent streams",
        "time to first chunk, added over raw with apex-grpc's channel options",
        "time to first chunk, added over raw with grpc's defaults",
        "web_search.search unary",
        "import apex_grpc",
        "open streams",
        "concurrent 0.2 s async streams through one cold AsyncApexClient",
        "concurrent 0.2 s async unary calls through one cold AsyncApexClient",
        "concurrent 0.2 s sync streams on as many threads",
        "client CPU per sequential unary call",
        "calling thread's CPU per call, otel extra installed but not instrumented",
        "calling thread's CPU per call, instrumented (in-memory span exporter and metric reader)",
        "sequential unary calls over TLS",
        "unary calls/s against 3 replicas over 1",
        "SIGTERM of 1 of 3 replicas",
        "SIGKILL of 1 of 3 replicas",
        "unauthenticated calls",
        "concurrent streams on --echo-concurrency 2",
        "stored chat create (CreateChatAndCompletion), PostgreSQL vs SQLite",
        "stored chat list (GetChatSessions), PostgreSQL vs SQLite",
        "HTTP face: Connect binary unary calls/s vs gRPC, same server",
        "HTTP face: Connect json unary calls/s vs gRPC, same server",
        "HTTP face: stream time to first chunk, Connect binary minus gRPC",
        "HTTP face: its cost to a gRPC call when idle",
    ):
        assert scenario in out.stdout, scenario
    # Each burst row says what the raw stub on connections made in advance took (the floor).
    assert out.stdout.count("the floor, which no cold client reaches") == 3
