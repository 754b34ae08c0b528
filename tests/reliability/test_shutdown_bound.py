"""SIGTERM keeps its promise: the process is gone within drain delay + grace period.

A real server process, 200 streams whose reader stopped reading (a client process
that opened them, then was stopped with SIGSTOP: its TCP window closes and the
server's writes cannot flush), and a client that keeps sending new calls while the
server stops (each is turned away, which once added up to 2 s to the stop).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import grpc

from apex_grpc_proto.apex.v1 import apex_pb2 as pb
from apex_grpc_proto.apex.v1 import apex_pb2_grpc as pb_grpc

from ._process import KEY

DRAIN_S = 1.0
GRACE_S = 2.0
TOLERANCE_S = 1.5
"""Past drain + grace: closing the store, engine and index, and the interpreter's exit,
on a 2-core machine shared with other work (about 0.1-0.3 s when idle)."""

STALLED_READERS = """
import asyncio, sys
import grpc
from apex_grpc_proto.apex.v1 import apex_pb2 as pb, apex_pb2_grpc as pb_grpc

async def main(target, key, count):
    channels = [grpc.aio.insecure_channel(target) for _ in range(4)]
    metadata = (("authorization", f"Bearer {key}"), ("x-echo-chunks", "4000"))
    request = pb.ChatCompletionRequest(messages=[pb.ChatMessage(role="user", content="x" * 64)])
    calls = [
        pb_grpc.ApexServiceStub(channels[i % 4]).ChatCompletionStream(request, metadata=metadata)
        for i in range(count)
    ]
    await asyncio.gather(*(call.initial_metadata() for call in calls))
    print("streaming", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


def test_sigterm_with_stalled_readers_and_new_calls_exits_within_drain_and_grace(
    server_process: Any,
) -> None:
    server = server_process(
        "--drain-delay", str(DRAIN_S), "--grace-period", str(GRACE_S), "--echo-chunk-size", "64"
    )
    readers = subprocess.Popen(
        [sys.executable, "-c", STALLED_READERS, server.target, KEY, "200"],
        stdout=subprocess.PIPE,
    )
    stop = threading.Event()

    def keep_calling() -> None:
        with grpc.insecure_channel(server.target) as channel:
            stub = pb_grpc.ApexServiceStub(channel)
            auth = (("authorization", f"Bearer {KEY}"),)
            while not stop.is_set():
                try:
                    stub.GetChatSessions(pb.GetChatSessionsRequest(), metadata=auth, timeout=1)
                except grpc.RpcError:
                    time.sleep(0.05)  # turned away (UNAVAILABLE), or the server is gone

    caller = threading.Thread(target=keep_calling, daemon=True)
    try:
        assert readers.stdout is not None
        assert readers.stdout.readline().strip() == b"streaming"
        os.kill(readers.pid, signal.SIGSTOP)  # the readers stop reading, mid-answer
        time.sleep(0.5)  # the server's sends fill both sides' buffers
        caller.start()
        assert server.process is not None
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(30)
        took = time.monotonic() - started
    finally:
        stop.set()
        readers.kill()
        readers.wait()
    assert took < DRAIN_S + GRACE_S + TOLERANCE_S, server.log()[-2000:]
    assert server.process.returncode == 0  # on time by itself, not by the watchdog


def test_the_exit_watchdog_ends_a_process_that_does_not_stop() -> None:
    # What holds a stop past its bound is not ours to choose: a process that sleeps stands in.
    hangs = (
        "import time; from apex_grpc_server._runtime.shutdown import exit_watchdog;"
        " exit_watchdog(0.5); time.sleep(30)"
    )
    started = time.monotonic()
    ended = subprocess.run([sys.executable, "-c", hangs], capture_output=True, timeout=30)
    assert ended.returncode == 3  # FORCED_EXIT_CODE
    assert time.monotonic() - started < 0.5 + 5.0  # the interpreter's start included
    assert b"did not stop within 0.5 s" in ended.stderr
