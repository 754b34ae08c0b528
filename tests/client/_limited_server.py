"""A real ApexService on loopback with a per-connection stream limit, as production front ends have.

grpc.aio refuses streams past ``grpc.max_concurrent_streams`` (RST_STREAM
REFUSED_STREAM) when they arrive before the client knows the limit, and the
client queues them after. The server records, per client connection (the
peer's address and port), how many calls it served at once, so tests can see
how a client spread its calls.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from typing import Any

import grpc
import grpc.aio

from apex_grpc import _methods
from apex_grpc_proto.apex.v1 import apex_pb2 as pb


class LimitedServer:
    """ChatCompletion answers after `delay` seconds; ChatCompletionStream sends `chunks`."""

    def __init__(self, max_streams: int, delay: float = 0.3, chunks: int = 3) -> None:
        self.max_streams = max_streams
        self.delay = delay
        self.chunks = chunks
        self.active: collections.Counter[str] = collections.Counter()
        self.peak: collections.Counter[str] = collections.Counter()
        self.deadlines: list[float | None] = []
        self.cancelled = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.port = 0

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def connections(self) -> int:
        """How many client connections made calls."""
        return len(self.peak)

    def __enter__(self) -> LimitedServer:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._server.stop(0), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._ready.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        self._server = grpc.aio.server(options=[("grpc.max_concurrent_streams", self.max_streams)])
        handlers = {
            "ChatCompletion": grpc.unary_unary_rpc_method_handler(
                self._unary,
                request_deserializer=pb.ChatCompletionRequest.FromString,
                response_serializer=pb.ChatCompletionResponse.SerializeToString,
            ),
            "ChatCompletionStream": grpc.unary_stream_rpc_method_handler(
                self._stream,
                request_deserializer=pb.ChatCompletionRequest.FromString,
                response_serializer=pb.ChatCompletionChunkResponse.SerializeToString,
            ),
        }
        self._server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(_methods.SERVICE, handlers),)
        )
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        await self._server.start()

    def _enter(self, context: grpc.aio.ServicerContext[Any, Any]) -> str:
        peer = context.peer()  # read first: grpc.aio can crash on peer() after a cancel
        self.deadlines.append(context.time_remaining())
        self.active[peer] += 1
        self.peak[peer] = max(self.peak[peer], self.active[peer])
        return peer

    async def _unary(
        self, request: pb.ChatCompletionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ChatCompletionResponse:
        peer = self._enter(context)
        try:
            await asyncio.sleep(self.delay)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.active[peer] -= 1
        text = request.messages[-1].content
        return pb.ChatCompletionResponse(
            choices=[pb.Choice(message=pb.ChatCompletionMessage(role="assistant", content=text))]
        )

    async def _stream(
        self, request: pb.ChatCompletionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> Any:
        peer = self._enter(context)
        try:
            for index in range(self.chunks):
                await asyncio.sleep(self.delay / self.chunks)
                delta = pb.ChoiceDelta(content=f"{request.messages[-1].content}:{index} ")
                yield pb.ChatCompletionChunkResponse(choices=[pb.ChunkChoice(delta=delta)])
        except (asyncio.CancelledError, GeneratorExit):
            self.cancelled += 1
            raise
        finally:
            self.active[peer] -= 1
