"""The words of a full-text query: what stored-chat search and the web index both match on.

Pure. Words are runs of letters, digits and underscores, so a query built from
them can never be an FTS5 (or tsquery) syntax error.
"""

from __future__ import annotations

import re

MAX_QUERY_TERMS = 32
STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "do",
        "does",
        "for",
        "from",
        "how",
        "i",
        "in",
        "is",
        "it",
        "of",
        "on",
        "or",
        "that",
        "the",
        "this",
        "to",
        "was",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "with",
        "you",
        "your",
    ]
)
_WORD = re.compile(r"\w+")


def query_words(text: str) -> list[str]:
    """The distinct words of a query, lower-cased, stopwords dropped unless nothing else is left.

    Words are runs of letters, digits and underscores, so they never contain
    FTS5 syntax (quotes, parentheses, operators).
    """
    words: list[str] = []
    for word in _WORD.findall(text.lower()):
        if word not in words:
            words.append(word)
    content = [word for word in words if word not in STOPWORDS] or words
    return content[:MAX_QUERY_TERMS]


def fts_query(text: str) -> str | None:
    """An FTS5 MATCH expression that cannot be a syntax error: quoted words OR-ed.

    None when the text has no searchable word (only punctuation, say).
    """
    words = query_words(text)
    return " OR ".join(f'"{word}"' for word in words) if words else None
