"""``apex-grpc chat``: one prompt, streamed or not, or an interactive conversation."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from apex_grpc import ApexClient, ApexError, APIError, MessageParam
from apex_grpc.cli._errors import Interrupted, UsageError, error_line
from apex_grpc.cli._interrupt import CancelOnInterrupt
from apex_grpc.cli._terminal import Terminal

EXIT_WORDS = frozenset({"/exit", "/quit"})


def run(args: argparse.Namespace, client: ApexClient, term: Terminal) -> int:
    """Answer the prompt (argument or piped stdin), or talk interactively."""
    prompt = read_prompt(args)
    if args.interactive or prompt is None:
        return converse(client, args, term, prompt)
    messages = [*system_messages(args), MessageParam(role="user", content=prompt)]
    answer(client, messages, args, term)
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


def system_messages(args: argparse.Namespace) -> list[MessageParam]:
    """The --system message, if any."""
    return [MessageParam(role="system", content=args.system)] if args.system else []


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


def answer(
    client: ApexClient, messages: list[MessageParam], args: argparse.Namespace, term: Terminal
) -> str:
    """Run one completion, print it (text or JSON), and return its text.

    Raises Interrupted when Ctrl-C cancelled a stream.
    """
    options = request_options(args)
    if args.no_stream:
        response = client.chat.completions.create(messages=messages, **options)
        text = response.choices[0].message.content if response.choices else ""
        if args.json:
            term.json(response)
        else:
            term.line(text)
        return text
    parts: list[str] = []
    stream = client.chat.completions.create(messages=messages, stream=True, **options)
    with stream, CancelOnInterrupt(stream) as guard:
        try:
            for chunk in stream:
                if args.json:
                    term.json(chunk)
                if chunk.choices:
                    text = chunk.choices[0].delta.content
                    parts.append(text)
                    if not args.json:
                        term.write(text)
        except ApexError:
            if not guard.interrupted:
                raise
        if guard.interrupted:
            term.end_line()
            raise Interrupted
    term.end_line()
    return "".join(parts)


def _read_line(tty: bool, term: Terminal) -> str | None:
    if not tty:
        line = sys.stdin.readline()
        return line if line else None
    try:
        return input("> ")
    except EOFError:
        term.line()
        return None


def converse(
    client: ApexClient, args: argparse.Namespace, term: Terminal, first: str | None
) -> int:
    """The interactive mode: each input line is a user turn; the history is kept.

    Ctrl-C cancels the answer being streamed (the turn is dropped); at the
    prompt it exits (130). EOF or /exit ends the conversation.
    """
    tty = sys.stdin.isatty()
    if tty:
        try:
            import readline  # noqa: F401  (line editing for input())
        except ImportError:  # pragma: no cover - not on every platform
            pass
        term.note("apex-grpc chat: Ctrl-C cancels an answer; Ctrl-D or /exit quits")
    history = system_messages(args)
    pending = [first] if first else []
    failed = False
    while True:
        line = pending.pop() if pending else _read_line(tty, term)
        if line is None:
            break
        text = line.strip()
        if not text:
            continue
        if text in EXIT_WORDS:
            break
        history.append(MessageParam(role="user", content=text))
        try:
            reply = answer(client, history, args, term)
        except Interrupted:
            history.pop()
            term.note("(answer cancelled)")
            continue
        except APIError as error:
            history.pop()
            term.error(error_line(error, client.target))
            failed = True
            continue
        history.append(MessageParam(role="assistant", content=reply))
    return 1 if failed else 0
