"""Ctrl-C (SIGINT) while ``apex-grpc chat`` streams: the RPC is cancelled, the exit status is 130.

The server runs in its own process and logs one line per call with the
status it saw, so the cancellation is observed where it matters.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable

from ._helpers import CLI, ROOT, client_env
from .conftest import Served

SLOW_STREAM = ("--echo-chunks=400", "--echo-delay=0.05")  # 20 s if nobody stops it
STREAM_CANCELLED = "/apex.v1.ApexService/ChatCompletionStream CANCELLED"


def start_chat(server: Served, api_key: str, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*CLI, "chat", *args],
        env=client_env(server.target, api_key),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )


def test_ctrl_c_cancels_the_stream_and_exits_130(
    served: Callable[..., Served], api_key: str
) -> None:
    server = served(*SLOW_STREAM)
    chat = start_chat(server, api_key, "count", "to", "a", "million")
    assert chat.stdout is not None
    first = chat.stdout.read1(64)  # the stream is under way
    assert first.startswith(b"count to")
    chat.send_signal(signal.SIGINT)
    sent = time.monotonic()
    out, err = chat.communicate(timeout=15)
    assert chat.returncode == 130
    assert time.monotonic() - sent < 5  # the stream alone would run for 20 s
    assert err == b"", err.decode()  # no traceback, no noise
    assert len(first + out) < 400 * 16 // 4  # it stopped early
    server.wait_for_log(STREAM_CANCELLED)
    assert server.process.poll() is None, "the server died: " + server.log()


def test_ctrl_c_in_interactive_mode_cancels_only_the_answer(
    served: Callable[..., Served], api_key: str
) -> None:
    server = served(*SLOW_STREAM)
    chat = start_chat(server, api_key, "-i", "--max-retries=0")
    assert chat.stdin is not None and chat.stdout is not None
    chat.stdin.write(b"first question\n")
    chat.stdin.flush()
    assert chat.stdout.read1(64).startswith(b"first question")
    chat.send_signal(signal.SIGINT)
    server.wait_for_log(STREAM_CANCELLED)
    # The conversation goes on; EOF then ends it normally.
    out, err = chat.communicate(timeout=15)
    assert chat.returncode == 0
    assert err.decode() == "(answer cancelled)\n"
    assert len(out) < 400 * 16 // 4  # the answer stopped early
    assert server.process.poll() is None, "the server died: " + server.log()


def test_ctrl_c_while_watching_research_says_how_to_resume(cli_env: dict[str, str]) -> None:
    # x-echo-sleep-ms holds every call on the server for 2 s: the submit, then each poll.
    watch = subprocess.Popen(
        [*CLI, "--metadata", "x-echo-sleep-ms=2000", "research", "What is Bittensor?"],
        env=cli_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    assert watch.stderr is not None
    submitted = watch.stderr.readline().decode()
    assert submitted.startswith("submitted deep-research job ")
    job_id = submitted.split()[-1]
    time.sleep(0.3)  # now inside the first poll
    watch.send_signal(signal.SIGINT)
    out, err = watch.communicate(timeout=15)
    assert watch.returncode == 130
    assert out == b""
    resume = f"apex-grpc research --job {job_id}"
    assert err.decode() == f"stopped watching; job {job_id} keeps running (resume: {resume})\n"
