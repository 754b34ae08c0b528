"""One call's decisions, pure: what each attempt gets and what a failure means.

- ``unary.py``: `UnaryAttempts`, a unary call's attempts (deadline budget, retries,
  pushback, REFUSED_STREAM) and the record around them (DEBUG line, CallInfo).
- ``stream.py``: `StreamState`, its streaming twin: retry before the first chunk, resume
  after it, first-chunk and idle limits, the final error.

The transports (``_transport``) and the stream objects (``_streaming``) drive them;
neither decides anything these modules do not.
"""
