"""The SQLite store: chats, stored completions and deep-research jobs in one file (WAL mode).

- ``store.py``: `SqliteStore`, the store (``await SqliteStore.open(path)``).
- ``chats.py``, ``jobs.py``, ``idempotency_keys.py``: its tables, one method per operation.
- ``schema.py``: its numbered migrations.
- ``connection.py``: `SqliteWorker`, one SQLite connection on its own thread (the search
  index uses it too).
"""
