"""``apex-grpc serve`` as a process: Ctrl-C skips the drain delay, a second SIGTERM cuts it.

SIGTERM (what Kubernetes sends) drains: NOT_SERVING, then ``--drain-delay`` seconds of
serving. Ctrl-C at a terminal means "stop now": no drain delay. A second signal during
the drain stops the server at once. Each would otherwise wait out the drain delay
(4.3 s here instead of 0.3 s).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

from .conftest import Served

DRAIN = "--drain-delay=4"
QUICK_S = 2.5
"""Well under the drain delay; a stop without it takes ~0.3 s (turning calls away 0.2 s)."""


def stopped_within(server: Served, sig: int) -> float:
    started = time.monotonic()
    assert server.stop(sig) == 0, server.log()
    return time.monotonic() - started


def test_ctrl_c_stops_without_the_drain_delay(served: Callable[..., Served]) -> None:
    server = served("--no-default-corpus", DRAIN)
    took = stopped_within(server, signal.SIGINT)
    assert took < QUICK_S, f"Ctrl-C took {took:.1f} s: it waited the drain delay"
    assert "shutting down on SIGINT (drain 0.0 s" in server.log()


def test_a_second_sigterm_during_the_drain_stops_at_once(served: Callable[..., Served]) -> None:
    server = served("--no-default-corpus", DRAIN)
    server.process.send_signal(signal.SIGTERM)
    server.wait_for_log("draining: NOT_SERVING")
    took = stopped_within(server, signal.SIGTERM)
    assert took < QUICK_S, f"the second SIGTERM took {took:.1f} s: it was ignored"
    assert "SIGTERM again: stopping at once" in server.log()
