"""A real ApexService on loopback that records what it saw and plays scripted failures.

For tests that must see the wire from the server's side (metadata, deadlines,
cancellations, attempt counts) or need exact control of status codes. Every
one of the 16 RPCs is served (unary ones answer an empty response of the
right type), so reachability tests cover the whole service.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio

from apex_grpc import _methods
from apex_grpc_proto.apex.v1 import apex_pb2 as pb

from ._background_server import BackgroundServer


@dataclass
class Seen:
    method: str
    metadata: dict[str, str | bytes]
    time_remaining: float | None
    request: Any
    at: float


@dataclass
class Failure:
    code: grpc.StatusCode
    details: str = "scripted failure"
    trailing: tuple[tuple[str, str | bytes], ...] = ()


@dataclass
class StreamScript:
    chunks: int = 5
    delay: float = 0.0
    first_delay: float = 0.0
    fail_after: int | None = None
    failure: Failure = field(default_factory=lambda: Failure(grpc.StatusCode.INTERNAL, "broke"))
    continues: bool = False
    """Honour ``x-apex-continue``: send only the chunks after the final assistant message's
    text (its own id "s2", a role on its first chunk), saying so in its headers; a
    continuation fails after `continuation_fail_after` of its chunks (None: never)."""
    continuation_fail_after: int | None = None


class ScriptedServer(BackgroundServer):
    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.failures: dict[str, deque[Failure]] = defaultdict(deque)
        self.cancelled: list[str] = []
        self.finished: list[tuple[str, str]] = []
        self.stream = StreamScript()
        self.unary_delay = 0.0
        self.responders: dict[str, Callable[[Any], Any]] = {}
        super().__init__(
            options=[
                ("grpc.max_receive_message_length", 64 * 1024 * 1024),
                ("grpc.max_send_message_length", 64 * 1024 * 1024),
            ]
        )

    # test API

    def reset(self) -> None:
        self.seen.clear()
        self.failures.clear()
        self.cancelled.clear()
        self.finished.clear()
        self.stream = StreamScript()
        self.unary_delay = 0.0
        self.responders.clear()

    def fail(self, method: str, *failures: Failure) -> None:
        self.failures[method].extend(failures)

    def calls(self, method: str) -> list[Seen]:
        return [s for s in self.seen if s.method == method]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.01)
        return predicate()

    # server

    def _handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        handlers = {}
        for method in _methods.ALL_METHODS:
            if method.server_streaming:
                handlers[method.name] = grpc.unary_stream_rpc_method_handler(
                    self._stream_handler(method.name),
                    request_deserializer=method.request_type.FromString,
                    response_serializer=method.response_type.SerializeToString,
                )
            else:
                handlers[method.name] = grpc.unary_unary_rpc_method_handler(
                    self._unary_handler(method),
                    request_deserializer=method.request_type.FromString,
                    # Dynamic dispatch, so a responder can send raw bytes.
                    response_serializer=lambda message: message.SerializeToString(),
                )
        return handlers

    def _record(self, name: str, request: Any, context: grpc.aio.ServicerContext) -> None:
        self.seen.append(
            Seen(
                name,
                dict(context.invocation_metadata() or ()),
                context.time_remaining(),
                request,
                time.monotonic(),
            )
        )

    async def _maybe_fail(self, name: str, context: grpc.aio.ServicerContext) -> None:
        queue = self.failures.get(name)
        if queue:
            failure = queue.popleft()
            await context.send_initial_metadata((("x-request-id", f"req-{len(self.seen)}"),))
            if failure.trailing:
                context.set_trailing_metadata(failure.trailing)
            await context.abort(failure.code, failure.details)

    def _unary_handler(self, method: _methods.Method[Any, Any]) -> Any:
        async def handle(request: Any, context: grpc.aio.ServicerContext) -> Any:
            self._record(method.name, request, context)
            await self._maybe_fail(method.name, context)
            if self.unary_delay:
                try:
                    await asyncio.sleep(self.unary_delay)
                except asyncio.CancelledError:
                    # aio's context.cancelled() stays False in done callbacks; the
                    # handler's CancelledError is how a server sees a cancellation.
                    self.cancelled.append(method.name)
                    raise
            await context.send_initial_metadata((("x-request-id", f"req-{len(self.seen)}"),))
            responder = self.responders.get(method.name)
            if responder is not None:
                return responder(request)
            if method.name == "ChatCompletion":
                text = request.messages[-1].content if request.messages else ""
                return pb.ChatCompletionResponse(
                    id="c1",
                    choices=[
                        pb.Choice(message=pb.ChatCompletionMessage(role="assistant", content=text))
                    ],
                )
            return method.response_type()

        return handle

    def _stream_handler(self, name: str) -> Any:
        async def handle(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            try:
                async for chunk in produce(request, context):
                    yield chunk
            except (asyncio.CancelledError, GeneratorExit):
                # A cancel that lands while grpc.aio awaits a write cancels grpc's task,
                # not this generator, which only sees GeneratorExit when it is closed.
                self.cancelled.append(name)
                raise

        async def produce(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            self._record(name, request, context)
            await self._maybe_fail(name, context)
            script = self.stream
            headers: tuple[tuple[str, str], ...] = (("x-request-id", f"req-{len(self.seen)}"),)
            start, fail_after, ident = 0, script.fail_after, "s1"
            if script.continues and self.seen[-1].metadata.get("x-apex-continue") == "1":
                prefix = request.messages[-1].content
                while prefix.startswith(f"c{start} "):
                    prefix = prefix[len(f"c{start} ") :]
                    start += 1
                headers += (("x-apex-continue", "1"),)
                ident = "s2"
                fail_after = script.continuation_fail_after
                fail_after = None if fail_after is None else start + fail_after
            await context.send_initial_metadata(headers)
            if script.first_delay:
                await asyncio.sleep(script.first_delay)
            for i in range(start, script.chunks):
                if fail_after is not None and i == fail_after:
                    await context.abort(script.failure.code, script.failure.details)
                if script.delay and i:
                    await asyncio.sleep(script.delay)
                yield pb.ChatCompletionChunkResponse(
                    id=ident,
                    choices=[
                        pb.ChunkChoice(
                            delta=pb.ChoiceDelta(
                                content=f"c{i} ", role="assistant" if i == start else ""
                            ),
                            finish_reason="stop" if i == script.chunks - 1 else "",
                        )
                    ],
                )
            context.set_trailing_metadata((("x-chunks-sent", str(script.chunks)),))
            self.finished.append((name, "OK"))

        return handle
