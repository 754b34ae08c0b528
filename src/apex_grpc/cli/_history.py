"""An interactive chat's history, kept within the model's context window (no I/O).

The server says how big the window is: trailing metadata
``x-apex-context-tokens`` on chat responses, and on the refusal of a prompt
that does not fit (with ``x-apex-prompt-tokens``). A refusal from a server
that sends neither is recognised by its text ("the prompt is N tokens, more
than the local model's M-token context"). Two ways to stay inside it:

- before sending (once the window is known): leave out the oldest turns
  while the prompt, estimated per character from the last turn's usage,
  would leave less than a quarter of the window for the answer;
- when the server refuses the prompt anyway: leave out one more turn and
  send again, until it fits or only the new message is left.

The system prompt is always kept. Turns left out are forgotten only once an
answer came back, so a failed turn changes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from apex_grpc import ApexError, CompletionUsage, InvalidArgumentError, MessageParam

CONTEXT_TOKENS_HEADER = "x-apex-context-tokens"
PROMPT_TOKENS_HEADER = "x-apex-prompt-tokens"
ANSWER_SHARE = 4
"""Keep 1/ANSWER_SHARE of the window free for the answer when trimming ahead."""

_REFUSAL_TEXT = re.compile(r"the prompt is (\d+) tokens, more than the .*?(\d+)-token context")

Metadata = Iterable[tuple[str, str | bytes]]


@dataclass(frozen=True, slots=True)
class Turn:
    """One exchange: what the user said and what the model answered."""

    user: str
    assistant: str

    @property
    def chars(self) -> int:
        """The length of both messages."""
        return len(self.user) + len(self.assistant)


@dataclass(frozen=True, slots=True)
class ContextRefusal:
    """The server refused a prompt of `prompt_tokens` as longer than its `context_tokens`."""

    prompt_tokens: int
    context_tokens: int


def header_int(metadata: Metadata, name: str) -> int | None:
    """A positive integer header, or None when it is absent or malformed."""
    for key, value in metadata:
        if key == name:
            text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
            return int(text) if text.strip().isdigit() and int(text) > 0 else None
    return None


def context_refusal(error: ApexError) -> ContextRefusal | None:
    """Whether `error` is the server refusing a prompt too long for the model's context."""
    if not isinstance(error, InvalidArgumentError):
        return None
    metadata = (*error.initial_metadata, *error.trailing_metadata)
    prompt = header_int(metadata, PROMPT_TOKENS_HEADER)
    context = header_int(metadata, CONTEXT_TOKENS_HEADER)
    if prompt is not None and context is not None:
        return ContextRefusal(prompt, context)
    match = _REFUSAL_TEXT.search(error.details or "")
    return ContextRefusal(int(match[1]), int(match[2])) if match else None


class History:
    """The system prompt and the turns so far, and what is known of the context window."""

    def __init__(self, system: str | None = None) -> None:
        self.system = system
        self.turns: list[Turn] = []
        self.context_tokens: int | None = None
        self._tokens_per_char: float | None = None

    def messages(self, prompt: str, skip: int = 0) -> list[MessageParam]:
        """What to send: the system prompt, the turns after the `skip` oldest, the prompt."""
        messages = [MessageParam(role="system", content=self.system)] if self.system else []
        for turn in self.turns[skip:]:
            messages.append(MessageParam(role="user", content=turn.user))
            messages.append(MessageParam(role="assistant", content=turn.assistant))
        messages.append(MessageParam(role="user", content=prompt))
        return messages

    def turns_to_skip(self, prompt: str) -> int:
        """How many of the oldest turns to leave out so that the answer has room.

        0 until the window and the tokens per character are known.
        """
        rate, window = self._tokens_per_char, self.context_tokens
        if rate is None or window is None:
            return 0
        budget = window - window // ANSWER_SHARE
        chars = self._chars(self.turns) + len(prompt)
        skip = 0
        while skip < len(self.turns) and chars * rate > budget:
            chars -= self.turns[skip].chars
            skip += 1
        return skip

    def learn(self, metadata: Metadata) -> None:
        """Take the context window from a response's or refusal's metadata, if it has it."""
        self.context_tokens = header_int(metadata, CONTEXT_TOKENS_HEADER) or self.context_tokens

    def refused(self, refusal: ContextRefusal) -> None:
        """The server refused a prompt: now the window is known."""
        self.context_tokens = refusal.context_tokens

    def commit(self, prompt: str, reply: str, skipped: int, usage: CompletionUsage | None) -> None:
        """An answer came back: forget the turns left out, keep this one, learn the rate."""
        del self.turns[:skipped]
        self.turns.append(Turn(prompt, reply))
        chars = self._chars(self.turns)
        if usage is not None and chars:
            tokens = usage.prompt_tokens + usage.completion_tokens
            self._tokens_per_char = tokens / chars if tokens else self._tokens_per_char

    def reset(self) -> None:
        """Forget every turn (the system prompt stays)."""
        self.turns.clear()

    def _chars(self, turns: list[Turn]) -> int:
        return len(self.system or "") + sum(turn.chars for turn in turns)
