"""The echo engine: deterministic answers built from the prompt, for tests and benchmarks."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncGenerator, Sequence

import grpc

from apex_grpc_server._engines.base import (
    ChatEngine,
    ChatRequest,
    Delta,
    Finish,
    Message,
    Usage,
    answer_room,
    context_overflow,
    fitted,
)
from apex_grpc_server._status import RpcAbort


@dataclasses.dataclass(frozen=True, slots=True)
class EchoEngine(ChatEngine):
    """Answers with the prompt repeated and cut to ``chunks * chunk_size`` characters.

    The prompt P is the content of the last "user" message (of the last message
    if none is "user"). The answer is sent as ``chunks`` deltas of
    ``chunk_size`` characters, ``delay_s`` apart (no delay before the first);
    ``chunks == 0`` is the empty answer. Usage counts characters: prompt_tokens
    is the total length of all message contents, completion_tokens the length
    of the answer. Sampling parameters and max_new_tokens are ignored.
    With ``chunk_sizes`` set, the answer is one delta per listed size, in
    order (its length is their sum), instead of ``chunks`` equal deltas.

    Two settings make it behave like a real model for tests, without one:
    ``max_concurrency`` (answers generated at once; the others queue, as on
    the local model) and ``context`` (a context window counted in the same
    characters as usage: a longer prompt is the local model's overflow error,
    and ``fit_context`` trims history to leave a quarter of it free).
    """

    chunks: int = 8
    chunk_size: int = 16
    delay_s: float = 0.0
    chunk_sizes: tuple[int, ...] = ()
    max_concurrency: int | None = None
    context: int | None = None
    kind = "echo"

    @property
    def model(self) -> str:
        """Always "echo"."""
        return "echo"

    @property
    def concurrency(self) -> int | None:
        """``max_concurrency``: None runs every call at once."""
        return self.max_concurrency

    @property
    def expected_turn_s(self) -> float | None:
        """The delays between the answer's chunks (the echo engine's whole cost)."""
        return max(self.chunks - 1, 0) * self.delay_s or None

    @property
    def context_tokens(self) -> int | None:
        """``context``, in characters."""
        return self.context

    def with_overrides(
        self,
        chunks: int | None,
        chunk_size: int | None,
        delay_s: float | None,
        chunk_sizes: tuple[int, ...] | None = None,
    ) -> EchoEngine:
        """A copy with the given settings replaced (the x-echo-* per-request knobs)."""
        return dataclasses.replace(
            self,
            chunks=self.chunks if chunks is None else chunks,
            chunk_size=self.chunk_size if chunk_size is None else chunk_size,
            delay_s=self.delay_s if delay_s is None else delay_s,
            chunk_sizes=self.chunk_sizes if chunk_sizes is None else chunk_sizes,
        )

    async def stream(self, request: ChatRequest) -> AsyncGenerator[Delta, None]:
        """Yield the echo answer of ``request`` (of a continuation: what follows its prefix).

        The answer is a function of the prompt alone, so a continuation on any replica
        gives, after the prefix, exactly the text and chunk boundaries the uninterrupted
        answer would have had (the part of a chunk the prefix already holds is left out).
        A prefix that is not the start of this answer is FAILED_PRECONDITION: the echo
        engine cannot continue an answer it would not have given.
        """
        prefix = request.prefix
        request = request.original
        if self.context is not None:
            room = answer_room(request, self.chunks * self.chunk_size, self.context)
            request = fitted(request, _characters, self.context - room)
        prompt = request.prompt
        prompt_tokens = _characters(request.messages)
        if self.context is not None and prompt_tokens > self.context:
            raise context_overflow(prompt_tokens, self.context, self.kind)
        pieces = self._pieces(prompt)
        finish = Finish("stop", Usage(prompt_tokens, sum(map(len, pieces))))
        if not pieces:
            if prefix:
                raise _not_this_answer()
            yield Delta("", finish)
            return
        skip = len(prefix)
        if skip and not "".join(pieces).startswith(prefix):
            raise _not_this_answer()
        sent = False
        for index, piece in enumerate(pieces):
            last = index == len(pieces) - 1
            if skip >= len(piece) and not last:
                skip -= len(piece)
                continue
            if sent and self.delay_s:
                await asyncio.sleep(self.delay_s)
            yield Delta(piece[skip:], finish if last else None)
            skip, sent = 0, True

    def _pieces(self, prompt: str) -> list[str]:
        """The deltas' texts of the answer to ``prompt``."""
        if not prompt:
            return []
        if self.chunk_sizes:
            total = sum(self.chunk_sizes)
            text = (prompt * (total // len(prompt) + 1))[:total]
            pieces, offset = [], 0
            for size in self.chunk_sizes:
                pieces.append(text[offset : offset + size])
                offset += size
            return pieces
        size = self.chunk_size
        # Enough repetitions to cut any chunk out of one string.
        period = len(prompt)
        window = prompt * (size // period + 2)
        return [
            window[(index * size) % period : (index * size) % period + size]
            for index in range(self.chunks)
        ]


def _not_this_answer() -> RpcAbort:
    return RpcAbort(
        grpc.StatusCode.FAILED_PRECONDITION,
        "messages: the final assistant message is not the start of the echo answer to this"
        " conversation, so it cannot be continued",
    )


def _characters(messages: Sequence[Message]) -> int:
    """The echo engine's token count: characters of every message."""
    return sum(len(message.content) for message in messages)
