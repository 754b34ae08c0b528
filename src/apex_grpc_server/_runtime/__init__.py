"""The server's life: start, serve, drain, stop.

- ``server.py``: `serve` / `run_server` / `RunningServer`: opens the store, the search
  index and the engine, starts the gRPC server (health, reflection) and the HTTP face
  (``_http``), and on SIGTERM drains (health NOT_SERVING, the drain delay, the grace
  period) and stops.
- ``startup.py``: the checks done before anything touches the disk (the port, the keys).
- ``addresses.py``: where the gRPC server binds and what its clients dial.
- ``health.py``: the gRPC health service and its watchers; the chat engine's own health
  (``apex.v1.ApexService/chat``, NOT_SERVING while its process restarts).
- ``datalock.py``: one server per data folder (an advisory file lock).
- ``drain.py``: the drain's turn-away step (new calls UNAVAILABLE, unstarted), spending the
  grace period rather than adding to it.
- ``shutdown.py``: the watchdog that keeps the exit within drain delay + grace + 1 s.
- ``store_monitor.py``: pings the database every second; health ``apex.v1.store`` and the
  store gauge (the overall health does not follow it).

A drain or shutdown change goes here; what one call does goes in ``_rpc``.
"""
