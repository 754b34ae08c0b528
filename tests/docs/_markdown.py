"""The fenced code blocks of a documentation page, as the reader sees them.

A page is read with its includes expanded (``--8<-- "FILE"`` and
``--8<-- "FILE:section"``, the pymdownx.snippets forms mkdocs.yml enables),
so a block is run where it is shown, and a failure names the file and line
it comes from. Python and shell blocks are snippets; a one-line HTML comment
right before one says how the tests treat it:

    <!-- not run: REASON -->          never run; listed with REASON
    <!-- needs the local model -->    run only where the local model is installed

Any other comment right before a snippet is an error, so a misspelt marker
cannot make a block silently skip.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
"""Every page whose snippets the tests run."""

PYTHON = frozenset({"python", "py"})
SHELL = frozenset({"sh", "bash", "shell"})
UNSUPPORTED = frozenset({"console", "pycon", "shell-session"})

NOT_RUN = "not run:"
NEEDS_MODEL = "needs the local model"

_INCLUDE = re.compile(r'^(?P<indent>[ \t]*)-{1,}8<-{1,}[ \t]+"(?P<target>[^"]+)"[ \t]*$')
_SECTION = re.compile(r"-{1,}8<-{1,}[ \t]+\[(?P<kind>start|end):(?P<name>[a-z][-_0-9a-z]*)\]")
_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`]*?)[ \t]*$")
_COMMENT = re.compile(r"^[ \t]*<!--(?P<text>.*?)-->[ \t]*$")


class PageError(Exception):
    """A page the tests cannot read: a bad include, an unclosed fence, an unknown marker."""


@dataclass(frozen=True)
class Line:
    """One line of an expanded page and where it comes from."""

    text: str
    path: Path
    number: int


@dataclass(frozen=True)
class Block:
    """A Python or shell snippet."""

    page: Path
    path: Path
    """The file the block's first line comes from (the page, or a file it includes)."""
    line: int
    """Line number of the block's first code line in `path`."""
    language: str
    """"python" or "shell"."""
    code: str
    marker: str | None
    """The comment before the block, without ``<!--``/``-->``, or None."""

    @property
    def where(self) -> str:
        """``docs/page.md:12`` (the file and line of the code)."""
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def skip_reason(self) -> str | None:
        """Why the block is never run (a ``not run`` marker), or None."""
        if self.marker is not None and self.marker.startswith(NOT_RUN):
            return self.marker
        return None

    @property
    def needs_model(self) -> bool:
        """Whether the block runs only where the local model is installed."""
        return self.marker is not None and self.marker.startswith(NEEDS_MODEL)


def expand(path: Path, seen: tuple[Path, ...] = ()) -> list[Line]:
    """The lines of `path` with its includes expanded and snippet section markers dropped."""
    if path in seen:
        raise PageError(f"{path}: includes itself ({' -> '.join(map(str, seen))})")
    lines: list[Line] = []
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        include = _INCLUDE.match(text)
        if include is None:
            if not _SECTION.search(text):
                lines.append(Line(text, path, number))
            continue
        target, _, section = include["target"].partition(":")
        source = ROOT / target
        if not source.is_file():
            raise PageError(f"{path}:{number}: includes {target}, which does not exist")
        included = _section(source, section) if section else expand(source, (*seen, path))
        lines.extend(Line(include["indent"] + x.text, x.path, x.number) for x in included)
    return lines


def _section(source: Path, name: str) -> list[Line]:
    """The lines of `source` between its ``[start:name]`` and ``[end:name]`` markers."""
    if not re.fullmatch(r"[a-z][-_0-9a-z]*", name):
        raise PageError(f"{source}: only whole files and named sections are supported, not :{name}")
    text = source.read_text(encoding="utf-8").splitlines()
    marks = {
        (m["kind"], m["name"]): index
        for index, line in enumerate(text)
        if (m := _SECTION.search(line)) is not None
    }
    if ("start", name) not in marks or ("end", name) not in marks:
        raise PageError(f"{source}: no section {name!r} (--8<-- [start:{name}] ... [end:{name}])")
    lines = []
    for index in range(marks["start", name] + 1, marks["end", name]):
        if _INCLUDE.match(text[index]):
            raise PageError(f"{source}:{index + 1}: an include inside a section is not supported")
        if not _SECTION.search(text[index]):
            lines.append(Line(text[index], source, index + 1))
    return lines


def blocks(page: Path) -> list[Block]:
    """The Python and shell snippets of `page`, in order."""
    lines = expand(page)
    found: list[Block] = []
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index].text)
        if opening is None:
            index += 1
            continue
        fence, indent = opening["fence"], opening["indent"]
        language = opening["info"].split()[0].lower() if opening["info"] else ""
        end = index + 1
        while end < len(lines) and not _closes(lines[end].text, fence):
            end += 1
        if end == len(lines):
            raise PageError(f"{_where(lines[index])}: the code block is never closed")
        body = lines[index + 1 : end]
        if language in UNSUPPORTED:
            raise PageError(f"{_where(lines[index])}: use `python` or `sh`, not `{language}`")
        if language in PYTHON | SHELL and body:
            found.append(
                Block(
                    page=page,
                    path=body[0].path,
                    line=body[0].number,
                    language="python" if language in PYTHON else "shell",
                    code="\n".join(_dedent(line.text, indent) for line in body) + "\n",
                    marker=_marker(lines, index),
                )
            )
        index = end + 1
    return found


def _closes(text: str, fence: str) -> bool:
    stripped = text.strip()
    return stripped.startswith(fence[0] * len(fence)) and not stripped.strip(fence[0])


def _dedent(text: str, indent: str) -> str:
    return text[len(indent) :] if text.startswith(indent) else text.lstrip()


def _marker(lines: list[Line], fence_index: int) -> str | None:
    """The marker comment right before the block (blank lines between are allowed)."""
    index = fence_index - 1
    while index >= 0 and not lines[index].text.strip():
        index -= 1
    if index < 0:
        return None
    comment = _COMMENT.match(lines[index].text)
    if comment is None:
        return None
    text = " ".join(comment["text"].split())
    if text.startswith(NOT_RUN):
        if not text[len(NOT_RUN) :].strip():
            raise PageError(f"{_where(lines[index])}: `not run:` needs a reason")
        return text
    if text.startswith(NEEDS_MODEL):
        return text
    raise PageError(
        f"{_where(lines[index])}: unknown marker <!-- {text} --> before a snippet "
        f"(expected <!-- {NOT_RUN} REASON --> or <!-- {NEEDS_MODEL} -->)"
    )


def _where(line: Line) -> str:
    return f"{line.path.relative_to(ROOT)}:{line.number}"
