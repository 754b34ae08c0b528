"""Web retrieval on a local index.

- ``index.py``: `SearchIndex`, SQLite FTS5 over documents; what WebRetrieval answers.
- ``documents.py``: what goes into the index (Markdown, HTML, text files; the default
  corpus in ``corpus/`` and a source checkout's docs).
"""
