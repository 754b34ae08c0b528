"""The RPC face: what every call goes through before and after its feature.

- ``servicer.py``: `ApexServicer`, the 16 RPCs of apex.v1, each validating its request
  (``_wire``) and handing it to its feature (``_chat``, ``_research``, ``_search``, ``_store``).
- ``routes.py``: the method handlers grpc calls, each wrapped in its call scope.
- ``call_scope.py``: one call's scope: request id, authentication, fault injection,
  admission while draining, the status it ends with, its log line and metrics.
- ``api_keys.py``: API keys (compared in constant time) and the user id each stands for.
- ``idempotency.py``: the ``idempotency-key`` metadata: look up, write once, replay a repeat.

Admission and a new RPC's handler go here; a new RPC's checks go in ``_wire``.
"""
