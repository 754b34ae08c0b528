"""Where the CLI writes: results on stdout, notes and errors on stderr.

Colours and live progress (rich, the ``cli`` extra) only when stdout is a
terminal and rich is installed; otherwise plain, pipe-friendly text.
"""

from __future__ import annotations

import json
import os
import sys
from typing import IO, TYPE_CHECKING, Any

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

if TYPE_CHECKING:
    from rich.console import Console


def to_json(value: Message | dict[str, Any]) -> str:
    """One line of JSON: a protobuf message in its JSON mapping (proto field names)."""
    data = (
        MessageToDict(value, preserving_proto_field_name=True)
        if isinstance(value, Message)
        else value
    )
    return json.dumps(data, ensure_ascii=False)


def _rich_available() -> bool:
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


class Terminal:
    """The CLI's output: plain text always works; `fancy` adds rich on a terminal."""

    def __init__(self, out: IO[str], err: IO[str], *, fancy: bool) -> None:
        self.out = out
        self.err = err
        self.fancy = fancy
        self._console: Console | None = None
        self._open_line = False

    @classmethod
    def detect(cls) -> Terminal:
        """Fancy when stdout is a terminal (not TERM=dumb) and rich is installed."""
        out, err = sys.stdout, sys.stderr
        tty = out.isatty() and os.environ.get("TERM") != "dumb"
        return cls(out, err, fancy=tty and _rich_available())

    def console(self) -> Console:
        """The rich console on stdout (only call when `fancy`)."""
        if self._console is None:
            from rich.console import Console

            self._console = Console(file=self.out, highlight=False)
        return self._console

    def write(self, text: str) -> None:
        """Write text as it comes (a streamed token), flushed at once."""
        if text:
            self.out.write(text)
            self.out.flush()
            self._open_line = not text.endswith("\n")

    def end_line(self) -> None:
        """Finish the current line if something was written on it."""
        if self._open_line:
            self.write("\n")

    def line(self, text: str = "") -> None:
        """Write one line."""
        self.write(text + "\n")

    def json(self, value: Message | dict[str, Any]) -> None:
        """Write a message or dict as one JSON line."""
        self.line(to_json(value))

    def error(self, text: str) -> None:
        """An error line on stderr, in red when stderr is a terminal and rich is there."""
        if self.err.isatty() and _rich_available():
            from rich.console import Console
            from rich.text import Text

            Console(file=self.err, highlight=False).print(Text(text, style="red"), soft_wrap=True)
        else:
            self.note(text)

    def note(self, text: str) -> None:
        """A status line on stderr (never mixed into the results on stdout)."""
        self.err.write(text + "\n")
        self.err.flush()
