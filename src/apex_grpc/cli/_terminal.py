"""Where the CLI writes: results on stdout, notes and errors on stderr.

Colours and live progress (rich, the ``cli`` extra) only when stdout is a
terminal and rich is installed; otherwise plain, pipe-friendly text. When
both go to one terminal, a note never lands on the end of an answer's line:
the line is finished first.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import IO, TYPE_CHECKING, Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

if TYPE_CHECKING:
    from rich.console import Console


_INT64 = frozenset({FieldDescriptor.CPPTYPE_INT64, FieldDescriptor.CPPTYPE_UINT64})


def to_data(message: Message) -> dict[str, Any]:
    """A message as JSON-ready data: proto field names, 64-bit integers as numbers.

    protobuf's JSON mapping writes int64 as strings (for JavaScript's sake);
    a command line's output is read by jq and scripts, which want numbers.
    """
    data = MessageToDict(message, preserving_proto_field_name=True)
    return _numbers(message, data)


def _numbers(message: Message, data: dict[str, Any]) -> dict[str, Any]:
    for field in message.DESCRIPTOR.fields:
        value = data.get(field.name)
        if value is None:
            continue
        if field.cpp_type in _INT64:
            data[field.name] = [int(v) for v in value] if isinstance(value, list) else int(value)
            continue
        kind = field.message_type
        # Maps (string to string in apex.v1) and google.protobuf types (Struct,
        # Timestamp) have JSON forms of their own.
        if kind is None or kind.GetOptions().map_entry or kind.full_name.startswith("google."):
            continue
        nested = getattr(message, field.name)
        if isinstance(value, list):
            for item, item_data in zip(nested, value, strict=True):
                _numbers(item, item_data)
        else:
            _numbers(nested, value)
    return data


def to_json(value: Message | dict[str, Any]) -> str:
    """One line of JSON: a message as `to_data` shapes it, or a dict."""
    return json.dumps(to_data(value) if isinstance(value, Message) else value, ensure_ascii=False)


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

    def after_interrupt(self) -> None:
        """After Ctrl-C: start a new line, so the shell's prompt does not follow the ``^C``.

        On a terminal, the ``^C`` it echoed sits on the current line whether or
        not an answer was open; on a pipe only an open answer line is ended.
        """
        if self.out.isatty():
            self.write("\n")
        else:
            self.end_line()

    def line(self, text: str = "") -> None:
        """Write one line."""
        self.write(text + "\n")

    def json(self, value: Message | dict[str, Any]) -> None:
        """Write a message or dict as one JSON line."""
        self.line(to_json(value))

    def error(self, text: str) -> None:
        """An error line on stderr, in red when stderr is a terminal and rich is there."""
        if self.err.isatty() and _rich_available():
            self.finish_answer_line()
            from rich.console import Console
            from rich.text import Text

            Console(file=self.err, highlight=False).print(Text(text, style="red"), soft_wrap=True)
        else:
            self.note(text)

    def note(self, text: str) -> None:
        """A status line on stderr (never mixed into the results on stdout)."""
        self.finish_answer_line()
        self.err.write(text + "\n")
        self.err.flush()

    def finish_answer_line(self) -> None:
        """On a terminal, end an open answer line, so what goes to stderr next starts a line.

        stdout and stderr share the screen there; on a pipe, stdout is left as is.
        """
        if self._open_line and self.out.isatty():
            self.end_line()


class NoteHandler(logging.Handler):
    """Log records as notes on the terminal's stderr (``--debug``), each on its own line."""

    def __init__(self, term: Terminal) -> None:
        super().__init__()
        self.term = term
        self.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        """Write the record as one note."""
        try:
            self.term.note(self.format(record))
        except Exception:  # logging must never break the command
            self.handleError(record)
