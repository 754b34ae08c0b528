"""How the demo presents itself: rich rules and syntax on a terminal, plain text otherwise."""

from __future__ import annotations

import sys
from typing import IO


class Show:
    """Headings, snippet sources and notes for ``python -m apex_grpc.demo``."""

    def __init__(self, out: IO[str], *, fancy: bool) -> None:
        self.out = out
        self.fancy = fancy

    @classmethod
    def detect(cls) -> Show:
        """Fancy when stdout is a terminal and rich (the ``cli`` extra) is installed."""
        fancy = sys.stdout.isatty()
        if fancy:
            try:
                import rich  # noqa: F401
            except ImportError:
                fancy = False
        return cls(sys.stdout, fancy=fancy)

    def _print(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def heading(self, text: str) -> None:
        """A section heading."""
        if self.fancy:
            from rich.console import Console

            Console(file=self.out).rule(f"[bold]{text}", align="left")
        else:
            self._print()
            self._print(f"=== {text} ===")

    def source(self, title: str, code: str, hint: str) -> None:
        """A snippet's source code; `hint` says what its output will look like."""
        if self.fancy:
            from rich.console import Console
            from rich.panel import Panel
            from rich.syntax import Syntax

            Console(file=self.out).print(
                Panel(
                    Syntax(code.rstrip("\n"), "python", word_wrap=True),
                    title=title,
                    title_align="left",
                )
            )
            Console(file=self.out, highlight=False).print(f"[dim]output ({hint}):[/]")
        else:
            self._print(f"--- {title} ---")
            for line in code.rstrip("\n").splitlines():
                self._print(f"    {line}" if line else "")
            self._print(f"--- output ({hint}) ---")

    def note(self, text: str, *, style: str = "dim") -> None:
        """A line of commentary (dim on a terminal)."""
        if self.fancy:
            from rich.console import Console
            from rich.text import Text

            Console(file=self.out, highlight=False).print(Text(text, style=style), soft_wrap=True)
        else:
            self._print(text)

    def timings(self, rows: list[tuple[str, float, str]]) -> None:
        """The summary: one row per step, with seconds and outcome."""
        if self.fancy:
            from rich.console import Console
            from rich.table import Table

            table = Table("step", "seconds", "result", box=None, header_style="bold")
            for step, seconds, outcome in rows:
                style = "green" if outcome == "ok" else "red"
                table.add_row(step, f"{seconds:.1f}", f"[{style}]{outcome}[/]")
            Console(file=self.out).print(table)
        else:
            width = max(len(step) for step, _, _ in rows)
            for step, seconds, outcome in rows:
                self._print(f"{step:<{width}}  {seconds:6.1f} s  {outcome}")
