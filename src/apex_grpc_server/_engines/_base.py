"""The chat-engine interface: an async generator of text deltas, usage on the last."""

from __future__ import annotations

import abc
from collections.abc import AsyncGenerator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Message:
    """One conversation turn given to an engine."""

    role: str
    content: str


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """A validated chat request, independent of the wire format.

    ``max_new_tokens`` is what the caller asked for (None: the engine's
    default); each engine clamps it to what it can do.
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

    @property
    def prompt(self) -> str:
        """The content of the last "user" message (of the last message if none is)."""
        for message in reversed(self.messages):
            if message.role == "user":
                return message.content
        return self.messages[-1].content


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

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Acquire resources (load a model, open connections) before serving."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources at shutdown."""

    @abc.abstractmethod
    def stream(self, request: ChatRequest) -> AsyncGenerator[Delta, None]:
        """Generate the completion of ``request`` as deltas."""
