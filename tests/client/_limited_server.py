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
from typing import Any

import grpc
import grpc.aio

from apex_grpc_proto.apex.v1 import apex_pb2 as pb

from ._background_server import BackgroundServer


class LimitedServer(BackgroundServer):
    """ChatCompletion answers after `delay` seconds; ChatCompletionStream sends `chunks`."""

    def __init__(self, max_streams: int, delay: float = 0.3, chunks: int = 3) -> None:
        self.max_streams = max_streams
        self.delay = delay
        self.chunks = chunks
        self.active: collections.Counter[str] = collections.Counter()
        self.peak: collections.Counter[str] = collections.Counter()
        self.deadlines: list[float | None] = []
        self.cancelled = 0
        super().__init__(options=[("grpc.max_concurrent_streams", max_streams)])

    @property
    def connections(self) -> int:
        """How many client connections made calls."""
        return len(self.peak)

    def _handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        return {
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
