"""The interactive chat: each input line is a turn; slash commands steer the conversation.

On a terminal: a ``>`` prompt with line editing; Ctrl-C cancels the answer
being streamed (the turn is dropped), Ctrl-C at the prompt leaves (130),
Ctrl-D or /exit ends the conversation (0: each failed turn was reported on
the spot). With stdin piped, each line is a turn and the exit status is that
of the last failed turn (1, or 2 for an invalid argument), else 0.
"""

from __future__ import annotations

import sys
from typing import Protocol

from apex_grpc import APIError
from apex_grpc.cli._errors import Endpoint, Interrupted, describe, error_line
from apex_grpc.cli._terminal import Terminal

COMMANDS = {
    "/help": "list these commands",
    "/reset": "forget the conversation so far (the system prompt stays)",
    "/exit": "leave (so do /quit and Ctrl-D)",
}
EXIT_WORDS = frozenset({"/exit", "/quit"})


def commands_help() -> str:
    """The slash commands, one per line, as /help and ``chat --help`` show them."""
    return "\n".join(f"  {name:<8}{text}" for name, text in COMMANDS.items())


class Conversation(Protocol):
    """How turns are answered: streamed with a local history, or as a stored chat."""

    def ask(self, prompt: str) -> None:
        """Answer and print; raises Interrupted (Ctrl-C) or ApexError."""

    def reset(self) -> str:
        """Forget the conversation; returns what to tell the user."""


def converse(
    chat: Conversation,
    term: Terminal,
    first: str | None,
    endpoint: Endpoint,
    secret: str | None,
) -> int:
    """Read turns until EOF or /exit, answering each; returns the exit status.

    A failed turn is reported as ``error_line`` reports it: the error, its hint,
    and never `secret` (the API key), even when the server's message repeats it.
    """
    tty = sys.stdin.isatty()
    if tty:
        try:
            import readline  # noqa: F401  (line editing for input())
        except ImportError:  # pragma: no cover - not on every platform
            pass
        term.note("apex-grpc chat: Ctrl-C cancels an answer; Ctrl-D or /exit quits; /help")
    status = 0
    pending = [first] if first else []
    while True:
        line = pending.pop() if pending else _read_line(tty, term)
        if line is None:
            break
        text = line.strip()
        if not text:
            continue
        if text in EXIT_WORDS:
            break
        if _is_command(text):
            _command(text, chat, term)
            continue
        try:
            chat.ask(text)
        except Interrupted:
            term.note("(answer cancelled)")
        except APIError as error:
            term.error(error_line(error, endpoint, secret))
            status = describe(error, endpoint)[1]
    return 0 if tty else status


def _read_line(tty: bool, term: Terminal) -> str | None:
    if not tty:
        line = sys.stdin.readline()
        return line if line else None
    try:
        return input("> ")
    except EOFError:  # Ctrl-D: leave the shell's prompt on a line of its own
        term.line()
        return None


def _is_command(text: str) -> bool:
    # Only a line that is one /word: "/usr/bin is what?" is a question.
    return text.startswith("/") and " " not in text and "/" not in text[1:]


def _command(text: str, chat: Conversation, term: Terminal) -> None:
    if text == "/reset":
        term.note(chat.reset())
    elif text == "/help":
        term.note("commands:\n" + commands_help())
    else:
        term.note(f"unknown command {text} (/help lists them)")
