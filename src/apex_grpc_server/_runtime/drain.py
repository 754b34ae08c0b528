"""A drain's last step before the connections close: new calls are turned away, retryably.

``ApexServer.stop`` (``server.py``) runs the drain's steps in order; this is the one
that waits on the traffic rather than on a clock.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from apex_grpc_server._rpc.call_scope import CallPolicy

SETTLE_S = 0.2
"""How long no new call may arrive before a stopping server closes its connections (long
enough for a server starved of CPU to have taken in what reached it)."""
SETTLE_MAX_S = 2.0
"""The longest a stopping server keeps answering new calls UNAVAILABLE before it closes
(and at most half its grace period, which the calls in flight keep the rest of)."""


async def turn_away_new_calls(policy: CallPolicy, grace: float) -> float:
    """Answer new calls UNAVAILABLE (unstarted) until none has arrived for SETTLE_S.

    grpc's server cancels the calls it has received but not yet handed to a
    handler when it stops (the client sees CANCELLED, which it cannot safely
    retry). While calls still arrive, they are taken in and turned away with a
    retryable status instead; only then are the connections closed. Returns
    the seconds spent, which the caller takes from `grace` (so the stop still
    ends within drain delay + grace): at most SETTLE_MAX_S and half of it.
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
