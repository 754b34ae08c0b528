"""A chat server with a small context window, scripted on the testing kit's FakeApex.

The local model has a large window; this one answers ChatCompletion and
ChatCompletionStream like the echo engine (tokens are characters:
prompt_tokens is the length of all messages; the answer is the last message
repeated) and behaves like the local engine at its limits:

- a prompt longer than `context` tokens is refused with INVALID_ARGUMENT,
  worded as the local engine words it ("the prompt is N tokens, more than
  the local model's M-token context"); with `refusal_headers`, the refusal
  carries ``x-apex-context-tokens`` / ``x-apex-prompt-tokens`` instead, and
  a wording the CLI cannot parse; with `answer_headers`, every answer
  carries ``x-apex-context-tokens`` (what the local server is to send);
- an answer longer than the request's max_new_tokens, or than the server's
  own `cap`, is cut there and ends with finish_reason "length".

The echo engine has no context limit; until it gets one (a knob), this is
the server for the CLI's trimming tests. The answers are computed from each
call (the kit's callable replies), so the settings may change mid-test.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc

from apex_grpc.testing import FakeApex, RecordedCall, Reply, completion, error, stream
from apex_grpc_proto.apex.v1 import apex_pb2 as pb

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
class ContextWindow:
    """``with ContextWindow(context=300) as server:`` serves on ``server.target``."""

    context: int = 300
    answer_chars: int = 100
    refusal_headers: bool = False
    answer_headers: bool = False
    cap: int | None = None
    fake: FakeApex = field(default_factory=lambda: FakeApex(assert_all_called=False))

    def __enter__(self) -> ContextWindow:
        self.fake.start()
        self.fake.on("ChatCompletion").reply(self._answer)
        self.fake.on("ChatCompletionStream").reply(self._answer)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        self.fake.stop()
        if exc_type is None:
            self.fake.verify()  # no call the window did not answer

    @property
    def target(self) -> str:
        """``127.0.0.1:PORT``."""
        return self.fake.target

    @property
    def seen(self) -> list[Seen]:
        """Every chat request, in order."""
        return [
            Seen(
                [(m.role, m.content) for m in call.request.messages],
                refused=call.code is grpc.StatusCode.INVALID_ARGUMENT,
            )
            for call in self.fake.requests
        ]

    def _answer(self, call: RecordedCall) -> object:
        request: pb.ChatCompletionRequest = call.request
        prompt_tokens = sum(len(m.content) for m in request.messages)
        if prompt_tokens > self.context:
            if self.refusal_headers:
                sizes = (
                    ("x-apex-context-tokens", str(self.context)),
                    ("x-apex-prompt-tokens", str(prompt_tokens)),
                )
                return error("INVALID_ARGUMENT", "messages: too long", trailing_metadata=sizes)
            return error(
                "INVALID_ARGUMENT",
                f"messages: the prompt is {prompt_tokens} tokens, more than the local model's"
                f" {self.context}-token context",
            )
        trailing = (("x-apex-context-tokens", str(self.context)),) if self.answer_headers else ()
        last = request.messages[-1].content
        text = (last * (self.answer_chars // len(last) + 1))[: self.answer_chars]
        limits = (request.sampling_parameters.max_new_tokens, self.cap)
        limit = min((n for n in limits if n), default=None)
        finish = "stop"
        if limit and len(text) > limit:
            text, finish = text[:limit], "length"
        usage = (prompt_tokens, len(text))
        if call.method == "ChatCompletion":
            answer = completion(text, id="context-server", finish_reason=finish, usage=usage)
            return Reply(answer, trailing_metadata=trailing)
        return stream(*_chunks(text, finish, usage), trailing_metadata=trailing)


def _chunks(text: str, finish: str, usage: tuple[int, int]) -> list[pb.ChatCompletionChunkResponse]:
    """The answer in chunks of 16 characters; the last has finish_reason and usage."""
    pieces = [text[i : i + CHUNK_CHARS] for i in range(0, len(text), CHUNK_CHARS)]
    chunks = []
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
            prompt, generated = usage
            chunk.usage.CopyFrom(
                pb.CompletionUsage(
                    prompt_tokens=prompt,
                    completion_tokens=generated,
                    total_tokens=prompt + generated,
                )
            )
        chunks.append(chunk)
    return chunks
