"""Calls that keep arriving while a server stops are turned away unstarted, not cancelled.

grpc's server cancels the calls it has received but not yet started when it stops (a
client cannot safely retry CANCELLED). A stopping server therefore answers new calls
UNAVAILABLE, unstarted ("retry it on another replica"), and closes its connections only
once none arrived for SETTLE_S (at most SETTLE_MAX_S).

tests/reliability/test_fleet.py's SIGTERM-during-a-burst test checks the outcome through a
round_robin client, whose health watch moves calls away from the replica within
milliseconds: whether any call lands on the stopping server there is chance. Here the
callers know nothing of health and keep calling the stopping server on purpose, so every
run has calls arriving throughout the stop.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import grpc
import pytest

from apex_grpc_proto.apex.v1 import apex_pb2 as pb
from apex_grpc_proto.apex.v1 import apex_pb2_grpc as pb_grpc
from apex_grpc_server._rpc.call_scope import SHUTTING_DOWN
from apex_grpc_server._runtime.drain import SETTLE_MAX_S, SETTLE_S

pytestmark = pytest.mark.oldest

CALLERS = 4
CALLING_S = SETTLE_MAX_S / 3
"""How long the callers go on after the stop began: well within the longest turning away."""


def test_a_burst_during_the_stop_is_turned_away_until_it_ends(
    start_server: Callable[..., Any], auth: tuple[tuple[str, str], ...]
) -> None:
    server = start_server(grace_period_s=5.0, drain_delay_s=0.0)
    request = pb.ChatCompletionRequest(messages=[pb.ChatMessage(role="user", content="hi")])
    channels = [grpc.insecure_channel(server.target) for _ in range(CALLERS)]
    stubs = [pb_grpc.ApexServiceStub(channel) for channel in channels]
    for stub in stubs:  # connected before the stop: their calls reach the stopping server
        stub.ChatCompletion(request, metadata=auth, timeout=10)
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    stop_began = threading.Event()

    def caller(stub: pb_grpc.ApexServiceStub) -> None:
        stop_began.wait()
        ends = time.monotonic() + CALLING_S
        while time.monotonic() < ends:
            try:
                stub.ChatCompletion(request, metadata=auth, timeout=5)
                outcome = "OK"
            except grpc.RpcError as error:
                outcome = f"{error.code().name}: {error.details()}"
            with lock:
                outcomes[outcome] += 1

    callers = [threading.Thread(target=caller, args=(stub,)) for stub in stubs]
    for thread in callers:
        thread.start()
    stopper = threading.Thread(target=server.stop)
    stopper.start()
    stop_began.set()
    for thread in callers:
        thread.join()
    calls_ended = time.monotonic()
    still_open = stopper.is_alive()
    stopper.join()
    stopped = time.monotonic()
    for channel in channels:
        channel.close()
    turned_away = f"UNAVAILABLE: {SHUTTING_DOWN}"
    # Every call was answered (the few started before the stop began) or turned away
    # unstarted: none was cancelled, none met a closed connection.
    assert set(outcomes) <= {"OK", turned_away}, outcomes
    assert outcomes[turned_away] >= CALLERS, outcomes
    assert still_open, "the server closed while calls were still arriving"
    assert stopped - calls_ended < SETTLE_S + 1.0
