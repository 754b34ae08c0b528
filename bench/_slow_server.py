"""A production-like server for the burst rows: slow calls, 100 streams per connection.

Built only from the published stubs (apex_pb2_grpc), as a user's own server
or a front end would be, and run in a process of its own. It is the one
hand-written apex.v1 server left outside ``apex_grpc.testing`` (the tests use
``FakeApex(max_concurrent_streams=...)``): the burst rows time 1,000 calls
against it, so it does no more per call than a server must. The fake records
every call, its metadata and deadline, and routes it under a lock: about 50 us
more server CPU per call (240 against 190 us, 2,000 unary calls 200 at a time
on 2 busy cores). Run as
``python -m bench._slow_server LIMIT CALL_SECONDS CHUNKS``. ChatCompletion
answers after CALL_SECONDS; ChatCompletionStream sends CHUNKS chunks spread
over CALL_SECONDS. grpc.aio advertises MAX_CONCURRENT_STREAMS = LIMIT on each
connection, and refuses streams past it (REFUSED_STREAM) that a client sends
before it has read the server's settings.

It prints its port, then answers one command per stdin line: ``report``
prints, as JSON, the distinct client connections (peer address and port)
that made calls since the last report, the calls, and when the first and
last calls started and the last one ended. EOF stops it.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import grpc
import grpc.aio

from apex_grpc_proto.apex.v1 import apex_pb2 as pb
from apex_grpc_proto.apex.v1 import apex_pb2_grpc as pbg

from ._server import server_process


def answer_text(prompt: str) -> str:
    """The unary answer to `prompt` (clients check every answer against it)."""
    return f"answer to {prompt}"


def chunk_text(prompt: str, index: int) -> str:
    """Chunk `index` of the streamed answer to `prompt`."""
    return f"{prompt}:{index};"


class SlowService(pbg.ApexServiceServicer):
    """Chat completions that take `call_s` seconds; records each call's connection and times."""

    def __init__(self, call_s: float, chunks: int) -> None:
        self.call_s = call_s
        self.chunks = chunks
        self.calls_by_peer: Counter[str] = Counter()
        self.started: list[float] = []
        self.ended: list[float] = []

    def begin(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        """Record a call's connection and start (before any await: grpc.aio may fail on
        peer() once a call is cancelled)."""
        self.calls_by_peer[context.peer()] += 1
        self.started.append(time.monotonic())

    def report(self) -> dict[str, float]:
        """What was served since the last report; times are time.monotonic() (system-wide)."""
        peers, started, ended = self.calls_by_peer, self.started, self.ended
        self.calls_by_peer, self.started, self.ended = Counter(), [], []
        return {
            "connections": len(peers),
            "calls": sum(peers.values()),
            "first_started": min(started, default=0.0),
            "last_started": max(started, default=0.0),
            "last_ended": max(ended, default=0.0),
        }

    async def ChatCompletion(
        self, request: pb.ChatCompletionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ChatCompletionResponse:
        self.begin(context)
        await asyncio.sleep(self.call_s)
        message = pb.ChatCompletionMessage(
            role="assistant", content=answer_text(request.messages[-1].content)
        )
        self.ended.append(time.monotonic())
        return pb.ChatCompletionResponse(
            id="burst", choices=[pb.Choice(index=0, finish_reason="stop", message=message)]
        )

    async def ChatCompletionStream(
        self, request: pb.ChatCompletionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.ChatCompletionChunkResponse]:
        self.begin(context)
        prompt = request.messages[-1].content
        for index in range(self.chunks):
            await asyncio.sleep(self.call_s / self.chunks)
            last = index == self.chunks - 1
            choice = pb.ChunkChoice(
                index=0,
                delta=pb.ChoiceDelta(content=chunk_text(prompt, index)),
                finish_reason="stop" if last else "",
            )
            yield pb.ChatCompletionChunkResponse(id="burst", choices=[choice])
        self.ended.append(time.monotonic())


async def serve(limit: int, call_s: float, chunks: int) -> None:
    """Serve until stdin closes, answering `report` commands."""
    service = SlowService(call_s, chunks)
    server = grpc.aio.server(options=[("grpc.max_concurrent_streams", limit)])
    pbg.add_ApexServiceServicer_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(port, flush=True)
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        if line.strip() == "report":
            print(json.dumps(service.report()), flush=True)
    await server.stop(1)


class SlowServer:
    """The parent's handle on a running slow server process."""

    def __init__(self, process: subprocess.Popen[str], port: int) -> None:
        self._process = process
        self.target = f"127.0.0.1:{port}"

    def report(self) -> dict[str, float]:
        """What the server served since the last report (see SlowService.report)."""
        assert self._process.stdin is not None
        assert self._process.stdout is not None
        self._process.stdin.write("report\n")
        self._process.stdin.flush()
        return dict(json.loads(self._process.stdout.readline()))


@contextmanager
def slow_server(limit: int, call_s: float, chunks: int) -> Iterator[SlowServer]:
    """Start the slow server in its own process; stops it on exit."""
    argv = ["-m", "bench._slow_server", str(limit), str(call_s), str(chunks)]
    with server_process(argv) as (process, port):
        yield SlowServer(process, port)


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])))
