"""The end of a graceful stop: new calls turned away, and the process's exit kept on time.

A replica promises to be gone within ``drain_delay_s + grace_period_s`` of SIGTERM
(what docs/server.md tells Kubernetes to allow). Turning new calls away spends
the grace period rather than adding to it, and a watchdog ends the process at
that bound plus EXIT_MARGIN_S whatever still holds it (a stream whose reader
stopped reading, a part that does not close).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading

from apex_grpc_server._rpc.call_scope import CallPolicy

logger = logging.getLogger("apex_grpc_server")

SETTLE_S = 0.2
"""How long no new call may arrive before a stopping server closes its connections (long
enough for a server starved of CPU to have taken in what reached it)."""
SETTLE_MAX_S = 2.0
"""The longest a stopping server keeps answering new calls UNAVAILABLE before it closes
(and at most half its grace period, which the calls in flight keep the rest of)."""
EXIT_MARGIN_S = 1.0
"""What a stop may take past drain delay + grace period (closing the store, the engine,
the index) before the watchdog ends the process."""
FORCED_EXIT_CODE = 3
"""The exit status of a process the watchdog ended (0 after a stop on time)."""


async def turn_away_new_calls(policy: CallPolicy, grace: float) -> float:
    """Answer new calls UNAVAILABLE (unstarted) until none has arrived for SETTLE_S.

    grpc's server cancels the calls it has received but not yet handed to a
    handler when it stops (the client sees CANCELLED, which it cannot safely
    retry). While calls still arrive, they are taken in and turned away with a
    retryable status instead; only then are the connections closed. Returns
    the seconds spent, taken from `grace`: at most SETTLE_MAX_S and half of it.
    """
    policy.accepting = False
    loop = asyncio.get_running_loop()
    started = loop.time()
    give_up = started + min(SETTLE_MAX_S, grace / 2)
    seen = -1
    while policy.turned_away != seen and loop.time() < give_up:
        seen = policy.turned_away
        await asyncio.sleep(min(SETTLE_S, max(give_up - loop.time(), 0.0)))
    return loop.time() - started


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
