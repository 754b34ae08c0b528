"""A stopping server ends the health Watch streams it holds, so they do not hold its stop.

Every health-checking client (apex-grpc's round_robin, Envoy, Kubernetes) keeps a Watch
open for as long as it is connected; a Watch never ends by itself. A stop that did not
end them would wait out the whole grace period (5.2 s here instead of 0.2 s).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from apex_grpc_server._runtime.drain import SETTLE_S

pytestmark = pytest.mark.oldest

GRACE_S = 5.0


def test_open_health_watches_do_not_hold_the_stop(start_server: Callable[..., Any]) -> None:
    server = start_server(grace_period_s=GRACE_S, drain_delay_s=0.0)
    with grpc.insecure_channel(server.target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        watches = [
            health.Watch(health_pb2.HealthCheckRequest(service=s))
            for s in ("", "apex.v1.ApexService")
        ]
        for watch in watches:
            assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        seen: list[list[int]] = [[], []]

        def read(index: int) -> None:
            for response in watches[index]:
                seen[index].append(response.status)

        readers = [threading.Thread(target=read, args=(i,)) for i in range(len(watches))]
        for reader in readers:
            reader.start()
        started = time.monotonic()
        server.stop()
        took = time.monotonic() - started
        for reader in readers:
            reader.join(5)
    # The stop turns new calls away for SETTLE_S, then ends: far less than the grace period.
    assert took < SETTLE_S + GRACE_S / 2, f"the stop took {took:.1f} s: the watches held it"
    for watch, statuses in zip(watches, seen, strict=True):
        assert statuses == [health_pb2.HealthCheckResponse.NOT_SERVING]  # told, then ended
        assert watch.code() == grpc.StatusCode.OK
