"""``apex-grpc chat``: one prompt, streamed or not, or an interactive conversation.

By default each turn is a ChatCompletionStream whose chunks are printed as
they come; the conversation's history lives here and is fitted to the
model's context window (`_history`). ``--save`` answers through the
stored-chat RPCs instead (`_stored`).
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from apex_grpc import (
    ApexClient,
    ApexError,
    CallInfo,
    ChatCompletionChunkResponse,
    ChatCompletionResponse,
    ChatCompletionStream,
    CompletionUsage,
    InvalidArgumentError,
    MessageParam,
)
from apex_grpc.cli._converse import Conversation, converse
from apex_grpc.cli._errors import Endpoint, Interrupted, UsageError, key_in_use
from apex_grpc.cli._history import History, context_refusal
from apex_grpc.cli._interrupt import CancelOnInterrupt
from apex_grpc.cli._stored import StoredChat
from apex_grpc.cli._terminal import Terminal

DEFAULT_MAX_NEW_TOKENS = 4096
"""What the client asks for when --max-new-tokens is not given (the official SDK's default)."""


def run(args: argparse.Namespace, client: ApexClient, term: Terminal) -> int:
    """Answer the prompt (argument or piped stdin), or talk interactively."""
    prompt = read_prompt(args)
    chat: Conversation = (
        StoredChat(client, args, term) if args.save else LiveChat(client, args, term)
    )
    if args.interactive or prompt is None:
        endpoint = Endpoint(client.target, client.secure)
        return converse(chat, term, prompt, endpoint, key_in_use(args))
    chat.ask(prompt)
    return 0


def read_prompt(args: argparse.Namespace) -> str | None:
    """The prompt: the words given, or all of stdin for '-' or when stdin is piped."""
    words = " ".join(args.prompt).strip()
    from_stdin = words == "-" or (not words and not args.interactive and not sys.stdin.isatty())
    if not from_stdin:
        return words or None
    if args.interactive:
        raise UsageError("-i reads the conversation from stdin; give the first prompt as words")
    text = sys.stdin.read().strip()
    if not text:
        raise UsageError("no prompt: give one, pipe one on stdin, or use -i")
    return text


def request_options(args: argparse.Namespace) -> dict[str, Any]:
    """The create() keywords the flags ask for (only those given)."""
    sampling: dict[str, Any] = {}
    for name in ("temperature", "top_p", "top_k", "max_new_tokens"):
        value = getattr(args, name)
        if value is not None:
            sampling[name] = value
    if args.greedy:
        sampling["do_sample"] = False
    options: dict[str, Any] = {}
    if sampling:
        options["sampling_parameters"] = sampling
    if args.seed is not None:
        options["seed"] = args.seed
    if args.model:
        options["model"] = args.model
    return options


class LiveChat:
    """Turns answered by ChatCompletion(Stream); the history is kept here, fitted to the window."""

    def __init__(self, client: ApexClient, args: argparse.Namespace, term: Terminal) -> None:
        self.client = client
        self.args = args
        self.term = term
        self.history = History(args.system)
        self._told = False

    def ask(self, prompt: str) -> None:
        """Answer `prompt` after the history, leaving out the oldest turns if they do not fit."""
        history = self.history
        skip = history.turns_to_skip(prompt)
        while True:
            try:
                reply = answer(self.client, history.messages(prompt, skip), self.args, self.term)
                break
            except InvalidArgumentError as error:
                # A refusal comes before the first chunk: nothing was printed yet.
                refusal = context_refusal(error)
                if refusal is None or skip >= len(history.turns):
                    raise
                history.refused(refusal)
                skip += 1
        history.learn(reply.metadata)
        history.commit(prompt, reply.text, skip, reply.usage)
        if skip:
            self._tell_once()

    def reset(self) -> str:
        """Forget the turns; returns what to tell the user."""
        self.history.reset()
        kept = "; the system prompt stays" if self.history.system else ""
        return f"(history cleared{kept})"

    def _tell_once(self) -> None:
        if not self._told:
            self._told = True
            window = self.history.context_tokens
            size = f" {window}-token" if window else ""
            self.term.note(
                f"(the conversation no longer fits the model's{size} context: the oldest turns"
                " are left out from now on; /reset clears the history)"
            )


@dataclass(frozen=True, slots=True)
class Reply:
    """An answer as it came back: its text, why it ended, its usage, the server's metadata."""

    text: str
    finish_reason: str
    usage: CompletionUsage | None
    metadata: tuple[tuple[str, str | bytes], ...]

    @classmethod
    def of(cls, response: ChatCompletionResponse, metadata: Iterable[Any]) -> Reply:
        """The reply a (final) ChatCompletionResponse describes."""
        choice = response.choices[0] if response.choices else None
        return cls(
            text=choice.message.content if choice else "",
            finish_reason=choice.finish_reason if choice else "",
            usage=response.usage if response.HasField("usage") else None,
            metadata=tuple(metadata),
        )


def answer(
    client: ApexClient, messages: list[MessageParam], args: argparse.Namespace, term: Terminal
) -> Reply:
    """Run one completion and print it (text or JSON); says so when the token limit cut it.

    Raises Interrupted when Ctrl-C cancelled a stream.
    """
    create = functools.partial(
        client.chat.completions.create, messages=messages, **request_options(args)
    )
    reply = (_whole if args.no_stream else _streamed)(create, args.json, term)
    if reply.finish_reason == "length":
        term.note(cut_note(reply.usage, args.max_new_tokens or DEFAULT_MAX_NEW_TOKENS))
    return reply


def cut_note(usage: CompletionUsage | None, asked: int) -> str:
    """What to say under an answer that ended at a token limit: whose limit, what to do."""
    if usage is None:
        return "[cut at the token limit; raise --max-new-tokens]"
    tokens = usage.completion_tokens
    if tokens >= asked:
        return f"[cut at the token limit: {tokens} tokens; raise --max-new-tokens]"
    # The server stopped first: its own cap (a local server's `serve --max-new-tokens`)
    # or what was left of the model's context window after the prompt.
    return (
        f"[cut at the server's token limit: {tokens} tokens, though --max-new-tokens was {asked}]"
    )


Create = Callable[..., Any]
"""``client.chat.completions.create`` with the request's messages and options bound."""


def _whole(create: Create, as_json: bool, term: Terminal) -> Reply:
    info = CallInfo()
    response: ChatCompletionResponse = create(call_info=info)
    reply = Reply.of(response, (*info.initial_metadata, *info.trailing_metadata))
    if as_json:
        term.json(response)
    else:
        term.line(reply.text)
    return reply


def _streamed(create: Create, as_json: bool, term: Terminal) -> Reply:
    stream: ChatCompletionStream = create(stream=True)
    with stream, CancelOnInterrupt(stream) as guard:
        try:
            for chunk in stream:
                guard.unless_interrupted(functools.partial(_show, term, chunk, as_json))
        except ApexError:
            if not guard.interrupted:
                raise
        if guard.interrupted:
            term.after_interrupt()
            raise Interrupted
        final = stream.get_final_response()
        metadata = (*stream.initial_metadata(), *stream.trailing_metadata())
    term.end_line()
    return Reply.of(final, metadata)


def _show(term: Terminal, chunk: ChatCompletionChunkResponse, as_json: bool) -> None:
    if as_json:
        term.json(chunk)
    elif chunk.choices:
        term.write(chunk.choices[0].delta.content)
