"""Documents for the search index: from files, JSONL, and the offline default corpus."""

from __future__ import annotations

import html
import html.parser
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

TEXT_SUFFIXES = {".txt": "text", ".md": "markdown", ".markdown": "markdown"}
HTML_SUFFIXES = {".html", ".htm"}
JSONL_SUFFIXES = {".jsonl", ".ndjson"}
FILE_SUFFIXES = (*TEXT_SUFFIXES, ".html", ".htm")
"""What a folder walk indexes (``index`` help lists exactly these)."""
CORPUS_DIR = Path(__file__).with_name("corpus")


@dataclass(frozen=True, slots=True)
class Document:
    """One page of the index, keyed by ``url``."""

    url: str
    title: str
    content: str


class DocumentError(ValueError):
    """A file that cannot be indexed, with where and why."""


def read_documents(paths: Sequence[Path]) -> tuple[list[Document], list[Path]]:
    """The documents in files and folders, and the files skipped as binary or not UTF-8.

    Folders are walked recursively for FILE_SUFFIXES; a file named directly
    may also be JSONL (one ``{"url", "title", "content"}`` object a line).
    """
    documents: list[Document] = []
    skipped: list[Path] = []
    for path in paths:
        if path.is_dir():
            files = [child for child in sorted(path.rglob("*")) if _indexable(child)]
        elif path.is_file():
            if not (_indexable(path) or path.suffix.lower() in JSONL_SUFFIXES):
                raise DocumentError(f"{path}: not a {', '.join(FILE_SUFFIXES)} or .jsonl file")
            files = [path]
        else:
            raise DocumentError(f"{path}: no such file or folder")
        for file in files:
            if file.suffix.lower() in JSONL_SUFFIXES:
                documents.extend(documents_from_jsonl(file))
                continue
            document = _document_from_file(file)
            if document is None:
                skipped.append(file)
            else:
                documents.append(document)
    return documents, skipped


def _indexable(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in FILE_SUFFIXES


def _document_from_file(path: Path) -> Document | None:
    """The file as a document; None when it is binary (has NUL bytes) or not UTF-8."""
    data = path.read_bytes()
    if b"\x00" in data:
        return None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None
    url = path.resolve().as_uri()
    if path.suffix.lower() in HTML_SUFFIXES:
        title, content = html_to_text(text)
        return Document(url, title or path.stem, content)
    if TEXT_SUFFIXES[path.suffix.lower()] == "markdown":
        return markdown_document(url, text, path.stem)
    return Document(url, path.stem, text)


def markdown_document(url: str, text: str, fallback_title: str) -> Document:
    """A Markdown file as a document: its first heading as title, its text without markup."""
    return Document(url, markdown_title(text) or fallback_title, markdown_to_text(text))


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
    """The first heading of a Markdown text (``# Title``), if any, without markup."""
    match = re.search(r"^#{1,3}\s+(.+?)\s*#*\s*$", text, re.MULTILINE)
    return _inline_markup(match.group(1)).strip() if match else None


_MARKDOWN_LINES = (
    (re.compile(r"^ {0,3}(`{3,}|~{3,}).*$", re.MULTILINE), ""),  # code fences
    (re.compile(r"^ {0,3}#{1,6}[ \t]+(.*?)[ \t]*#*[ \t]*$", re.MULTILINE), r"\1"),  # headings
    (re.compile(r"^ {0,3}(=+|-{3,}|\*{3,}|_{3,})[ \t]*$", re.MULTILINE), ""),  # rules
    (re.compile(r"^ {0,3}\|?[ \t]*:?-{3,}:?[ \t]*(\|[ \t]*:?-{3,}:?[ \t]*)*\|?[ \t]*$", re.M), ""),
    (re.compile(r"^ {0,3}>[ \t]?", re.MULTILINE), ""),  # quotes
    (re.compile(r"^([ \t]*)[*+][ \t]+", re.MULTILINE), r"\1- "),  # bullets
    (re.compile(r"^ {0,3}\[[^\]]+\]:[ \t]+\S+.*$", re.MULTILINE), ""),  # link definitions
)
_MARKDOWN_INLINE = (
    (re.compile(r"!\[([^\]]*)\]\([^)]*\)"), r"\1"),  # images: the alt text
    (re.compile(r"\[([^\]]+)\](\([^)]*\)|\[[^\]]*\])"), r"\1"),  # links: the text
    (re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1"), r"\2"),  # strong
    (re.compile(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?!\w)"), r"\1"),  # emphasis
    (re.compile(r"(?<!\w)_(?=\S)([^_\n]+?)(?<=\S)_(?!\w)"), r"\1"),
    (re.compile(r"`([^`\n]+)`"), r"\1"),  # inline code
)


def _inline_markup(text: str) -> str:
    for pattern, replacement in _MARKDOWN_INLINE:
        text = pattern.sub(replacement, text)
    return text


def markdown_to_text(text: str) -> str:
    """Markdown as plain text: headings, emphasis, links, code marks and fences removed.

    What a search excerpt shows is read by people and models; ``## Setup``
    and ``**bold**`` there are noise. Paragraph breaks are kept (passages are
    cut at them).
    """
    for pattern, replacement in _MARKDOWN_LINES:
        text = pattern.sub(replacement, text)
    text = _inline_markup(text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


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
            yield markdown_document(f"apex-grpc:docs/{path.stem}", text, path.stem)


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
                        yield markdown_document(f"apex-grpc:{relative}", text, path.stem)
            return
