"""A chat server on loopback with a small context window, as the local model has a large one.

It answers ChatCompletion and ChatCompletionStream like the echo engine
(tokens are characters: prompt_tokens is the length of all messages; the
answer is the last message repeated) and behaves like the local engine at
its limits:

- a prompt longer than `context` tokens is refused with INVALID_ARGUMENT,
  worded as the local engine words it ("the prompt is N tokens, more than
  the local model's M-token context"); with `refusal_headers`, the refusal
  carries ``x-apex-context-tokens`` / ``x-apex-prompt-tokens`` instead, and
  a wording the CLI cannot parse; with `answer_headers`, every answer
  carries ``x-apex-context-tokens`` (what the local server is to send);
- an answer longer than the request's max_new_tokens, or than the server's
  own `cap`, is cut there and ends with finish_reason "length".

The echo engine has no context limit; until it gets one (a knob), this is
the server for the CLI's trimming tests. Every request is recorded.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field

import grpc

from apex_grpc_proto.apex.v1 import apex_pb2 as pb
from apex_grpc_proto.apex.v1 import apex_pb2_grpc

CHUNK_CHARS = 16


@dataclass
class Seen:
    """One chat request: its messages as (role, content), and whether it was refused."""

    messages: list[tuple[str, str]]
    refused: bool

    @property
    def prompt_tokens(self) -> int:
        """What the server counted: the characters of every message."""
        return sum(len(content) for _, content in self.messages)


@dataclass
class ContextServer(apex_pb2_grpc.ApexServiceServicer):
    """``with ContextServer(context=300) as server:`` serves on ``server.target``."""

    context: int = 300
    answer_chars: int = 100
    refusal_headers: bool = False
    answer_headers: bool = False
    cap: int | None = None
    seen: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        apex_pb2_grpc.add_ApexServiceServicer_to_server(self, self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")

    @property
    def target(self) -> str:
        """``127.0.0.1:PORT``."""
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> ContextServer:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop(grace=None)

    def _answer(
        self, request: pb.ChatCompletionRequest, context: grpc.ServicerContext
    ) -> tuple[str, str, int]:
        """The answer, its finish reason and the prompt's tokens; aborts if it does not fit."""
        seen = Seen([(m.role, m.content) for m in request.messages], refused=False)
        self.seen.append(seen)
        prompt_tokens = seen.prompt_tokens
        if prompt_tokens > self.context:
            seen.refused = True
            if self.refusal_headers:
                context.set_trailing_metadata(
                    (
                        ("x-apex-context-tokens", str(self.context)),
                        ("x-apex-prompt-tokens", str(prompt_tokens)),
                    )
                )
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "messages: too long")
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"messages: the prompt is {prompt_tokens} tokens, more than the local model's"
                f" {self.context}-token context",
            )
        if self.answer_headers:
            context.set_trailing_metadata((("x-apex-context-tokens", str(self.context)),))
        last = request.messages[-1].content
        text = (last * (self.answer_chars // len(last) + 1))[: self.answer_chars]
        limits = (request.sampling_parameters.max_new_tokens, self.cap)
        limit = min((n for n in limits if n), default=None)
        if limit and len(text) > limit:
            return text[:limit], "length", prompt_tokens
        return text, "stop", prompt_tokens

    def ChatCompletion(
        self, request: pb.ChatCompletionRequest, context: grpc.ServicerContext
    ) -> pb.ChatCompletionResponse:
        """The whole answer."""
        text, finish, prompt_tokens = self._answer(request, context)
        return pb.ChatCompletionResponse(
            id="context-server",
            object="chat.completion",
            choices=[
                pb.Choice(
                    finish_reason=finish,
                    message=pb.ChatCompletionMessage(role="assistant", content=text),
                )
            ],
            usage=_usage(prompt_tokens, len(text)),
        )

    def ChatCompletionStream(
        self, request: pb.ChatCompletionRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.ChatCompletionChunkResponse]:
        """The answer in chunks of 16 characters; the last has finish_reason and usage."""
        text, finish, prompt_tokens = self._answer(request, context)
        pieces = [text[i : i + CHUNK_CHARS] for i in range(0, len(text), CHUNK_CHARS)]
        for index, piece in enumerate(pieces):
            last = index == len(pieces) - 1
            chunk = pb.ChatCompletionChunkResponse(
                id="context-server",
                object="chat.completion.chunk",
                choices=[
                    pb.ChunkChoice(
                        delta=pb.ChoiceDelta(content=piece, role="" if index else "assistant"),
                        finish_reason=finish if last else "",
                    )
                ],
            )
            if last:
                chunk.usage.CopyFrom(_usage(prompt_tokens, len(text)))
            yield chunk


def _usage(prompt_tokens: int, completion_tokens: int) -> pb.CompletionUsage:
    return pb.CompletionUsage(
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        total_tokens=prompt_tokens + completion_tokens,
    )
