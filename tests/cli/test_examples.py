"""The realistic example programs in examples/, each run as a subprocess against real servers."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from typing import Any

from ._helpers import ROOT, Result, client_env, run
from .conftest import Served


def example(name: str, *args: str, env: dict[str, str]) -> Result:
    return run([sys.executable, str(ROOT / "examples" / name), *args], env, timeout=120)


def test_streaming_consumer_stops_early_and_cancels(
    served: Callable[..., Served], api_key: str
) -> None:
    server = served("--no-default-corpus", "--echo-chunks=1000", "--echo-delay=0.01")
    result = example(
        "streaming_consumer.py",
        "hello",
        "--max-chars",
        "100",
        env=client_env(server.target, api_key),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("hellohello")
    assert 100 <= len(result.stdout.strip()) < 200  # not the 16,000 the server would send
    assert re.fullmatch(
        r"\d+ chunks, \d+ characters, first token after \d+ ms, [\d.]+ s in all:"
        r" stopped early, RPC cancelled\n",
        result.stderr,
    )
    server.wait_for_log("/apex.v1.ApexService/ChatCompletionStream CANCELLED")


def test_streaming_consumer_reads_a_short_answer_to_the_end(cli_env: dict[str, str]) -> None:
    result = example("streaming_consumer.py", "short", env=cli_env)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.strip()) == 8 * 16  # the echo engine's whole answer
    assert result.stderr.startswith("8 chunks, 128 characters")
    assert result.stderr.endswith(": answer complete\n")


def test_async_batch(cli_env: dict[str, str]) -> None:
    result = example("async_batch.py", "--count", "50", "--concurrency", "10", env=cli_env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert re.fullmatch(
        r"50/50 completions in [\d.]+ s \([\d.]+/s, \d+ tokens/s\) with 10 in flight", lines[0]
    )
    assert lines[1].startswith("latency: median ")


def test_async_batch_counts_failures(cli_env: dict[str, str]) -> None:
    env = {**cli_env, "APEX_API_KEY": "not-the-key"}
    result = example("async_batch.py", "--count", "5", env=env)
    assert result.returncode == 1
    assert result.stdout.startswith("0/5 completions")
    assert result.stderr.count("failed: AuthenticationError: UNAUTHENTICATED") == 5


def test_load_balanced_service_spreads_calls(
    start_server: Callable[..., Any], api_key: str
) -> None:
    # Two backends that answer differently (8 vs 16 characters), so the output shows who served.
    one = start_server(echo_chunks=1, echo_chunk_size=8)
    two = start_server(echo_chunks=2, echo_chunk_size=8)
    result = example(
        "load_balanced_service.py",
        "--backends",
        f"{one.target},{two.target}",
        "--requests",
        "20",
        env=client_env("", api_key),
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    served_by = [
        re.match(r"request \d+: (\d+) characters from echo, ", line) for line in lines[:20]
    ]
    assert all(served_by), result.stdout
    sizes = [int(m.group(1)) for m in served_by if m]
    assert sorted(set(sizes)) == [8, 16]  # both backends answered
    assert min(sizes.count(8), sizes.count(16)) >= 5  # round robin, not a trickle
    assert lines[20].startswith(f"20 requests through ipv4:{one.target},{two.target}")


def test_fleet_drains_one_replica_and_kills_another_losing_nothing(local_postgres: Any) -> None:
    url = local_postgres.create_database("fleet_example")
    result = run(
        [sys.executable, str(ROOT / "examples" / "fleet"), "--database", url,
         "--seconds", "4", "--workers", "16"],
        client_env("", None),
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert out.startswith("3 replicas on one PostgreSQL: ipv4:127.0.0.1:")
    assert re.search(r"t=[\d.]+s  SIGTERM replica-0 \(drains\)", out)
    assert re.search(r"t=[\d.]+s  SIGKILL replica-1", out)
    for kind in ("list", "store", "stream", "unary"):
        assert re.search(rf"^ +\d+  {kind}: answered$", out, re.M), out
    assert "FAILED" not in out
    assert "replica-0 (SIGTERM) exited with status 0" in out
    stored = re.search(
        r"stored chats: (\d+) acknowledged, (\d+) listed after the faults, 0 lost", out
    )
    assert stored is not None and stored.group(1) == stored.group(2) != "0", out
    assert out.rstrip().endswith("nothing lost")
