"""The PostgreSQL store: chats, stored completions and jobs shared by a fleet of replicas.

- ``store.py``: `PostgresStore` (``await PostgresStore.open(url)``) and `DatabaseUnavailable`.
- ``chats.py``, ``jobs.py``, ``idempotency_keys.py``: its tables, one method per operation.
- ``schema.py``: its numbered migrations.
- ``pool.py``: the connection pool and pipelined transactions.
"""
