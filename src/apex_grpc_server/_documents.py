"""Documents for the search index: from files, JSONL, and the offline default corpus."""

from __future__ import annotations

import html
import html.parser
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

TEXT_SUFFIXES = {".txt": "text", ".md": "markdown", ".markdown": "markdown", ".rst": "text"}
HTML_SUFFIXES = {".html", ".htm"}
JSONL_SUFFIXES = {".jsonl", ".ndjson"}
CORPUS_DIR = Path(__file__).with_name("_corpus")


@dataclass(frozen=True, slots=True)
class Document:
    """One page of the index, keyed by ``url``."""

    url: str
    title: str
    content: str


class DocumentError(ValueError):
    """A file that cannot be indexed, with where and why."""


def documents_from_paths(paths: list[Path]) -> Iterator[Document]:
    """Documents from files and folders (.txt/.md/.html, walked recursively) and JSONL files."""
    for path in paths:
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                if child.is_file() and _indexable(child):
                    yield from _documents_from_file(child)
        elif path.is_file():
            if not (_indexable(path) or path.suffix.lower() in JSONL_SUFFIXES):
                raise DocumentError(f"{path}: not a .txt, .md, .html or .jsonl file")
            yield from _documents_from_file(path)
        else:
            raise DocumentError(f"{path}: no such file or folder")


def _indexable(path: Path) -> bool:
    suffix = path.suffix.lower()
    return suffix in TEXT_SUFFIXES or suffix in HTML_SUFFIXES


def _documents_from_file(path: Path) -> Iterator[Document]:
    suffix = path.suffix.lower()
    if suffix in JSONL_SUFFIXES:
        yield from documents_from_jsonl(path)
        return
    text = path.read_text(encoding="utf-8", errors="replace")
    url = path.resolve().as_uri()
    if suffix in HTML_SUFFIXES:
        title, content = html_to_text(text)
        yield Document(url, title or path.stem, content)
    else:
        yield Document(url, markdown_title(text) or path.stem, text)


def documents_from_jsonl(path: Path) -> Iterator[Document]:
    """One document per line: ``{"url": ..., "title": ..., "content": ...}`` (title optional)."""
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise DocumentError(f"{path}:{number}: invalid JSON ({error.msg})") from None
            if not isinstance(record, dict):
                raise DocumentError(f"{path}:{number}: expected an object")
            url, content = record.get("url"), record.get("content")
            title = record.get("title") or url
            if not isinstance(url, str) or not url or not isinstance(content, str):
                raise DocumentError(f"{path}:{number}: needs string 'url' and 'content'")
            yield Document(url, str(title), content)


def markdown_title(text: str) -> str | None:
    """The first heading of a Markdown text (``# Title``), if any."""
    match = re.search(r"^#{1,3}\s+(.+?)\s*#*\s*$", text, re.MULTILINE)
    return match.group(1).strip() if match else None


class _HTMLText(html.parser.HTMLParser):
    _SKIP = frozenset({"script", "style", "noscript", "template", "svg"})
    _BLOCK = frozenset(
        {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "section"}
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title: list[str] = []
        self._skipping = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skipping += 1
        elif tag == "title":
            self._in_title = True
        elif tag in self._BLOCK:
            self.parts.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self._skipping = max(0, self._skipping - 1)
        elif tag == "title":
            self._in_title = False
        elif tag in self._BLOCK:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if self._skipping:
            return
        if self._in_title:
            self.title.append(data)
        else:
            self.parts.append(data)


def html_to_text(source: str) -> tuple[str, str]:
    """(title, text) of an HTML page, scripts and styles removed."""
    parser = _HTMLText()
    parser.feed(source)
    parser.close()
    text = "".join(parser.parts)
    text = re.sub(r"[ \t\r\f\v]+", " ", text)
    text = re.sub(r"\n\s*\n\s*", "\n\n", text).strip()
    return html.unescape(" ".join("".join(parser.title).split())), text


def default_corpus() -> Iterator[Document]:
    """What ships offline: the stdlib's ``pydoc_data.topics`` and the project's own docs."""
    yield from _bundled_docs()
    yield from _project_docs()
    yield from _pydoc_topics()


def _pydoc_topics() -> Iterator[Document]:
    try:
        from pydoc_data.topics import topics
    except ImportError:  # pragma: no cover - stripped Python builds
        return
    for name, text in sorted(topics.items()):
        first = next((line.strip() for line in text.splitlines() if line.strip()), name)
        yield Document(f"pydoc:{name}", first, text)


def _bundled_docs() -> Iterator[Document]:
    if CORPUS_DIR.is_dir():
        for path in sorted(CORPUS_DIR.glob("*.md")):
            text = path.read_text(encoding="utf-8")
            yield Document(f"apex-grpc:docs/{path.stem}", markdown_title(text) or path.stem, text)


def _project_docs() -> Iterator[Document]:
    """README and docs/ of a source checkout of apex-grpc, when the package runs from one."""
    for parent in Path(__file__).resolve().parents:
        pyproject = parent / "pyproject.toml"
        if pyproject.is_file():
            if 'name = "apex-grpc"' not in pyproject.read_text(encoding="utf-8", errors="replace"):
                return
            candidates = [parent / "README.md"]
            docs = parent / "docs"
            if docs.is_dir():
                candidates += sorted(docs.rglob("*.md"))
            for path in candidates:
                if path.is_file():
                    text = path.read_text(encoding="utf-8", errors="replace")
                    if len(text.split()) >= 20:  # skip placeholders
                        relative = path.relative_to(parent).as_posix()
                        title = markdown_title(text) or path.stem
                        yield Document(f"apex-grpc:{relative}", title, text)
            return
