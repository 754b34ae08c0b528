"""The process's exit kept on time after a signal, whatever still holds it.

A replica promises to be gone within ``drain_delay_s + grace_period_s`` of SIGTERM
(what docs/server.md tells Kubernetes to allow). Turning new calls away spends
the grace period rather than adding to it (``drain.py``), and this watchdog ends
the process at that bound plus EXIT_MARGIN_S whatever still holds it (a stream
whose reader stopped reading, a part that does not close).
"""

from __future__ import annotations

import logging
import os
import threading

logger = logging.getLogger("apex_grpc_server")

EXIT_MARGIN_S = 1.0
"""What a stop may take past drain delay + grace period (closing the store, the engine,
the index) before the watchdog ends the process."""
FORCED_EXIT_CODE = 3
"""The exit status of a process the watchdog ended (0 after a stop on time)."""


def exit_watchdog(seconds: float) -> threading.Timer:
    """Start a timer that ends the process (FORCED_EXIT_CODE) unless cancelled within `seconds`."""

    def force() -> None:
        logger.error("the server did not stop within %.1f s of the signal; exiting now", seconds)
        logging.shutdown()
        os._exit(FORCED_EXIT_CODE)

    timer = threading.Timer(seconds, force)
    timer.daemon = True
    timer.start()
    return timer
