"""Chat completions on the configured engine: its queue, time budgets, size limits, wire shapes."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncGenerator

import grpc

from apex_grpc_proto.apex.v1 import apex_pb2 as pb
from apex_grpc_server._chat.queue import EngineQueue
from apex_grpc_server._engines import ChatEngine, ChatRequest, Delta, EchoEngine, Finish
from apex_grpc_server._engines.base import CONTEXT_TOKENS_KEY
from apex_grpc_server._metrics.recorder import NO_METRICS, Metrics
from apex_grpc_server._status import MetadataPairs, RpcAbort
from apex_grpc_server._wire import convert as _convert
from apex_grpc_server._wire.fault_injection import Knobs
from apex_grpc_server._wire.validation import ChatCall


class ChatCompletions:
    """Runs chat requests on one engine and shapes the answers as apex.v1 messages.

    An engine with limited ``concurrency`` gets a queue of ``queue_size``
    places in front of it (``_queue.EngineQueue``); every completion, streamed,
    unary, stored or deep research, takes its turn there. ChatCompletion and
    ChatCompletionStream are timed on ``metrics`` (stored and research answers
    are parts of other operations).
    """

    def __init__(
        self,
        engine: ChatEngine,
        *,
        max_message_bytes: int,
        queue_size: int,
        metrics: Metrics = NO_METRICS,
    ) -> None:
        self.engine = engine
        self.max_message_bytes = max_message_bytes
        self.metrics = metrics
        self.queue = (
            None
            if engine.concurrency is None
            else EngineQueue(
                engine.concurrency,
                queue_size,
                name=f"{engine.kind} engine",
                expected_turn_s=engine.expected_turn_s,
            )
        )
        if self.queue is not None:
            metrics.watch_queue(self.queue)

    def context_metadata(self) -> MetadataPairs:
        """``x-apex-context-tokens`` for the trailing metadata of chat calls (if known)."""
        tokens = self.engine.context_tokens
        return () if tokens is None else ((CONTEXT_TOKENS_KEY, str(tokens)),)

    def engine_for(self, knobs: Knobs | None) -> ChatEngine:
        """The engine, with the x-echo-chunks/-chunk-size(s)/-delay-ms overrides applied."""
        overrides = (
            (knobs.echo_chunks, knobs.echo_chunk_size, knobs.echo_delay_s, knobs.echo_chunk_sizes)
            if knobs
            else ()
        )
        if isinstance(self.engine, EchoEngine) and any(v is not None for v in overrides):
            return self.engine.with_overrides(*overrides)
        return self.engine

    async def deltas(
        self, request: ChatRequest, timeout_s: float | None, knobs: Knobs | None = None
    ) -> AsyncGenerator[Delta, None]:
        """The engine's deltas, ending in DEADLINE_EXCEEDED past ``timeout_s``.

        The time waiting in the queue counts against ``timeout_s``. Close the
        generator (``contextlib.aclosing``) to give the engine's turn back.
        """
        engine = self.engine_for(knobs)
        started = asyncio.get_running_loop().time()
        turn = self.queue.turn(timeout_s) if self.queue else contextlib.nullcontext()
        async with turn, contextlib.aclosing(engine.stream(request)) as stream:
            if timeout_s is None:
                async for delta in stream:
                    yield delta
                return
            deadline = started + timeout_s
            while True:
                try:
                    async with asyncio.timeout_at(deadline):
                        delta = await anext(stream)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    raise RpcAbort(
                        grpc.StatusCode.DEADLINE_EXCEEDED,
                        f"timeout: the completion took longer than {timeout_s:g} s",
                    ) from None
                yield delta

    async def stream(
        self, chat: ChatCall, knobs: Knobs | None
    ) -> AsyncGenerator[pb.ChatCompletionChunkResponse, None]:
        """ChatCompletionStream: one chunk per delta; the last carries finish_reason and usage.

        An empty answer is an empty stream. A continuation (``x-apex-continue``) streams
        what follows the answer's prefix, with no role (its first chunks were sent), and
        is counted on `metrics`.
        """
        ident = str(uuid.uuid4())
        created = int(time.time())
        model = self.engine_for(knobs).model
        continuing = chat.request.continue_final
        first = not continuing  # a continuation's chunks follow the first ones: no role
        if continuing:
            self.metrics.continuation(model)
        deltas = self.deltas(chat.request, chat.timeout_s, knobs)
        async with self.metrics.chat(model) as timer, contextlib.aclosing(deltas):
            async for delta in deltas:
                finish = delta.finish
                if finish is not None:
                    timer.usage(finish.usage)
                if first and finish is not None and not delta.text:
                    return
                chunk = pb.ChatCompletionChunkResponse(
                    id=ident,
                    created=created,
                    model=model,
                    object="chat.completion.chunk",
                    choices=[
                        pb.ChunkChoice(
                            index=0,
                            delta=pb.ChoiceDelta(
                                content=delta.text, role="assistant" if first else ""
                            ),
                            finish_reason=finish.reason if finish else "",
                        )
                    ],
                )
                if finish is not None and finish.usage is not None:
                    chunk.usage.CopyFrom(_convert.usage(finish.usage))
                first = False
                timer.chunk()
                yield chunk

    async def text(
        self, request: ChatRequest, timeout_s: float | None, knobs: Knobs | None = None
    ) -> tuple[str, Finish]:
        """The whole answer text and how it finished, bounded by the max message size."""
        parts: list[str] = []
        size = 0
        finish = Finish("stop", None)
        deltas = self.deltas(request, timeout_s, knobs)
        async with contextlib.aclosing(deltas):
            async for delta in deltas:
                parts.append(delta.text)
                size += len(delta.text)
                if size > self.max_message_bytes:
                    raise RpcAbort(
                        grpc.StatusCode.RESOURCE_EXHAUSTED,
                        f"completion: the answer exceeds the {self.max_message_bytes}-byte"
                        " max message size; stream it with ChatCompletionStream",
                    )
                if delta.finish is not None:
                    finish = delta.finish
        return "".join(parts), finish

    async def complete(self, chat: ChatCall, knobs: Knobs | None) -> pb.ChatCompletionResponse:
        """ChatCompletion: the whole answer in choices[0].message (of a continuation: what
        follows its prefix)."""
        model = self.engine_for(knobs).model
        if chat.request.continue_final:
            self.metrics.continuation(model)
        async with self.metrics.chat(model) as timer:
            text, finish = await self.text(chat.request, chat.timeout_s, knobs)
            timer.usage(finish.usage)
        response = pb.ChatCompletionResponse(
            id=str(uuid.uuid4()),
            created=int(time.time()),
            model=model,
            object="chat.completion",
            choices=[
                pb.Choice(
                    index=0,
                    finish_reason=finish.reason,
                    message=pb.ChatCompletionMessage(content=text, role="assistant"),
                )
            ],
        )
        if finish.usage is not None:
            response.usage.CopyFrom(_convert.usage(finish.usage))
        return response
