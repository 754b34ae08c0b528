"""The chat-engine interface: an async generator of text deltas, usage on the last."""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass

import grpc

from apex_grpc_server._status import RpcAbort

CONTEXT_TOKENS_KEY = "x-apex-context-tokens"
"""Trailing metadata of every chat call on an engine with a known context window: its size."""
PROMPT_TOKENS_KEY = "x-apex-prompt-tokens"
"""Trailing metadata of a context overflow: how many tokens the prompt has."""
CONTEXT_OVERFLOW = "messages: the prompt exceeds the context window: "
"""The stable start of the INVALID_ARGUMENT details of a prompt too long for the model."""


@dataclass(frozen=True, slots=True)
class Message:
    """One conversation turn given to an engine."""

    role: str
    content: str


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """A validated chat request, independent of the wire format.

    ``max_new_tokens`` is what the caller asked for (None: the engine's
    default); each engine clamps it to what it can do. With ``fit_context``,
    an engine that knows its context window drops the oldest turns (never a
    system message, never the last message) until the prompt fits with room
    for an answer, instead of failing.

    With ``continue_final``, the last message is the start of the assistant's
    answer (a client resuming a cut stream, ``x-apex-continue``): the engine
    answers `original` and streams only what follows `prefix`. max_new_tokens
    and usage count the whole answer, the prefix included; prompt tokens are
    those of `original`.
    """

    messages: tuple[Message, ...]
    temperature: float = 0.7
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int | None = None
    seed: int | None = None
    do_sample: bool = True
    json_format: bool = False
    model: str | None = None
    fit_context: bool = False
    continue_final: bool = False

    @property
    def prompt(self) -> str:
        """The content of the last "user" message (of the last message if none is),
        of the conversation being answered (`original`)."""
        messages = self.original.messages
        for message in reversed(messages):
            if message.role == "user":
                return message.content
        return messages[-1].content

    @property
    def prefix(self) -> str:
        """The part of the answer already given ("" unless ``continue_final``)."""
        return self.messages[-1].content if self.continue_final else ""

    @property
    def original(self) -> ChatRequest:
        """The request whose answer this one continues: without the final assistant message."""
        if not self.continue_final:
            return self
        return dataclasses.replace(self, messages=self.messages[:-1], continue_final=False)


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one completion."""

    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        """prompt_tokens + completion_tokens."""
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class Finish:
    """How a completion ended: an OpenAI-style reason ("stop", "length") and usage."""

    reason: str
    usage: Usage | None


@dataclass(frozen=True, slots=True)
class Delta:
    """A piece of generated text; the last delta of a completion carries ``finish``."""

    text: str
    finish: Finish | None = None


def context_overflow(prompt_tokens: int, context_tokens: int, kind: str) -> RpcAbort:
    """INVALID_ARGUMENT for a prompt longer than the context, recognisable by machines.

    The details start with CONTEXT_OVERFLOW; the trailing metadata carries
    both numbers (PROMPT_TOKENS_KEY, CONTEXT_TOKENS_KEY).
    """
    return RpcAbort(
        grpc.StatusCode.INVALID_ARGUMENT,
        f"{CONTEXT_OVERFLOW}the prompt is {prompt_tokens} tokens, more than the {kind}"
        f" model's {context_tokens}-token context (drop earlier turns)",
        ((PROMPT_TOKENS_KEY, str(prompt_tokens)), (CONTEXT_TOKENS_KEY, str(context_tokens))),
    )


def answer_room(request: ChatRequest, cap: int, context_tokens: int) -> int:
    """Tokens kept free for the answer when history is trimmed: the cap, at most a quarter."""
    return min(request.max_new_tokens or cap, cap, context_tokens // 4)


def fit_messages(
    messages: Sequence[Message], count: Callable[[Sequence[Message]], int], budget: int
) -> tuple[Message, ...]:
    """Drop the oldest turns until ``count(messages) <= budget``.

    A turn is a non-system message and the assistant replies after it.
    System messages and the last message always stay, so the result may
    still be over budget (the engine then reports the overflow).
    """
    kept = list(messages)
    while count(kept) > budget:
        oldest = next((i for i, m in enumerate(kept[:-1]) if m.role != "system"), None)
        if oldest is None:
            break
        del kept[oldest]
        while oldest < len(kept) - 1 and kept[oldest].role == "assistant":
            del kept[oldest]
    return tuple(kept)


def fitted(
    request: ChatRequest, count: Callable[[Sequence[Message]], int], budget: int
) -> ChatRequest:
    """``request`` with its history trimmed to ``budget`` when it asks for ``fit_context``."""
    if not request.fit_context:
        return request
    messages = fit_messages(request.messages, count, budget)
    if len(messages) == len(request.messages):
        return request
    return dataclasses.replace(request, messages=messages)


class EngineUnavailable(RuntimeError):
    """An engine cannot start here; the message says how to fix it."""


class ChatEngine(abc.ABC):
    """A source of chat completions.

    ``stream`` yields deltas; exactly the last one has ``finish`` set. An engine
    that only learns it is done after its last text yields a final empty delta.
    Engines raise ``RpcAbort`` for failures that map to a gRPC status.
    """

    kind: str = "engine"

    @property
    @abc.abstractmethod
    def model(self) -> str:
        """The model name reported in responses."""

    @property
    def concurrency(self) -> int | None:
        """How many completions the engine runs at once (None: no limit); more wait in a queue."""
        return None

    @property
    def context_tokens(self) -> int | None:
        """The model's context window in tokens, when the engine knows it."""
        return None

    @property
    def expected_turn_s(self) -> float | None:
        """How long one completion usually takes, when the engine knows before measuring.

        The queue's first pushback estimates use it until real turns are measured.
        """
        return None

    @property
    def serving(self) -> bool:
        """Whether the engine can answer now (one in a child process cannot while it restarts)."""
        return True

    def watch_serving(self, listener: Callable[[bool], Awaitable[None]]) -> None:  # noqa: B027
        """Have ``listener(serving)`` awaited whenever ``serving`` changes (never, here)."""

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Acquire resources (load a model, open connections) before serving."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources at shutdown."""

    @abc.abstractmethod
    def stream(self, request: ChatRequest) -> AsyncGenerator[Delta, None]:
        """Generate the completion of ``request`` as deltas."""
