"""The wire: apex.v1 messages in and out, checked.

- ``validation.py``: request checks; INVALID_ARGUMENT naming the field.
- ``convert.py``: messages <-> the server's own rows and engine requests.
- ``reply_limits.py``: nothing is stored that a read could not return (reply-size limits
  of listings, a job's reply budget).
- ``fault_injection.py``: the ``x-echo-*`` request metadata that injects delays, failures
  and pushback (``test_knobs``), for tests of clients.

Pure: no I/O, no engine, no store.
"""
