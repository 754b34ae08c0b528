"""A griffe extension for the API reference: docstrings' ``name: text`` lines become a list.

apex-grpc's docstrings describe parameters and fields as plain lines
(``timeout: overall deadline in seconds ...``), readable in ``help()`` and IDE
tooltips. Markdown would run them together into one paragraph; this turns
each such line (with its indented continuation lines) into a list item, so
the reference shows one entry per name. Loaded by mkdocs.yml; it only
rewrites the text griffe hands to mkdocstrings.
"""

from __future__ import annotations

import re
from typing import Any

from griffe import Extension, Object

# "timeout: ...", "model, task, inference_mode: ...": lower-case names, so that
# prose such as "Keywords: ..." or "Chat engines: ..." stays prose.
ENTRY = re.compile(r"^(?P<names>[a-z_][a-z0-9_]*(?:, [a-z_][a-z0-9_]*)*): (?P<text>\S.*)$")


def as_markdown_list(docstring: str) -> str:
    """The docstring with each ``name: text`` line (and its continuation) as a list item."""
    lines: list[str] = []
    in_entry = False
    for line in docstring.splitlines():
        match = ENTRY.match(line)
        if match is not None:
            if not in_entry and lines and lines[-1].strip():
                lines.append("")  # a list needs a blank line before it
            names = ", ".join(f"`{name}`" for name in match["names"].split(", "))
            lines.append(f"- {names}: {match['text']}")
            in_entry = True
        elif in_entry and line.startswith(" ") and line.strip():
            lines.append("  " + line.strip())
        else:
            if in_entry and line.strip():
                lines.append("")  # prose after the list is a paragraph of its own
            in_entry = False
            lines.append(line)
    return "\n".join(lines)


class NameColonLists(Extension):
    """Rewrites every docstring griffe loads (see the module docstring)."""

    def on_object(self, *, obj: Object, **kwargs: Any) -> None:
        """Rewrite this object's docstring, if it has one."""
        if obj.docstring is not None:
            obj.docstring.value = as_markdown_list(obj.docstring.value)
