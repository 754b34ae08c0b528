"""Web retrieval over a local SQLite FTS5 index: BM25 with title weighting, snippets."""

from __future__ import annotations

import hashlib
import re
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from apex_grpc_server._search.documents import Document
from apex_grpc_server._store.sqlite.connection import SqliteWorker, on_worker, transaction
from apex_grpc_server._store.words import fts_query

TITLE_WEIGHT = 4.0
BODY_WEIGHT = 1.0
PASSAGE_TARGET = 1000
PASSAGE_MAX = 1600
CONTENT_CAP = 20_000
SNIPPET_TOKENS = 48

SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
  id INTEGER PRIMARY KEY,
  url TEXT NOT NULL UNIQUE,
  title TEXT NOT NULL,
  content TEXT NOT NULL,
  digest TEXT NOT NULL,
  indexed_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS passage_text (
  id INTEGER PRIMARY KEY,
  doc_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
  seq INTEGER NOT NULL,
  title TEXT NOT NULL,
  body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS passage_text_doc ON passage_text(doc_id);
CREATE VIRTUAL TABLE IF NOT EXISTS passages USING fts5(
  title, body, content='passage_text', content_rowid='id',
  tokenize='porter unicode61 remove_diacritics 2'
);
CREATE TRIGGER IF NOT EXISTS passage_text_ai AFTER INSERT ON passage_text BEGIN
  INSERT INTO passages(rowid, title, body) VALUES (new.id, new.title, new.body);
END;
CREATE TRIGGER IF NOT EXISTS passage_text_ad AFTER DELETE ON passage_text BEGIN
  INSERT INTO passages(passages, rowid, title, body) VALUES ('delete', old.id, old.title, old.body);
END;
"""


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One result: the page's url, its text (capped) and the best-matching excerpt."""

    url: str
    title: str
    content: str
    relevant: str
    passage: str
    score: float


@dataclass(frozen=True, slots=True)
class IndexStats:
    """What an indexing run did."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    passages: int = 0


class SearchTimeout(Exception):
    """The query ran past its time budget."""


def split_passages(text: str) -> list[str]:
    """Split a document into passages of about PASSAGE_TARGET characters on paragraph breaks."""
    passages: list[str] = []
    current = ""
    for paragraph in re.split(r"\n\s*\n", text):
        paragraph = paragraph.strip()
        if not paragraph:
            continue
        for piece in _cut(paragraph):
            if current and len(current) + len(piece) + 2 > PASSAGE_TARGET:
                passages.append(current)
                current = piece
            else:
                current = f"{current}\n\n{piece}" if current else piece
    if current:
        passages.append(current)
    return passages


def _cut(paragraph: str) -> Iterable[str]:
    """Pieces of at most PASSAGE_MAX characters, cut at sentence ends or spaces."""
    while len(paragraph) > PASSAGE_MAX:
        window = paragraph[:PASSAGE_MAX]
        cut = max(window.rfind(". "), window.rfind("\n"))
        if cut < PASSAGE_MAX // 2:
            cut = window.rfind(" ")
        if cut < PASSAGE_MAX // 2:
            cut = PASSAGE_MAX - 1
        yield paragraph[: cut + 1].strip()
        paragraph = paragraph[cut + 1 :].strip()
    if paragraph:
        yield paragraph


class SearchIndex:
    """The FTS5 index in ``path``; queries and writes run on its own worker thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.worker = SqliteWorker(path, "apex-grpc-search")
        self._deadline = 0.0
        self.worker.call(self._open)

    def _open(self) -> None:
        conn = self.worker.conn
        conn.executescript(SCHEMA)
        conn.set_progress_handler(self._past_deadline, 2_000)

    def _past_deadline(self) -> int:
        return 1 if self._deadline and time.monotonic() > self._deadline else 0

    def close(self) -> None:
        """Close the database."""
        self.worker.close()

    @on_worker
    def upsert(self, conn: sqlite3.Connection, documents: Iterable[Document]) -> IndexStats:
        """Add or replace documents by url."""
        added = updated = unchanged = passages = 0
        with transaction(conn):
            for document in documents:
                digest = hashlib.sha256(
                    f"{document.title}\x00{document.content}".encode()
                ).hexdigest()
                row = conn.execute(
                    "SELECT id, digest FROM documents WHERE url = ?", (document.url,)
                ).fetchone()
                if row is not None and row[1] == digest:
                    unchanged += 1
                    continue
                if row is not None:
                    conn.execute("DELETE FROM passage_text WHERE doc_id = ?", (row[0],))
                    conn.execute(
                        "UPDATE documents SET title = ?, content = ?, digest = ?, indexed_at = ?"
                        " WHERE id = ?",
                        (document.title, document.content, digest, time.time(), row[0]),
                    )
                    doc_id = row[0]
                    updated += 1
                else:
                    cursor = conn.execute(
                        "INSERT INTO documents(url, title, content, digest, indexed_at)"
                        " VALUES (?, ?, ?, ?, ?)",
                        (document.url, document.title, document.content, digest, time.time()),
                    )
                    doc_id = cursor.lastrowid
                    added += 1
                pieces = split_passages(document.content) or [document.title]
                conn.executemany(
                    "INSERT INTO passage_text(doc_id, seq, title, body) VALUES (?, ?, ?, ?)",
                    [(doc_id, seq, document.title, body) for seq, body in enumerate(pieces)],
                )
                passages += len(pieces)
        return IndexStats(added, updated, unchanged, passages)

    @on_worker
    def document_count(self, conn: sqlite3.Connection) -> int:
        """How many documents the index holds."""
        (count,) = conn.execute("SELECT count(*) FROM documents").fetchone()
        return int(count)

    @on_worker
    def search(
        self, conn: sqlite3.Connection, query: str, n_results: int, budget_s: float
    ) -> list[SearchHit]:
        """The best ``n_results`` documents for ``query`` (one hit per url), best first.

        Raises SearchTimeout when the query runs longer than ``budget_s``.
        """
        match = fts_query(query)
        if match is None:
            return []
        self._deadline = time.monotonic() + budget_s
        try:
            rows = conn.execute(
                "SELECT p.body, p.doc_id,"
                f" bm25(passages, {TITLE_WEIGHT}, {BODY_WEIGHT}) AS score,"
                f" snippet(passages, 1, '', '', '…', {SNIPPET_TOKENS})"
                " FROM passages JOIN passage_text AS p ON p.id = passages.rowid"
                " WHERE passages MATCH ? ORDER BY score LIMIT ?",
                (match, n_results * 8),
            ).fetchall()
            best: dict[int, tuple[float, str, str]] = {}
            for passage, doc_id, score, snippet in rows:
                if doc_id not in best:
                    best[doc_id] = (score, snippet, passage)
                if len(best) == n_results:
                    break
            hits = []
            for doc_id, (score, snippet, passage) in best.items():
                url, title, content = conn.execute(
                    "SELECT url, title, content FROM documents WHERE id = ?", (doc_id,)
                ).fetchone()
                hits.append(SearchHit(url, title, content[:CONTENT_CAP], snippet, passage, -score))
            return hits
        except sqlite3.OperationalError as error:
            if "interrupt" in str(error):
                raise SearchTimeout(f"query ran past its {budget_s:g} s budget") from None
            raise
        finally:
            self._deadline = 0.0
